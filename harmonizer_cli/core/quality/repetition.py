"""Repetition: the share of an output that replays earlier material at one single lag (a loop scores 1).

Two measures of one notion. ``repetition_shares`` listens: it compares chroma + MFCC
frames of the audio (n x n matrices, so outputs of up to about 10 minutes at 0.1 s).
``segment_repetition`` reads the extension's segment list instead and counts exact
copies by interval arithmetic: it measures outputs of hours in milliseconds.
"""

from __future__ import annotations

import numpy as np

from harmonizer_cli.core.audio_io import MODEL_SAMPLE_RATE

__all__ = ["REPETITION_FRAME_SECONDS", "MIN_REPEATING_FRACTION", "REPEATING_REFERENCE", "MAX_REPETITION_FRAMES",
           "repetition_features", "repetition_shares", "segment_repetition"]


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


def segment_repetition(
    segments: list, *, source_seconds: float, output_seconds: float | None = None, frame_seconds: float = 0.1,
    min_lag_seconds: float = 4.0, tolerance_seconds: float = 0.3,
) -> dict:
    """Single-lag repetition of an extension, counted exactly from its segment list.

    The notion of ``repetition_shares`` ("past" and "repeating"), for exact copies and
    outputs of any length. Segment ``k`` plays the source from ``source_start`` on at
    unit rate from ``output_start`` until its source ends or the next segment starts
    (the seams' ~10 ms crossfades sit at the ``output_start`` of the next segment; a
    segment stretched for the exact length, 2-3 % over a few seconds, counts at unit
    rate: the later segments keep their own ``output_start``, so their lags stay exact).
    Output frame ``t`` (at ``t * frame_seconds``) *repeats at lag L* when the source
    instant it plays was already played at output time ``t - L``, ``L >= min_lag``.

    For every pair of segments ``i < j`` whose source spans overlap, the overlap is
    played again at lag ``(output_start - source_start)[j] - (...)[i]`` over one output
    interval of ``j``. The frames of each interval are summed per lag (bins of one
    frame); the *modal lag* is the bin whose ``+-tolerance`` window holds the most
    frames. The frames it covers are then counted exactly, once each, by marking the
    intervals of the pairs within the window on a frame grid (so a frame repeated at
    several lags of the window, or at several lags at all, counts once). Time and
    memory are linear in the overlapping pairs plus the frames (2000 segments of a
    3-minute song over 10 h: about 0.1 s).

    The *cycle* asks whether the sequence of segments settles into a loop: the largest
    share of the output covered by a run of segments each equal to the one ``p``
    before (both source ends within ``tolerance``) for at least two whole passes of
    the period, any ``p`` (the plain loop, or A B A B ...: about 1).

    Reference: the song played once has no exact self-copies; the plain loop (the
    song tiled, ``loop_share``) scores ``past`` 1 and ``cycle`` 1. Over hours "at or
    below the song's own" means ``past`` at or below the original's audio
    ``repeating`` share (``REPEATING_REFERENCE`` when it never repeats itself) and
    ``cycle`` near 0; for minutes the audio measure, which hears near-copies too, stays
    the reference. The planner scores paths the same way (``plan.modal_lag_share``).

    Parameters
    ----------
    segments : list of dict
        ``{"source_start", "source_end", "output_start"}`` (s) in output order, as
        ``extend --json`` gives them; ``source_start`` None (the neural engine's
        generated frames): neither repeats nor is repeated.
    source_seconds : float
        Length of the original: frames from here on make the ``past`` share.
    output_seconds : float or None
        Length of the output; None: the end of the last segment.
    frame_seconds, min_lag_seconds, tolerance_seconds : float
        Frame grid, the shortest lag that counts, and the lag tolerance (the audio
        measure's 0.1 s, 4 s and 0.3 s); the tolerance also decides when two
        segments are the same for the cycle.

    Returns
    -------
    dict
        ``share``: among all frames, the share that repeat at the modal lag;
        ``past``: among the frames from ``source_seconds`` on, the share at the modal
        lag of that part (None when there are none); ``repeating``: among the frames
        that repeat at all, the share at the modal lag (the audio measure's
        ``repeating``); ``repeating_fraction``: the share of frames that repeat at
        any lag; ``modal_lag_seconds`` and ``past_modal_lag_seconds`` (None without
        repetition); ``cycle``, ``cycle_period_seconds`` and ``cycle_segments`` (the
        period, None without a cycle); ``loop_share``: the plain loop's ``share`` at
        the same lengths; ``n_frames``, ``n_segments``.

    Raises
    ------
    ValueError
        No segments, segments out of output order, a generated last segment without
        ``output_seconds``, or a frame, lag or tolerance that is not positive.

    Examples
    --------
    The song (100 s) played three times over:

    >>> loop = [{"source_start": 0.0, "source_end": 100.0, "output_start": 100.0 * k} for k in range(3)]
    >>> figures = segment_repetition(loop, source_seconds=100.0)
    >>> figures["past"], figures["modal_lag_seconds"], figures["cycle"]
    (1.0, 100.0, 1.0)
    """
    if not (frame_seconds > 0 and min_lag_seconds > 0 and tolerance_seconds >= 0):
        raise ValueError(f"frame_seconds and min_lag_seconds must be more than 0 and tolerance_seconds at least 0, "
                         f"got {frame_seconds}, {min_lag_seconds}, {tolerance_seconds}")
    out0, src0, length, output_seconds = _segment_spans(segments, output_seconds)

    n_frames = max(0, int(np.ceil(output_seconds / frame_seconds - 1e-6)))
    start_frame = min(n_frames, int(np.ceil(source_seconds / frame_seconds - 1e-6)))
    tolerance = int(round(tolerance_seconds / frame_seconds))
    i, j, lo, hi = _source_overlaps(src0, length)
    offset = out0 - src0
    lag = offset[j] - offset[i]
    repeat = lag >= min_lag_seconds - 1e-9
    first = _frame_index(lo[repeat] + offset[j[repeat]], frame_seconds, n_frames)
    last = _frame_index(hi[repeat] + offset[j[repeat]], frame_seconds, n_frames)
    keys = np.round(lag[repeat] / frame_seconds).astype(np.int64)

    covered = _covered(first, last, n_frames)
    n_repeating = int(covered.sum())
    mode_all, at_mode_all = _modal_lag(keys, first, last, n_frames, from_frame=0, tolerance=tolerance)
    mode_past, at_mode_past = _modal_lag(keys, first, last, n_frames, from_frame=start_frame, tolerance=tolerance)
    n_past = n_frames - start_frame
    src_end = src0 + length
    same = (np.abs(src0[i] - src0[j]) <= tolerance_seconds) & (np.abs(src_end[i] - src_end[j]) <= tolerance_seconds)
    cycle, period_seconds, period = _longest_cycle(i[same], j[same], out0, out0 + length, output_seconds)
    return {
        "share": at_mode_all / n_frames if n_frames else 0.0,
        "past": at_mode_past / n_past if n_past > 0 else None,
        "repeating": at_mode_all / n_repeating if n_repeating else 0.0,
        "repeating_fraction": n_repeating / n_frames if n_frames else 0.0,
        "modal_lag_seconds": None if mode_all is None else round(mode_all * frame_seconds, 4),
        "past_modal_lag_seconds": None if mode_past is None else round(mode_past * frame_seconds, 4),
        "cycle": cycle,
        "cycle_period_seconds": period_seconds,
        "cycle_segments": period,
        "loop_share": _loop_share(source_seconds, output_seconds, frame_seconds=frame_seconds,
                                  min_lag_seconds=min_lag_seconds, n_frames=n_frames),
        "n_frames": n_frames,
        "n_segments": len(segments),
    }


def _segment_spans(segments: list, output_seconds: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(output starts, source starts, lengths played, output length)`` of a segment list
    (``segment_repetition``'s; a generated segment plays nothing: length 0)."""
    if not segments:
        raise ValueError("no segments to measure")
    out0 = np.array([float(s["output_start"]) for s in segments])
    if np.any(np.diff(out0) < 0):
        raise ValueError("segments must be in output order (output_start never decreasing)")
    played = np.array([s.get("source_start") is not None for s in segments])
    src0 = np.array([float(s["source_start"]) if p else 0.0 for s, p in zip(segments, played)])
    src1 = np.array([float(s["source_end"]) if p else 0.0 for s, p in zip(segments, played)])
    if output_seconds is None:
        if not played[-1]:
            raise ValueError("the last segment has no source (generated): give output_seconds")
        output_seconds = float(out0[-1] + src1[-1] - src0[-1])
    ends = np.append(out0[1:], output_seconds)
    length = np.where(played, np.clip(np.minimum(src1 - src0, ends - out0), 0.0, None), 0.0)
    return out0, src0, length, float(output_seconds)


def _source_overlaps(src0: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every pair ``i < j`` (output order) of segments whose source spans overlap.

    Returns ``(i, j, lo, hi)``: the pair and the shared source span ``[lo, hi)`` in
    seconds. Candidates for ``j`` are the segments whose source start lies in
    ``(source start of j - longest segment, source end of j)``, found by binary search
    in the segments sorted by source start: the work is linear in those candidates.
    """
    empty = np.zeros(0, dtype=np.int64)
    real = np.flatnonzero(length > 0)
    if real.size < 2:
        return empty, empty, np.zeros(0), np.zeros(0)
    order = real[np.argsort(src0[real], kind="stable")]
    starts = src0[order]
    src1 = src0 + length
    reach = float(length.max())
    begin = np.searchsorted(starts, src0[real] - reach, side="right")
    stop = np.searchsorted(starts, src1[real], side="left")
    counts = np.maximum(stop - begin, 0)
    j = np.repeat(real, counts)
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    i = order[np.repeat(begin, counts) + within]
    lo = np.maximum(src0[i], src0[j])
    hi = np.minimum(src1[i], src1[j])
    keep = (i < j) & (hi > lo)
    return i[keep], j[keep], lo[keep], hi[keep]


def _frame_index(seconds: np.ndarray, frame_seconds: float, n_frames: int) -> np.ndarray:
    """Index of the first frame at or after ``seconds`` (frame ``t`` sits at ``t * frame_seconds``)."""
    return np.clip(np.ceil(seconds / frame_seconds - 1e-6), 0, n_frames).astype(np.int64)


def _covered(first: np.ndarray, last: np.ndarray, n_frames: int) -> np.ndarray:
    """Frames inside any of the frame intervals ``[first, last)``, each once: bool [shape=(n_frames,)]."""
    marks = np.bincount(first, minlength=n_frames + 1)[: n_frames + 1] - np.bincount(last, minlength=n_frames + 1)[
        : n_frames + 1]
    return np.cumsum(marks)[:n_frames] > 0


def _modal_lag(keys: np.ndarray, first: np.ndarray, last: np.ndarray, n_frames: int, *, from_frame: int,
               tolerance: int) -> tuple[int | None, int]:
    """The modal lag (in frames) of the frames from ``from_frame`` on, and how many frames repeat at it.

    Frames are summed per lag bin and over a ``+-tolerance`` window of bins to choose
    the lag (of equal windows, the one centred on the fullest bin, then the shortest
    lag); the frames at it are then counted exactly, each once.
    """
    first = np.maximum(first, from_frame)
    weights = np.maximum(last - first, 0)
    if not weights.any():
        return None, 0
    base = int(keys.min()) - tolerance
    hist = np.bincount(keys - base, weights=weights, minlength=int(keys.max()) - base + tolerance + 1)
    windowed = np.convolve(hist, np.ones(2 * tolerance + 1), mode="same")
    tied = np.flatnonzero(windowed == windowed.max())  # (sums of whole frames: exact)
    mode = int(tied[np.argmax(hist[tied])]) + base  # of equal windows, the one centred on the fullest bin
    near = (np.abs(keys - mode) <= tolerance) & (weights > 0)
    return mode, int(_covered(first[near], last[near], n_frames).sum())


def _longest_cycle(i: np.ndarray, j: np.ndarray, out0: np.ndarray, out1: np.ndarray,
                   output_seconds: float) -> tuple[float, float | None, int | None]:
    """The largest share of the output covered by a run of segments, each the same as the one
    ``p`` before, lasting at least ``p`` segments; the period in seconds and in segments.

    ``(i, j)`` are the pairs of segments that are the same; ``out0``/``out1`` where each
    segment starts and ends in the output.
    """
    if i.size == 0 or output_seconds <= 0:
        return 0.0, None, None
    period = j - i
    order = np.lexsort((j, period))
    period, j = period[order], j[order]
    opens = np.ones(j.size, dtype=bool)
    opens[1:] = (np.diff(period) != 0) | (np.diff(j) != 1)
    closes = np.append(opens[1:], True)
    run_first, run_last, run_period = j[opens], j[closes], period[opens]
    whole = run_last - run_first + 1 >= run_period  # at least two passes of the period
    if not whole.any():
        return 0.0, None, None
    run_first, run_last, run_period = run_first[whole], run_last[whole], run_period[whole]
    spans = out1[run_last] - out0[run_first - run_period]
    best = int(np.argmax(spans))
    first, p = int(run_first[best]), int(run_period[best])
    return (float(min(spans[best] / output_seconds, 1.0)), round(float(out0[first] - out0[first - p]), 4), p)


def _loop_share(source_seconds: float, output_seconds: float, *, frame_seconds: float, min_lag_seconds: float,
                n_frames: int) -> float:
    """``share`` of the plain loop (the song tiled to ``output_seconds``).

    Every frame from ``m * source_seconds`` on repeats at lag ``m * source_seconds``,
    the smallest multiple of the song's length that is at least ``min_lag_seconds``.
    """
    if n_frames == 0 or source_seconds <= 0:
        return 0.0
    lag = source_seconds * max(1, int(np.ceil(min_lag_seconds / source_seconds - 1e-9)))
    start = int(np.ceil(lag / frame_seconds - 1e-6))
    return max(0, n_frames - start) / n_frames
