"""Blind seam detection: find the splice points of an output made of pieces of its original.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harmonizer_cli.core.audio_io import MODEL_SAMPLE_RATE, Audio
from harmonizer_cli.core.quality._common import analysis_view

__all__ = ["SeamDetection", "detect_seams"]


@dataclass
class SeamDetection:
    """Seams found by aligning an output to its original.

    Attributes
    ----------
    times : np.ndarray [shape=(n_seams,)]
        Output times of the seams, seconds.
    source_times : list of (float, float)
        For each seam, the original's time played just before and just after it.
    matched_share : float
        Share of output frames whose alignment similarity is at least 0.9: near 1 for
        an output assembled from the original's own audio, low for a resynthesis (then
        the detected seams mean little).
    """

    times: np.ndarray
    source_times: list = field(default_factory=list)
    matched_share: float = 0.0


def _alignment_features(view: np.ndarray, *, hop: int, context: int, quiet_db: float = -60.0) -> np.ndarray:
    """Stacked, normalised log-mel frames; frames quieter than ``quiet_db`` dBFS all read
    as one "silence" vector (so silence matches silence, and nothing else)."""
    import librosa

    mel = librosa.feature.melspectrogram(y=view, sr=MODEL_SAMPLE_RATE, n_fft=2048, hop_length=hop,
                                         n_mels=48, center=False)
    level = 10.0 * np.log10(mel + 1e-12)
    n_frames = level.shape[1]
    rms = librosa.feature.rms(y=view, frame_length=2048, hop_length=hop, center=False)[0][:n_frames]
    quiet = 20.0 * np.log10(rms + 1e-12) < quiet_db
    level = np.maximum(level, level.max(axis=0, keepdims=True) - 80.0).T  # [n_frames, 48]
    level = level - level.mean(axis=1, keepdims=True)
    level /= np.linalg.norm(level, axis=1, keepdims=True) + 1e-9
    level = np.concatenate([level, np.zeros((n_frames, 1))], axis=1)
    level[quiet] = 0.0
    level[quiet, -1] = 1.0
    stacked = np.concatenate(
        [level[np.minimum(np.arange(n_frames) + k, n_frames - 1)] for k in range(context)], axis=1
    )
    stacked /= np.linalg.norm(stacked, axis=1, keepdims=True) + 1e-9
    return stacked.astype(np.float32)


def _refine_lag(out: np.ndarray, orig: np.ndarray, *, start: int, stop: int, lag: int, search: int) -> int:
    """Sample lag (orig index - out index) that best matches ``out[start:stop]``, near ``lag``."""
    from scipy.signal import correlate

    start, stop = max(0, start), min(out.size, stop)
    seg = out[start:stop].astype(np.float64)
    lo = start + lag - search
    if seg.size < 64 or lo < 0 or lo + seg.size + 2 * search > orig.size or not np.any(seg):
        return lag
    region = orig[lo: lo + seg.size + 2 * search].astype(np.float64)
    scores = correlate(region, seg, mode="valid", method="fft")
    cum = np.concatenate([[0.0], np.cumsum(region**2)])
    energy = cum[seg.size:] - cum[: cum.size - seg.size]
    scores = scores / np.sqrt(np.maximum(energy, 0.0) + 1e-12)
    return int(lo + int(np.argmax(scores)) - start)


def detect_seams(
    original: Audio, extended: Audio, *, hop: int = 1024, context: int = 5, jump_penalty: float = 1.5,
    min_segment_seconds: float = 1.0,
) -> SeamDetection:
    """Find the seams of an output made of pieces of the original, without being told.

    1. Log-mel frames (hop 1024 at 22050 Hz, 46 ms) of both, each stacked with its next
       4 frames and normalised (frames below -60 dBFS all read as "silence"); the cost
       of pairing two frames is ``1 - cosine``.
    2. A dynamic programme over output frames picks, for each, an original frame: going
       on to the next original frame is free, any other move (a jump) costs
       ``jump_penalty``. An output that copies the original gets one path with a jump
       at each splice; identical repeated material causes no spurious jump.
    3. Jumps less than ``min_segment_seconds`` apart (a short detour) make one seam.
       Each seam is refined to the sample: the lags before and after it are refined by
       cross-correlation away from the seam, and the seam is the change point that best
       splits the output into "matches the original at the old lag" and "at the new
       lag". With a crossfade this is its middle.

    Parameters
    ----------
    original, extended : Audio
    hop : int
        Frame hop at 22050 Hz.
    context : int
        Frames stacked.
    jump_penalty : float
        Cost of a jump, in units of per-frame mismatch.
    min_segment_seconds : float
        Jumps closer than this are merged.

    Returns
    -------
    SeamDetection
    """
    orig = analysis_view(original)
    out = analysis_view(extended)
    f_orig = _alignment_features(orig, hop=hop, context=context)
    f_out = _alignment_features(out, hop=hop, context=context)
    n_out, n_orig = f_out.shape[0], f_orig.shape[0]
    if n_out < 2 or n_orig < 2:
        return SeamDetection(times=np.zeros(0), matched_share=0.0)
    jumped = np.zeros((n_out, n_orig), dtype=bool)
    best_prev = np.zeros(n_out, dtype=np.int64)
    total = (1.0 - f_orig @ f_out[0]).astype(np.float64)
    stay = np.full(n_orig, np.inf)
    for j in range(1, n_out):
        cost = 1.0 - f_orig @ f_out[j]
        k = int(np.argmin(total))
        best_prev[j] = k
        jump = total[k] + jump_penalty
        stay[1:] = total[:-1]
        jumped[j] = jump < stay
        total = np.minimum(stay, jump) + cost
    path = np.zeros(n_out, dtype=np.int64)
    path[-1] = int(np.argmin(total))
    for j in range(n_out - 1, 0, -1):
        path[j - 1] = best_prev[j] if jumped[j, path[j]] else path[j] - 1
    similarity = np.einsum("ij,ij->i", f_out, f_orig[path])
    matched_share = float(np.mean(similarity >= 0.9))

    jumps = [j for j in range(1, n_out) if path[j] != path[j - 1] + 1]
    min_frames = max(1, int(round(min_segment_seconds * MODEL_SAMPLE_RATE / hop)))
    groups: list[list[int]] = []
    for j in jumps:
        if groups and j - groups[-1][-1] < min_frames:
            groups[-1].append(j)
        else:
            groups.append([j])
    fuzzy = (context + 3) * hop  # the stacked frames blur a seam over this many samples
    span = MODEL_SAMPLE_RATE // 2
    times, sources = [], []
    for group in groups:
        first, last = group[0], group[-1]
        lag_before = int(path[first - 1] - (first - 1)) * hop
        lag_after = int(path[last] - last) * hop
        lo, hi = first * hop - fuzzy, last * hop + fuzzy
        lag_before = _refine_lag(out, orig, start=lo - span, stop=lo, lag=lag_before, search=hop)
        lag_after = _refine_lag(out, orig, start=hi, stop=hi + span, lag=lag_after, search=hop)
        seam = _change_point(out, orig, lo=lo, hi=hi, lag_before=lag_before, lag_after=lag_after)
        if _continues(out, orig, at=seam, lag=lag_before) or _continues(out, orig, at=seam, lag=-lag_after, back=True):
            continue  # the output goes on matching the old place (a jump between identical material)
        times.append(seam / MODEL_SAMPLE_RATE)
        sources.append(((seam + lag_before) / MODEL_SAMPLE_RATE, (seam + lag_after) / MODEL_SAMPLE_RATE))
    return SeamDetection(times=np.asarray(times, dtype=float), source_times=sources, matched_share=matched_share)


def _continues(out: np.ndarray, orig: np.ndarray, *, at: int, lag: int, back: bool = False,
               length: int = MODEL_SAMPLE_RATE // 5, max_residual: float = 0.01) -> bool:
    """Whether ``out`` after ``at`` (before it, with ``back``) still equals ``orig`` at ``lag``."""
    if back:
        lag = -lag
        start, stop = at - length, at
    else:
        start, stop = at, at + length
    if start < 0 or stop > out.size or start + lag < 0 or stop + lag > orig.size:
        return False
    segment = out[start:stop].astype(np.float64)
    energy = float(np.sum(segment**2))
    if energy <= 1e-10:
        return False
    residual = float(np.sum((segment - orig[start + lag: stop + lag]) ** 2))
    return residual / energy < max_residual


def _change_point(out: np.ndarray, orig: np.ndarray, *, lo: int, hi: int, lag_before: int, lag_after: int) -> int:
    """Split point of ``out[lo:hi]`` into "equals orig at lag_before" then "at lag_after"."""
    lo = max(lo, 0, -lag_before, -lag_after)
    hi = min(hi, out.size, orig.size - lag_before, orig.size - lag_after)
    if hi - lo < 4:
        return int(max(lo, 0))
    segment = out[lo:hi].astype(np.float64)
    err_before = (segment - orig[lo + lag_before: hi + lag_before]) ** 2
    err_after = (segment - orig[lo + lag_after: hi + lag_after]) ** 2
    cum_before = np.concatenate([[0.0], np.cumsum(err_before)])
    cum_after = np.concatenate([[0.0], np.cumsum(err_after)])
    split = cum_before + (cum_after[-1] - cum_after)
    return int(lo + int(np.argmin(split)))
