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

* ``crest``: each sample step over the RMS of the 10 ms around it (floored at
  -80 dBFS), the largest over channels, every 5 ms.
"""

from __future__ import annotations

import numpy as np

from harmonizer_cli.core.quality._common import samples_2d

__all__ = ["out_of_band_levels", "step_crests", "click_reference", "click_report", "CLICK_TARGETS"]

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
    """The largest sample-step crest in every 5 ms, the largest over channels.

    Each sample step ``|x[n+1] - x[n]|`` is divided by the RMS of the 10 ms centred on
    it (floored at -80 dBFS), so the value does not depend on where a window falls
    (a copied transient reads the same in the output as in the original).

    Returns ``(crests, hop_seconds)``.
    """
    samples = samples_2d(samples)
    hop = max(2, int(round(0.005 * sample_rate)))
    half = hop
    n = samples.shape[0] - 1
    n_chunks = n // hop
    if n_chunks < 1:
        return np.zeros(0), hop / float(sample_rate)
    out = np.empty(n_chunks)
    block_chunks = 1 << 13
    for first in range(0, n_chunks, block_chunks):
        last = min(n_chunks, first + block_chunks)
        lo, hi = first * hop, last * hop
        a, b = max(0, lo - half), min(samples.shape[0], hi + half + 1)
        block = samples[a:b].astype(np.float64)
        cum = np.concatenate([np.zeros((1, block.shape[1])), np.cumsum(block ** 2, axis=0)])
        centre = np.arange(lo, hi) - a
        left, right = np.maximum(centre - half, 0), np.minimum(centre + half + 1, block.shape[0])
        rms = np.sqrt((cum[right] - cum[left]) / (right - left)[:, None]) + 1e-4
        steps = np.abs(block[centre + 1] - block[centre])
        crest = np.max(steps / rms, axis=1)
        out[first:last] = crest.reshape(last - first, hop).max(axis=1)
    return out, hop / float(sample_rate)


def _clicks(values: np.ndarray, hop: float, limit: float, *, most: int = 10) -> tuple[int, list[float]]:
    """Windows above ``limit``, grouped where less than 0.1 s apart: how many groups, and
    the times (s) of the worst window of at most ``most`` of them, the worst first."""
    over = np.flatnonzero(values > limit)
    if over.size == 0:
        return 0, []
    starts = np.concatenate([[0], np.flatnonzero(np.diff(over) * hop > 0.1) + 1])
    groups = np.split(over, starts[1:])
    worst = sorted((float(values[g].max()), float(g[np.argmax(values[g])] * hop)) for g in groups)[::-1]
    return len(groups), [round(t, 3) for _, t in worst[:most]]


def click_reference(original: np.ndarray, *, sample_rate: int, cutoff_hz: float | None) -> dict:
    """The original's own worst moments: ``{"out_of_band_db", "crest", "floor_power"}``
    (``out_of_band_db`` None without a band above the cut-off)."""
    original = np.clip(samples_2d(original), -1.0, 1.0)
    floor = 1e-6 * float(np.mean(original.astype(np.float64) ** 2)) + 1e-20
    levels = out_of_band_levels(original, sample_rate=sample_rate, cutoff_hz=cutoff_hz, floor_power=floor)
    crests, _ = step_crests(original, sample_rate=sample_rate)
    return {"out_of_band_db": None if levels is None else (float(np.max(levels[0])) if levels[0].size else 0.0),
            "crest": float(np.max(crests)) if crests.size else 0.0, "floor_power": floor}


def click_report(original: np.ndarray, extended: np.ndarray, *, sample_rate: int, cutoff_hz: float | None,
                 reference: dict | None = None) -> dict:
    """Clicks over the whole output against the original's own worst moments.

    Parameters
    ----------
    original, extended : np.ndarray [shape=(n_samples, n_channels)]
        At the same sample rate.
    sample_rate : int
    cutoff_hz : float or None
        The original's codec cut-off (``seams.estimate_codec_cutoff``).
    reference : dict, optional
        ``click_reference`` of the original, if already measured.

    Returns
    -------
    dict
        ``out_of_band``: ``{"original_max_db", "output_max_db", "excess_db", "clicks",
        "times"}`` or None (no band above the cut-off); ``crest``: ``{"original_max",
        "output_max", "ratio", "clicks", "times"}``. ``clicks`` counts the places (windows
        less than 0.1 s apart grouped) beyond the targets; ``times`` gives the worst ten.
    """
    # both as a PCM file holds them: a decoded loud master overshoots full scale, and
    # clipping it (as every 16/24-bit writer does) is broadband in the original too
    if reference is None:
        reference = click_reference(original, sample_rate=sample_rate, cutoff_hz=cutoff_hz)
    extended = np.clip(samples_2d(extended), -1.0, 1.0)
    report: dict = {"out_of_band": None}
    if reference["out_of_band_db"] is not None:
        levels_e, hop = out_of_band_levels(extended, sample_rate=sample_rate, cutoff_hz=cutoff_hz,
                                           floor_power=reference["floor_power"])
        own = reference["out_of_band_db"]
        worst = float(np.max(levels_e)) if levels_e.size else 0.0
        count, times = _clicks(levels_e, hop, own + CLICK_TARGETS["out_of_band_excess_db"])
        report["out_of_band"] = {"original_max_db": own, "output_max_db": worst, "excess_db": worst - own,
                                 "clicks": count, "times": times}
    crest_e, hop = step_crests(extended, sample_rate=sample_rate)
    own = reference["crest"]
    worst = float(np.max(crest_e)) if crest_e.size else 0.0
    count, times = _clicks(crest_e, hop, CLICK_TARGETS["crest_ratio"] * own)
    report["crest"] = {"original_max": own, "output_max": worst, "ratio": worst / max(own, 1e-12),
                       "clicks": count, "times": times}
    return report
