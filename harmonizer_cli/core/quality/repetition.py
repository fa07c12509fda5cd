"""Repetition: the share of an output that replays earlier material at one single lag (a loop scores 1).
"""

from __future__ import annotations

import numpy as np

from harmonizer_cli.core.audio_io import MODEL_SAMPLE_RATE

__all__ = ["REPETITION_FRAME_SECONDS", "MIN_REPEATING_FRACTION", "REPEATING_REFERENCE", "MAX_REPETITION_FRAMES", "repetition_features", "repetition_shares"]


#: Hop of the repetition frames (see ``repetition_features``).
REPETITION_FRAME_SECONDS = 0.1

#: Below this share of repeating frames a song "never repeats itself" and its own
#: ``repeating`` share is undefined; outputs are then held to the corpus median instead.
MIN_REPEATING_FRACTION = 0.05

#: Median ``repeating`` share of the 12 songs in ../shared/music/songs (calibration).
REPEATING_REFERENCE = 0.62

#: Beyond this many frames the repetition hop grows (the similarity matrices are n x n).
MAX_REPETITION_FRAMES = 6000


def repetition_features(
    view: np.ndarray, *, frame_seconds: float = 0.1, window_seconds: float = 0.5
) -> np.ndarray:
    """Chroma + MFCC frames of a 22050 Hz mono signal, for repetition analysis.

    librosa chroma (n_fft 4096) and MFCCs (n_fft 2048) at a 512-sample hop are averaged
    over ``window_seconds`` windows every ``frame_seconds``: long windows make the
    features of an exact copy nearly the same whatever its offset to the frame grid.

    Parameters
    ----------
    view : np.ndarray [shape=(n_samples,)]
        22050 Hz mono.
    frame_seconds : float
        Hop between frames (0.1 s).
    window_seconds : float
        Averaging window (0.5 s).

    Returns
    -------
    np.ndarray [shape=(n_frames, 12 + 19)]
        Per frame: the L2-normalised mean chroma, then the 19 MFCCs (without c0)
        standardised over the signal and scaled to unit norm on average.
    """
    import librosa

    hop = 512
    chroma = librosa.feature.chroma_stft(y=view, sr=MODEL_SAMPLE_RATE, n_fft=4096, hop_length=hop, tuning=0.0)
    mfcc = librosa.feature.mfcc(y=view, sr=MODEL_SAMPLE_RATE, n_mfcc=20, n_fft=2048, hop_length=hop)[1:]
    n = min(chroma.shape[1], mfcc.shape[1])
    both = np.concatenate([chroma[:, :n], mfcc[:, :n]], axis=0).T.astype(np.float64)  # [n, 31]
    if n == 0:
        return np.zeros((0, 31))
    cum = np.concatenate([np.zeros((1, both.shape[1])), np.cumsum(both, axis=0)])
    hop_seconds = hop / MODEL_SAMPLE_RATE
    width = max(1, int(round(window_seconds / hop_seconds)))
    centres = np.arange(0.0, n * hop_seconds, frame_seconds) / hop_seconds
    lo = np.clip(np.round(centres - width / 2).astype(int), 0, n - 1)
    hi = np.clip(lo + width, 1, n)
    frames = (cum[hi] - cum[lo]) / (hi - lo)[:, None]
    chroma_f, mfcc_f = frames[:, :12], frames[:, 12:]
    chroma_f = chroma_f / (np.linalg.norm(chroma_f, axis=1, keepdims=True) + 1e-9)
    mfcc_f = (mfcc_f - mfcc_f.mean(0)) / (mfcc_f.std(0) + 1e-9) / np.sqrt(mfcc_f.shape[1])
    return np.concatenate([chroma_f, mfcc_f], axis=1)


def _earlier_matches(
    features: np.ndarray, *, context: int, min_lag: int, tie: float, tolerance: int, n_chroma: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Best earlier-match similarity per frame, and which lags are (near-)best.

    Returns
    -------
    best : np.ndarray [shape=(n,)]
        Context similarity of each frame's best match at least ``min_lag`` back
        (-inf when there is none).
    at_lag : np.ndarray [shape=(n, n), dtype=bool]
        ``at_lag[t, lag]``: a match within ``tie`` of the best sits within
        ``+-tolerance`` frames of ``lag``.
    """
    from scipy.ndimage import maximum_filter1d

    chroma = features[:, :n_chroma].astype(np.float32)
    timbre = features[:, n_chroma:].astype(np.float32)
    timbre = timbre / (np.linalg.norm(timbre, axis=1, keepdims=True) + 1e-9)
    sim = 0.5 * (chroma @ chroma.T) + 0.5 * (timbre @ timbre.T)  # [n, n], frame cosine
    n = sim.shape[0]
    # context: average along the diagonal over the last `context` frames (t-k, s-k)
    smoothed = sim.copy()
    for k in range(1, min(context, n)):  # fewer frames than the context: use what there is
        smoothed[k:, k:] += sim[: n - k, : n - k]
    counts = np.minimum(np.arange(n) + 1, context).astype(np.float32)
    smoothed /= np.minimum(counts[:, None], counts[None, :])
    # lag-indexed: by_lag[t, lag] = smoothed[t, t - lag], for min_lag <= lag <= t
    rows = np.arange(n)[:, None]
    lags = np.arange(n)[None, :]
    source = rows - lags
    valid = (source >= 0) & (lags >= min_lag)
    by_lag = np.where(valid, np.take_along_axis(smoothed, np.clip(source, 0, n - 1), axis=1), np.float32(-np.inf))
    best = by_lag.max(axis=1)
    near = by_lag >= (best[:, None] - tie)
    near &= np.isfinite(by_lag)
    if tolerance > 0:
        near = maximum_filter1d(near.astype(np.uint8), size=2 * tolerance + 1, axis=1).astype(bool)
    return best.astype(np.float64), near


def repetition_shares(
    features: np.ndarray, *, start_frame: int = 0, frame_seconds: float = 0.1, context_seconds: float = 8.0,
    min_lag_seconds: float = 4.0, threshold: float = 0.95, tolerance_seconds: float = 0.3, tie: float = 0.02,
) -> dict:
    """Share of frames whose best earlier match sits at one single lag.

    For each frame ``t``, its best earlier match is the frame ``s <= t - min_lag`` of
    highest context similarity (frame cosine averaged along the diagonal over the last
    ``context`` frames; chroma and timbre weighted equally). ``t`` *repeats* when that
    similarity is at least ``threshold``. Matches within ``tie`` of the best count as
    best too (an exact copy and a copy-pasted bar are equally good), and a frame sits
    at lag ``L`` when one of its best matches is within ``+-tolerance`` of ``L``. The
    modal lag is the lag at which most frames sit.

    Parameters
    ----------
    features : np.ndarray [shape=(n_frames, n_features)]
        From ``repetition_features`` (``frame_seconds`` frames).
    start_frame : int
        Frames from here on make the ``past`` share (the part past the original's length).
    frame_seconds, context_seconds, min_lag_seconds, tolerance_seconds : float
        Frame length and the context, minimum lag and lag tolerance in seconds.
    threshold : float
        Context similarity at or above which a frame repeats.
    tie : float
        Similarity margin within which matches count as equally best.

    Returns
    -------
    dict
        ``past``: among the frames from ``start_frame`` on, the share that repeat at the
        modal lag of that part (None when there are none); ``repeating``: among all
        repeating frames, the share at the overall modal lag; ``repeating_fraction``:
        the share of frames that repeat at all; ``modal_lag_frames`` and
        ``past_modal_lag_frames``.
    """
    n = features.shape[0]
    context = max(1, int(round(context_seconds / frame_seconds)))
    min_lag = max(1, int(round(min_lag_seconds / frame_seconds)))
    tolerance = int(round(tolerance_seconds / frame_seconds))
    if n <= min_lag:
        return {"past": None if start_frame >= n else 0.0, "repeating": 0.0, "repeating_fraction": 0.0,
                "modal_lag_frames": None, "past_modal_lag_frames": None}
    best, at_lag = _earlier_matches(features, context=context, min_lag=min_lag, tie=tie, tolerance=tolerance)
    repeats = best >= threshold

    def modal(mask: np.ndarray) -> tuple[int | None, int]:
        rows = mask & repeats
        if not rows.any():
            return None, 0
        counts = at_lag[rows].sum(axis=0)
        mode = int(np.argmax(counts))
        return mode, int(counts[mode])

    mode_all, at_mode_all = modal(np.ones(n, dtype=bool))
    n_repeating = int(repeats.sum())
    past_mask = np.arange(n) >= start_frame
    n_past = int(past_mask.sum())
    mode_past, at_mode_past = modal(past_mask)
    return {
        "past": (at_mode_past / n_past) if n_past else None,
        "repeating": (at_mode_all / n_repeating) if n_repeating else 0.0,
        "repeating_fraction": n_repeating / n,
        "modal_lag_frames": mode_all,
        "past_modal_lag_frames": mode_past,
    }
