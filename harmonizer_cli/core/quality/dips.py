"""Level dips: the deepest drop of the 1 s level below the music around it.
"""

from __future__ import annotations

import numpy as np

from harmonizer_cli.core.audio_io import Audio, to_mono
from harmonizer_cli.core.quality._common import as_audio

__all__ = ["level_dip_db"]


def level_dip_db(
    audio: Audio | np.ndarray, *, sample_rate: int | None = None, window_seconds: float = 1.0,
    hop_seconds: float = 0.25, edge_seconds: float = 5.0, reference_seconds: float | None = 10.0,
) -> float:
    """Deepest drop of the 1 s level below the level around it, in dB, away from the edges.

    The reference is the running median of the 1 s level over +-``reference_seconds``
    (10 s): a dip is a drop below the surrounding music, such as a loop that plays the
    song's fade-out and restarts. (A global median would move whenever an extension
    plays loud and quiet sections in other proportions than the song, with no new
    dip; ``reference_seconds=None`` gives that variant.)

    Parameters
    ----------
    audio : Audio or np.ndarray [shape=(n_samples,) or (n_samples, n_channels)]
    sample_rate : int, optional
        Required with an array.
    window_seconds, hop_seconds : float
        Level window (1 s) and hop (0.25 s).
    edge_seconds : float
        Windows overlapping the first or last 5 s are left out (the intro and the
        outro are the song's own; a dip *inside* is what a loop restart shows).
    reference_seconds : float or None
        Half-width of the running median; None for the global median.

    Returns
    -------
    float
        Largest ``reference - level`` (dB, levels floored at -100 dBFS); 0 when the
        signal is too short.
    """
    from scipy.ndimage import median_filter

    audio = as_audio(audio, sample_rate)
    mono = to_mono(audio.samples).astype(np.float64)
    rate = audio.sample_rate
    width, hop = int(window_seconds * rate), max(1, int(hop_seconds * rate))
    edge = int(edge_seconds * rate)
    if mono.size < width + 2 * edge:
        edge = max(0, (mono.size - width) // 4)
    cum = np.concatenate([[0.0], np.cumsum(mono**2)])
    starts = np.arange(edge, mono.size - width - edge + 1, hop)
    if starts.size < 2:
        return 0.0
    power = (cum[starts + width] - cum[starts]) / width
    level = 10.0 * np.log10(power + 1e-10)
    if reference_seconds is None:
        return float(np.median(level) - level.min())
    half = max(1, int(round(reference_seconds / hop_seconds)))
    reference = median_filter(level, size=2 * half + 1, mode="nearest")
    return float(np.max(reference - level))
