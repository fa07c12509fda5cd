"""Endings and beginnings: does the output end (and start) with the original's own audio?
"""

from __future__ import annotations

import numpy as np

from harmonizer_cli.core.audio_io import Audio, resample, to_mono
from harmonizer_cli.core.quality._common import as_audio

__all__ = ["trailing_silence_seconds", "ending_match"]


def trailing_silence_seconds(
    audio: Audio | np.ndarray, *, sample_rate: int | None = None, threshold_db: float = -60.0
) -> float:
    """Length of the final run of samples quieter than ``threshold_db`` dBFS (all channels).

    Returns
    -------
    float
        Seconds.
    """
    audio = as_audio(audio, sample_rate)
    loud = np.nonzero(np.abs(audio.samples).max(axis=1) > 10.0 ** (threshold_db / 20.0))[0]
    last = int(loud[-1]) + 1 if loud.size else 0
    return (audio.n_samples - last) / float(audio.sample_rate)


def ending_match(
    original: Audio, extended: Audio, *, seconds: float = 10.0, max_lag_seconds: float = 0.05,
    at_start: bool = False,
) -> dict:
    """Correlation of the output's last (or first) 10 s with the original's.

    The output segment is searched within +-50 ms of where it should be; the lag says
    how far off the copy sits: positive = the output has that much more after the
    original's ending (padding), negative = its tail is cut.

    Parameters
    ----------
    original, extended : Audio
        Mixed to mono; resampled to the original's rate when the rates differ.
    seconds : float
        Compared length.
    max_lag_seconds : float
        Search range.
    at_start : bool
        Compare the beginnings instead (lag positive = the output starts late).

    Returns
    -------
    dict
        ``correlation`` (Pearson, at the best lag), ``lag_seconds`` and
        ``correlation_at_zero_lag``.
    """
    from scipy.signal import correlate

    rate = original.sample_rate
    a = to_mono(original.samples).astype(np.float64)
    b = resample(to_mono(extended.samples), from_rate=extended.sample_rate, to_rate=rate).astype(np.float64)
    n = int(min(seconds * rate, a.size, b.size))
    m = int(max_lag_seconds * rate)
    if n < 16:
        return {"correlation": None, "lag_seconds": None, "correlation_at_zero_lag": None}
    if at_start:
        a, b = a[::-1], b[::-1]
    ref = a[-n:] - a[-n:].mean()
    m = min(m, b.size - n)
    region = b[b.size - n - m: b.size + m] if m > 0 else b[-n:]
    region = region[: n + 2 * m] if m > 0 else region
    # pad when the output is too short to search forwards (a cut tail)
    missing = n + 2 * m - region.size
    region = np.concatenate([region, np.zeros(max(0, missing))])
    scores = correlate(region, ref, mode="valid", method="fft")
    cum = np.concatenate([[0.0], np.cumsum(region)])
    cum2 = np.concatenate([[0.0], np.cumsum(region**2)])
    sums = cum[n:] - cum[:-n]
    norms = np.sqrt(np.maximum(cum2[n:] - cum2[:-n] - sums**2 / n, 0.0)) * np.linalg.norm(ref)
    corr = scores / np.maximum(norms, 1e-12)
    best = int(np.argmax(corr))
    lag = m - best  # index m: the copy ends exactly at the output's end (reversed: starts)
    return {
        "correlation": float(corr[best]),
        "lag_seconds": lag / float(rate),
        "correlation_at_zero_lag": float(corr[m]) if m < corr.size else None,
    }
