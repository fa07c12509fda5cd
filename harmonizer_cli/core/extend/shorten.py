"""Shortening: the one- or two-jump plans that cut a song down to the target length.

A song longer than the target keeps its real beginning and ending and leaves out one
or two passages between. Every one-jump plan (every allowed pair of beats) and every
pair of forward candidate jumps whose lengths add up to the cut is scored by its seam
costs and the length residual left for the absorbers. The best by that score, and as
many best by that score plus a rough mood cost of what is left
(``PathLevels.rough_drifts``: the seams that cost least often all cut out the same passage),
are then charged for the mood of what is left, measured from the song's frames
(``levels.PathLevels``): cutting out a song's loud middle, say, leaves its quiet
intro and ending, 2.5 LU quieter. The mood may not buy a seam much worse than the
best seam on offer (``SEAM_SLACK``): where a song cannot keep its mood at the
length asked for (a 2-minute piece cut to 45 s), the seam comes first.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from harmonizer_cli.core.extend.analysis import SongAnalysis
from harmonizer_cli.core.extend.candidates import MAX_RHYTHM_SHIFT, JumpCandidates
from harmonizer_cli.core.extend.levels import PathLevels, mood_penalty

__all__ = ["plan_shortening"]

#: Options of each kind (one jump, two jumps) by score, and as many by score plus the
#: rough mood, whose mood is measured.
SHORTENING_MOOD_OPTIONS = 24
#: per beat period of residual
SHORT_RESIDUAL_WEIGHT = 4.0
#: the charge of a second seam
SECOND_SEAM_WEIGHT = 0.5
#: an option's worst seam may cost this much more than the best option's worst seam
#: (seam cost times the seam weight), whatever the mood it keeps
SEAM_SLACK = 10.0
#: two-jump plans scored at a time (memory)
PAIR_CHUNK = 1_000_000


def _smallest(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` smallest finite ``values`` (fewer where fewer are finite)."""
    finite = np.flatnonzero(np.isfinite(values))
    if finite.size > k:
        finite = finite[np.argpartition(values[finite], k)[:k]]
    return finite


class _Best:
    """The ``k`` best options by score, and the ``k`` best by score plus rough mood."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.kept: list = []  # (scores, totals, payload rows)

    def add(self, score: np.ndarray, total: Optional[np.ndarray], rows: np.ndarray) -> None:
        picks = _smallest(score, self.k)
        if total is not None:
            picks = np.union1d(picks, _smallest(total, self.k))
        self.kept.append((score[picks], None if total is None else total[picks], rows[picks]))

    def rows(self) -> np.ndarray:
        if not self.kept:
            return np.zeros((0, 0))
        score = np.concatenate([s for s, _, _ in self.kept])
        rows = np.concatenate([r for _, _, r in self.kept])
        picks = _smallest(score, self.k)
        if self.kept[0][1] is not None:
            picks = np.union1d(picks, _smallest(np.concatenate([t for _, t, _ in self.kept]), self.k))
        return rows[picks]


def _fit_tolerance(period: float) -> float:
    """The length residual (s) a shortening may leave for the seams and the stretch."""
    return 0.6 * period + 0.5


def _expand(lo: np.ndarray, counts: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ragged ranges as pairs: ``rows[k]`` repeated ``counts[k]`` times beside
    ``lo[k], lo[k] + 1, ...`` (1-D arrays)."""
    first = np.cumsum(counts) - counts
    within = np.arange(int(counts.sum())) - np.repeat(first, counts)
    return np.repeat(rows, counts), np.repeat(lo, counts) + within


def _pairs_adding_up(back1: np.ndarray, back2: np.ndarray, need: float, tolerance: float):
    """``(i, j)`` index chunks of the pairs whose lengths ``back1[i] + back2[j]`` are
    within ``tolerance`` of ``-need`` (widened a little; the caller checks exactly)."""
    order = np.argsort(back2, kind="stable")
    ordered = back2[order]
    lo = np.searchsorted(ordered, need - back1 - tolerance - 1e-6, side="left")
    hi = np.searchsorted(ordered, need - back1 + tolerance + 1e-6, side="right")
    counts = np.maximum(hi - lo, 0)
    ends = np.cumsum(counts)
    start = 0
    while start < back1.size:
        stop = int(np.searchsorted(ends, (ends[start - 1] if start else 0) + PAIR_CHUNK, side="right"))
        stop = max(stop, start + 1)
        rows, positions = _expand(lo[start:stop], counts[start:stop], np.arange(start, stop))
        if rows.size:
            yield rows, order[positions]
        start = stop


def _landing_band(times: np.ndarray, need: float, reach: float, *, seg_min: int, last_start: int):
    """Every forward jump ``(a, b)`` whose length is within ``reach`` of the cut ``-need``
    (1-D index arrays): the only one-jump cuts that can fit."""
    a = np.arange(seg_min, times.size)
    lo = np.searchsorted(times, times[a] - need - reach, side="left")
    hi = np.minimum(np.searchsorted(times, times[a] - need + reach, side="right"), last_start + 1)
    rows, cols = _expand(lo, np.maximum(hi - lo, 0), a)
    keep = cols > rows
    return rows[keep], cols[keep]


def _one_jump(cands: JumpCandidates, times: np.ndarray, need: float, *, seg_min: int, last_start: int,
              capacity, period: float, weights: tuple, rough, end: float) -> list:
    """The best one-jump options ``(score, jumps, residual, worst seam)``."""
    seam_weight, excess_weight = weights
    best = _Best(SHORTENING_MOOD_OPTIONS)
    tolerance = _fit_tolerance(period)
    if cands.blocked:  # a long song: the pairs whose length is about the cut, costed when asked
        a_idx, b_idx = _landing_band(times, need, tolerance + MAX_RHYTHM_SHIFT * period, seg_min=seg_min,
                                     last_start=last_start)
        cost, shift = cands.full.pairs(a_idx, b_idx)
        landing = times[b_idx] + shift
    else:
        a_idx, b_idx = np.nonzero(np.isfinite(cands.full))
        keep = (a_idx >= seg_min) & (b_idx <= last_start) & (b_idx > a_idx)
        a_idx, b_idx = a_idx[keep], b_idx[keep]
        cost, landing = cands.full[a_idx, b_idx], cands.landing(times, a_idx, b_idx)
    if a_idx.size:
        left = need - (times[a_idx] - landing)
        seam = seam_weight * cost
        score = (seam + SHORT_RESIDUAL_WEIGHT * np.abs(left) / period
                 + excess_weight * np.maximum(np.abs(left) - capacity(1, times[a_idx]), 0.0))
        total = None if rough is None else np.where(np.abs(left) <= tolerance,
                                                    score + rough((0.0, times[a_idx]), (landing, end)), np.inf)
        best.add(score, total, np.stack([a_idx, b_idx, left, score, seam], axis=1))
    return [(float(row[3]), [(int(row[0]), int(row[1]))], float(row[2]), float(row[4])) for row in best.rows()]


def _two_jumps(cands: JumpCandidates, times: np.ndarray, need: float, *, seg_min: int, last_start: int,
               capacity, period: float, weights: tuple, rough, end: float) -> list:
    """The best options of two forward candidate jumps ``(score, jumps, residual, worst seam)``."""
    seam_weight, excess_weight = weights
    forward = (cands.b > cands.a) & (cands.a >= seg_min)
    a1, b1, c1, back1 = cands.a[forward], cands.b[forward], cands.cost[forward], cands.back_seconds[forward]
    second = forward & (cands.b <= last_start)
    a2, b2, c2, back2 = cands.a[second], cands.b[second], cands.cost[second], cands.back_seconds[second]
    if not (a1.size and a2.size):
        return []
    tolerance = _fit_tolerance(period)
    best = _Best(SHORTENING_MOOD_OPTIONS)
    for i, j in _pairs_adding_up(back1, back2, need, tolerance):
        left = need - back1[i] - back2[j]
        valid = (a2[j] >= b1[i] + seg_min) & (np.abs(left) <= tolerance)
        i, j, left = i[valid], j[valid], left[valid]
        if not i.size:
            continue
        middle = times[a2[j]] - times[b1[i]]
        varied = np.where(middle >= 30.0, middle, middle + times[a1[i]])
        score = (seam_weight * (c1[i] + c2[j]) + SHORT_RESIDUAL_WEIGHT * np.abs(left) / period
                 + excess_weight * np.maximum(np.abs(left) - capacity(2, varied), 0.0) + SECOND_SEAM_WEIGHT)
        total = None if rough is None else score + rough((0.0, times[a1[i]]), (times[a1[i]] - back1[i], times[a2[j]]),
                                                          (times[a2[j]] - back2[j], end))
        best.add(score, total, np.stack([i, j, left, score, seam_weight * np.maximum(c1[i], c2[j])], axis=1))
    return [(float(row[3]), [(int(a1[int(row[0])]), int(b1[int(row[0])])), (int(a2[int(row[1])]), int(b2[int(row[1])]))],
             float(row[2]), float(row[4])) for row in best.rows()]


def plan_shortening(analysis: SongAnalysis, target_seconds: float, cands: JumpCandidates, *,
                    seg_min: int, last_start: int, capacity: Callable, seam_weight: float,
                    excess_weight: float) -> Optional[tuple]:
    """Best one- or two-jump shortening, by exhaustive search (None if none fits).

    Parameters
    ----------
    analysis : SongAnalysis
    target_seconds : float
        Shorter than the song.
    cands : JumpCandidates
    seg_min, last_start : int
        The shortest segment (beats) and the last beat a jump may land on.
    capacity : callable(n_seams, middle_seconds)
        Length (s) the seams and the local stretch can absorb.
    seam_weight, excess_weight : float
        The path search's weights of a seam's cost and of residual beyond ``capacity``.

    Returns
    -------
    (jumps, score, residual_seconds, landings) or None
    """
    times = analysis.beat_seconds
    period = analysis.beat_period_seconds
    need = target_seconds - analysis.duration_seconds
    rough = None
    if analysis.levels is not None:
        levels = PathLevels(analysis.levels)

        def rough(*spans):  # the mood of what is left (spans in seconds), roughly: many options at once
            return mood_penalty(*levels.rough_drifts(*spans), 0.0)

    common = dict(seg_min=seg_min, last_start=last_start, capacity=capacity, period=period,
                  weights=(seam_weight, excess_weight), rough=rough, end=analysis.duration_seconds)
    options = _one_jump(cands, times, need, **common) + _two_jumps(cands, times, need, **common)
    options = [option for option in options if np.isfinite(option[0]) and abs(option[2]) <= _fit_tolerance(period)]
    if not options:
        return None
    if analysis.levels is not None:  # what is cut out must not change the mood of what is left
        # (but the mood may not buy a seam much worse than the best seam on offer)
        limit = min(option[3] for option in options) + SEAM_SLACK
        options = [option for option in options if option[3] <= limit]

        def with_mood(option):
            score, jumps, residual, _ = option
            bounds = [0.0] + [x for a, b in jumps for x in (float(times[a]), float(cands.landing(times, a, b)))]
            spans = list(zip(bounds[::2], bounds[1::2] + [analysis.duration_seconds]))
            return score + float(mood_penalty(*levels.drift(spans))), jumps, residual, None

        options = [with_mood(option) for option in options]
    score, jumps, residual, _ = min(options, key=lambda option: option[0])
    return jumps, score, residual, [float(cands.landing(times, a, b)) for a, b in jumps]
