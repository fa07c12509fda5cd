"""Clicks anywhere: out-of-band bursts and sample-step crests over the WHOLE output.

A seam measure looks only where seams are; an artefact of the local stretch, or of
anything else, can be anywhere. Both measures here scan every few milliseconds of the
output and of the original, and compare the output's worst moment with the original's
worst: an output made of the song's own samples has no moment worse than the song's
unless something new was made.

* ``out_of_band``: for lossy sources, the energy above the codec's cut-off
  (``seams.estimate_codec_cutoff`` + 1 kHz) in 5 ms windows every 2.5 ms, over its
  running median in the 0.5 s around (dB). A lossy song has next to nothing there; a
  click is broadband. Levels are floored 60 dB below the original's full-band power,
  so that the codec's own near-silence does not read as a burst.
Both are measured on the samples clipped to full scale, as a PCM file holds them.

* ``crest``: the largest sample step within 10 ms windows (every 5 ms) over the window's
  RMS (floored at -80 dBFS), the largest over channels.
"""

from __future__ import annotations

import numpy as np

from harmonizer_cli.core.quality._common import samples_2d

__all__ = ["out_of_band_levels", "step_crests", "click_report", "CLICK_TARGETS"]

#: An output clicks where it exceeds the original's worst moment by these.
CLICK_TARGETS = {"out_of_band_excess_db": 1.0, "crest_ratio": 1.05}


def out_of_band_levels(samples: np.ndarray, *, sample_rate: int, cutoff_hz: float | None,
                       floor_power: float) -> tuple[np.ndarray, float] | None:
    """Out-of-band burst level (dB over the running median) of every 5 ms window.

    Returns ``(levels_db, hop_seconds)``, or None where there is no band above the
    cut-off (a full-band source, or a cut-off too near Nyquist).
    """
    if cutoff_hz is None:
        return None
    from scipy.ndimage import median_filter
    from scipy.signal import butter, sosfiltfilt

    samples = samples_2d(samples)
    edge = cutoff_hz + 1000.0
    if edge > 0.97 * sample_rate / 2.0 - 500.0:
        return None
    sos = butter(8, edge, btype="highpass", fs=sample_rate, output="sos")
    window = max(2, int(round(0.005 * sample_rate)))
    hop = window // 2
    worst = None
    for start in range(0, samples.shape[0], 1 << 22):  # blocks of ~95 s at 44.1 kHz, overlapping by 0.5 s
        lo = max(0, start - sample_rate // 2)
        block = samples[lo:start + (1 << 22) + sample_rate // 2].astype(np.float64)
        high = sosfiltfilt(sos, block, axis=0) ** 2
        cum = np.concatenate([np.zeros((1, high.shape[1])), np.cumsum(high, axis=0)])
        starts = np.arange(0, max(1, high.shape[0] - window + 1), hop)
        energy = (cum[starts + window] - cum[starts]) / window  # (n_windows, channels)
        keep = (starts + lo >= start) & (starts + lo < start + (1 << 22))
        level = energy + floor_power
        reference = median_filter(level, size=(2 * int(0.25 * sample_rate / hop) + 1, 1), mode="nearest")
        level_db = 10.0 * np.log10(np.max(level / reference, axis=1))[keep]
        worst = level_db if worst is None else np.concatenate([worst, level_db])
    return worst, hop / float(sample_rate)


def step_crests(samples: np.ndarray, *, sample_rate: int) -> tuple[np.ndarray, float]:
    """Sample-step crest of every 10 ms window (every 5 ms), the largest over channels.

    Returns ``(crests, hop_seconds)``.
    """
    samples = samples_2d(samples)
    hop = max(2, int(round(0.005 * sample_rate)))
    n_chunks = (samples.shape[0] - 1) // hop
    if n_chunks < 2:
        return np.zeros(0), hop / float(sample_rate)
    crests = []
    block_chunks = 1 << 14
    for first in range(0, n_chunks - 1, block_chunks):
        last = min(n_chunks, first + block_chunks + 1)
        block = samples[first * hop:last * hop + 1].astype(np.float64)
        steps = np.abs(np.diff(block, axis=0)).reshape(last - first, hop, -1).max(axis=1)
        power = (block[:-1] ** 2).reshape(last - first, hop, -1).sum(axis=1)
        step_max = np.maximum(steps[:-1], steps[1:])          # windows of two chunks
        rms = np.sqrt((power[:-1] + power[1:]) / (2 * hop)) + 1e-4
        crests.append(np.max(step_max / rms, axis=1))
    return np.concatenate(crests), hop / float(sample_rate)


def _worst_times(values: np.ndarray, hop: float, limit: float, *, most: int = 10) -> list[float]:
    """Times (s) of the worst windows above ``limit``, at most ``most``, 0.1 s apart."""
    over = np.flatnonzero(values > limit)
    order = over[np.argsort(values[over])[::-1]]
    times: list[float] = []
    for index in order:
        t = float(index * hop)
        if all(abs(t - other) > 0.1 for other in times):
            times.append(round(t, 3))
        if len(times) >= most:
            break
    return times


def click_report(original: np.ndarray, extended: np.ndarray, *, sample_rate: int, cutoff_hz: float | None) -> dict:
    """Clicks over the whole output against the original's own worst moments.

    Parameters
    ----------
    original, extended : np.ndarray [shape=(n_samples, n_channels)]
        At the same sample rate.
    sample_rate : int
    cutoff_hz : float or None
        The original's codec cut-off (``seams.estimate_codec_cutoff``).

    Returns
    -------
    dict
        ``out_of_band``: ``{"original_max_db", "output_max_db", "excess_db", "clicks",
        "times"}`` or None (no band above the cut-off); ``crest``: ``{"original_max",
        "output_max", "ratio", "clicks", "times"}``. ``clicks`` counts output windows
        (grouped 0.1 s apart in ``times``, the worst first) beyond the targets.
    """
    # both as a PCM file holds them: a decoded loud master overshoots full scale, and
    # clipping it (as every 16/24-bit writer does) is broadband in the original too
    original = np.clip(samples_2d(original), -1.0, 1.0)
    extended = np.clip(samples_2d(extended), -1.0, 1.0)
    floor = 1e-6 * float(np.mean(original.astype(np.float64) ** 2)) + 1e-20
    report: dict = {"out_of_band": None}
    levels_o = out_of_band_levels(original, sample_rate=sample_rate, cutoff_hz=cutoff_hz, floor_power=floor)
    if levels_o is not None:
        levels_e, hop = out_of_band_levels(extended, sample_rate=sample_rate, cutoff_hz=cutoff_hz, floor_power=floor)
        own = float(np.max(levels_o[0])) if levels_o[0].size else 0.0
        worst = float(np.max(levels_e)) if levels_e.size else 0.0
        limit = own + CLICK_TARGETS["out_of_band_excess_db"]
        times = _worst_times(levels_e, hop, limit)
        report["out_of_band"] = {"original_max_db": own, "output_max_db": worst, "excess_db": worst - own,
                                 "clicks": len(times), "times": times}
    crest_o, _ = step_crests(original, sample_rate=sample_rate)
    crest_e, hop = step_crests(extended, sample_rate=sample_rate)
    own = float(np.max(crest_o)) if crest_o.size else 0.0
    worst = float(np.max(crest_e)) if crest_e.size else 0.0
    times = _worst_times(crest_e, hop, CLICK_TARGETS["crest_ratio"] * own)
    report["crest"] = {"original_max": own, "output_max": worst, "ratio": worst / max(own, 1e-12),
                       "clicks": len(times), "times": times}
    return report
