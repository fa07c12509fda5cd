"""Jump candidates: which beats the output may jump between, and what each jump costs.

Leaving the source at the start of beat ``a`` and continuing at beat ``b`` is allowed
when the beats around ``a`` sound like the beats around ``b`` (context cost over one
bar on both sides: chroma, timbre, loudness), the spectra either side of the best
cut point near the beat match (local cost), the position in the bar is the same
(half-bar and beat shifts penalised), and ``|b - a|`` is at least ``min_lag_beats``.
Of the best, those whose seam would make a new level dip are ranked down.

Every jump is also verified rhythmically, beyond the beat tracker: where the onsets
around ``a`` and around ``b`` both have a clear pulse, the place in the beat where
they fall must agree (``rhythm_lags``); the landing is moved by the difference when it
is small (at most ``MAX_RHYTHM_SHIFT`` of a beat), and the jump dropped when it is
larger (a seam there would make the groove stumble).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace

import numpy as np

from harmonizer_cli.core.extend.analysis import FrameLevels, SongAnalysis
from harmonizer_cli.core.extend.levels import dip_frames, level_and_running_median

__all__ = ["JumpCandidates", "JumpCosts", "jump_candidates", "rhythm_lags", "unit_beats", "subdivided_beat", "seam_dip",
           "DENSE_MAX_BEATS"]

#: A planning bar is at least this long (the meter, doubled).
PLANNING_BAR_SECONDS = 1.5
#: Weight of the local spectral jump at a cut (beside the bar-context cost).
LOCAL_WEIGHT = 3.0
#: Weight (per dB) of a level dip near a seam deeper than any in the song.
DIP_SEAM_WEIGHT = 0.5
#: Position in the bar: a jump by a whole number of planning bars is free; by half a
#: bar costs this, by any other number of beats the second (a shifted downbeat).
HALF_BAR_PENALTY = 0.6
OFF_BAR_PENALTY = 1.5
#: The same without a pulse (a fixed grid: only a soft preference for whole bars).
NO_PULSE_OFF_BAR_PENALTY = 0.3
#: Beats shorter than this (above 150 BPM) are likely a subdivision of the felt beat
#: (a 2:1 ambiguity): only jumps by an even number of them keep the felt beat's phase
#: under both readings, so odd ones cost this much more (beside ``OFF_BAR_PENALTY``).
SUBDIVISION_BEAT_SECONDS = 0.4
ODD_SUBDIVISION_PENALTY = 1.5
#: Landing on a beat that does not start a bar.
OFF_DOWNBEAT_PENALTY = 0.15
#: Rhythmic verification: a landing is moved by the rhythm lag up to this share of a
#: beat, and the jump dropped beyond it, where both sides fold at least this clearly.
MAX_RHYTHM_SHIFT = 0.25
MIN_RHYTHM_CLARITY = 0.15
#: Songs of more beats than this (10 minutes at 200 bpm; an hour has 7000-11000) never get
#: n x n matrices (11000 beats: 1 GB each): their jump costs are computed for 64 source
#: beats at a time, the medians that scale them taken over an even grid of at most
#: 1024 x 1024 pairs (``JumpCosts``), and any jump's cost is computed when asked.
DENSE_MAX_BEATS = 2048
_BLOCK_ROWS = 64
_SCALE_GRID = 1024
_PAIR_CHUNK = 8192


@dataclass
class JumpCandidates:
    """The best jumps from each beat, and the cost of every allowed jump.

    Attributes
    ----------
    a, b : np.ndarray [shape=(n_candidates,), dtype=int]
        Leave the source at the start of beat ``a``, continue at the start of beat ``b``.
    cost : np.ndarray [shape=(n_candidates,)]
        Seam (context + local) cost.
    back_seconds : np.ndarray [shape=(n_candidates,)]
        ``t[a] - (t[b] + shift)``: > 0 replays material, < 0 skips.
    full : np.ndarray [shape=(n_beats, n_beats)]
        Cost of every allowed jump (inf where not allowed).
    full_shift : np.ndarray [shape=(n_beats, n_beats)]
        Seconds the landing of each jump is moved from beat ``b`` to keep the rhythm.
    """

    a: np.ndarray
    b: np.ndarray
    cost: np.ndarray
    back_seconds: np.ndarray
    full: np.ndarray
    full_shift: np.ndarray

    @property
    def blocked(self) -> bool:
        """Whether ``full`` and ``full_shift`` are a long song's ``JumpCosts`` (no matrices)."""
        return isinstance(self.full, JumpCosts)

    def without(self, banned: frozenset) -> "JumpCandidates":
        """These candidates without the jumps ``(a, b)`` in ``banned`` (also in ``full``)."""
        n = self.full.shape[0]
        pairs = np.array([(a, b) for a, b in banned if 0 <= a < n and 0 <= b < n], dtype=np.int64).reshape(-1, 2)
        if self.blocked:
            full = self.full.without(pairs)
            keep = ~np.isin(self.a * n + self.b, pairs[:, 0] * n + pairs[:, 1])
            return JumpCandidates(self.a[keep], self.b[keep], self.cost[keep], self.back_seconds[keep], full,
                                  full.shifts)
        self.full[pairs[:, 0], pairs[:, 1]] = np.inf
        keep = np.isfinite(self.full[self.a, self.b])
        return JumpCandidates(self.a[keep], self.b[keep], self.cost[keep], self.back_seconds[keep], self.full,
                              self.full_shift)

    def with_target(self, target_cost, times: np.ndarray) -> "JumpCandidates":
        """The model's target cost (``guidance.TargetCost``, times ``TARGET_WEIGHT``) added to every jump."""
        from harmonizer_cli.core.extend.guidance import TARGET_WEIGHT

        self.cost = self.cost + TARGET_WEIGHT * target_cost.for_jumps(times[self.a], times[self.b])
        if self.blocked:
            self.full = self.full.with_target(target_cost)
            self.full_shift = self.full.shifts
            return self
        rows, cols = np.nonzero(np.isfinite(self.full))
        self.full[rows, cols] += TARGET_WEIGHT * target_cost.for_jumps(times[rows], times[cols])
        return self

    def landing(self, times: np.ndarray, a, b):
        """Source time (s) where the output continues after the jump ``a -> b``."""
        return times[b] + self.full_shift[a, b]


def _beat_distance(analysis: SongAnalysis) -> np.ndarray:
    """Pairwise dissimilarity of beats, each component scaled to median 1 [shape=(n, n)]."""
    chroma = analysis.chroma.astype(np.float64)
    d_chroma = np.clip(1.0 - chroma @ chroma.T, 0.0, 2.0)
    timbre = analysis.timbre.astype(np.float64)
    timbre = (timbre - timbre.mean(axis=0)) / (timbre.std(axis=0) + 1e-6)
    sq = np.sum(timbre ** 2, axis=1)
    d_timbre = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * timbre @ timbre.T, 0.0))
    loud = analysis.loudness_db.astype(np.float64)
    d_loud = np.abs(loud[:, None] - loud[None, :]) / 6.0
    off = ~np.eye(chroma.shape[0], dtype=bool)
    total = np.zeros_like(d_chroma)
    for matrix, weight in ((d_chroma, 1.0), (d_timbre, 1.0), (d_loud, 0.5)):
        scale = np.median(matrix[off])
        total += weight * matrix / (scale if scale > 1e-9 else 1.0)
    return total


def _local_seam_cost(analysis: SongAnalysis) -> np.ndarray:
    """How audible a cut from beat ``a`` to beat ``b`` is at its best point near the beat [n, n].

    For each candidate cut point near the beat (the same offset in ``a`` and ``b``),
    the RMS difference (dB) between the spectrum just before it in ``a`` and just
    after it in ``b``; the smallest over the offsets, scaled by its median over all
    pairs. The render picks the exact point the same way at the original rate.
    """
    before = analysis.mel_before_db.astype(np.float64)   # (n, k, bands)
    after = analysis.mel_after_db.astype(np.float64)
    n, k, bands = before.shape
    best = np.full((n, n), np.inf)
    for offset in range(k):
        x, y = before[:, offset], after[:, offset]
        sq = np.sum(x * x, axis=1)[:, None] + np.sum(y * y, axis=1)[None, :] - 2.0 * x @ y.T
        np.minimum(best, np.sqrt(np.maximum(sq, 0.0) / bands), out=best)
    scale = float(np.median(best))
    return best / (scale if scale > 1e-9 else 1.0)


def unit_beats(analysis: SongAnalysis) -> int:
    """Beats per planning bar: the meter, doubled while a bar is shorter than 1.5 s (a
    third of the song in a short clip, so that it still holds a few bars)."""
    unit = analysis.beats_per_bar
    shortest = min(PLANNING_BAR_SECONDS, analysis.duration_seconds / 3.0)
    while unit * analysis.beat_period_seconds < shortest and 2 * unit <= max(2, analysis.n_beats // 3):
        unit *= 2
    return unit


def seam_dip(levels: FrameLevels, leave_seconds: np.ndarray, continue_seconds: np.ndarray) -> np.ndarray:
    """How much deeper than any in the song a level dip near each seam would be (dB, >= 0).

    The benchmark's dip: the 1 s level (0.25 s hop) below its running median over
    +-10 s. Around a seam the output is the 10 s before the cut followed by the 10 s
    after the landing; a quiet moment on either side is measured against the median
    of that new neighbourhood, and charged for what it exceeds the deepest dip of
    the song itself and of its own place in the song (a quiet intro or outro played
    among louder music sounds like the song restarting).
    """
    rate = float(levels.frame_rate)
    window, hop, half = dip_frames(rate)
    level, running = level_and_running_median(levels.power, window=window, hop=hop, half=half)
    if level.size == 0:
        return np.zeros(np.asarray(leave_seconds).shape)
    drop = running - level
    song_dip = float(np.max(drop)) if drop.size else 0.0
    m = level.size
    cut = np.clip(np.round((np.asarray(leave_seconds) * rate - window) / hop).astype(np.int64), 0, m)  # last window before
    land = np.clip(np.round(np.asarray(continue_seconds) * rate / hop).astype(np.int64), 0, m)
    offsets = np.arange(half)
    excess = np.empty(cut.shape)
    # (a long song's candidates are hundreds of thousands of jumps: their windows a chunk at a time)
    for start in range(0, cut.size, _PAIR_CHUNK):
        pre = np.clip(cut.reshape(-1)[start:start + _PAIR_CHUNK, None] - half + offsets, 0, m - 1)
        post = np.clip(land.reshape(-1)[start:start + _PAIR_CHUNK, None] + offsets, 0, m - 1)
        reference = np.median(np.concatenate([level[pre], level[post]], axis=1), axis=1)
        deepest_pre = reference - level[pre].min(axis=1)
        deepest_post = reference - level[post].min(axis=1)
        own_pre = drop[pre].max(axis=1)
        own_post = drop[post].max(axis=1)
        excess.reshape(-1)[start:start + _PAIR_CHUNK] = np.maximum(deepest_pre - np.maximum(own_pre, song_dip),
                                                                   deepest_post - np.maximum(own_post, song_dip))
    return np.maximum(excess, 0.0)


def rhythm_lags(analysis: SongAnalysis) -> tuple[np.ndarray, np.ndarray]:
    """Where beat ``b``'s onsets fall in the beat minus where beat ``a``'s do, for all pairs.

    Returns the lags (seconds, within half a beat either way) [shape=(n, n)], and
    whether both beats have a clear enough pulse around them to tell [shape=(n, n)].
    Without rhythm features (the no-pulse grid) every lag is 0 and none can tell.
    """
    n = analysis.n_beats
    if analysis.rhythm is None:
        return np.zeros((n, n)), np.zeros((n, n), dtype=bool)
    z = analysis.rhythm.astype(np.complex128)
    cross = np.conj(z) @ z.T  # [a, b]: sum over bands of z_b conj(z_a)
    lags = -np.angle(cross) / (2.0 * np.pi) * analysis.beat_period_seconds
    clear = analysis.rhythm_clarity >= MIN_RHYTHM_CLARITY
    return lags, clear[:, None] & clear[None, :]


def _context_cost(analysis: SongAnalysis) -> np.ndarray:
    """Beat distance averaged over the bar around both sides of each jump [n, n].

    Near the song's edges only the beats that exist count (at least a third of the
    context's weight: a clip must be able to loop from its last beats back to its very
    first); NaN where less is there.
    """
    n = analysis.n_beats
    distance = _beat_distance(analysis)
    context = max(2, min(unit_beats(analysis), 4))
    offsets = np.arange(-context, context)
    weights = np.where((offsets >= -2) & (offsets <= 1), 1.0, 0.5)
    padded = np.full((n + 2 * context, n + 2 * context), np.nan)
    padded[context:context + n, context:context + n] = distance
    cost = np.zeros((n, n))
    present = np.zeros((n, n))
    for offset, weight in zip(offsets, weights):
        values = padded[context + offset:context + offset + n, context + offset:context + offset + n]
        finite = np.isfinite(values)
        cost += np.where(finite, weight * values, 0.0)
        present += weight * finite
    return np.where(present >= weights.sum() / 3.0, cost / np.maximum(present, 1e-12), np.nan)


def subdivided_beat(analysis: SongAnalysis) -> bool:
    """Whether the beats are likely a subdivision of the felt beat (``SUBDIVISION_BEAT_SECONDS``)."""
    return not analysis.fallback and analysis.beat_period_seconds < SUBDIVISION_BEAT_SECONDS


def _with_position_cost(cost: np.ndarray, lag: np.ndarray, landing_downbeat: np.ndarray, *, bar: int,
                        fallback: bool, odd_costs_more: bool) -> np.ndarray:
    """``cost`` plus the jump's musical position: an odd jump over a subdivided beat, the place
    in the planning bar (the same is free, half a bar costs, other beats more; only a soft
    preference on the no-pulse grid) and a landing off the downbeat."""
    if odd_costs_more:
        cost = cost + np.where(lag % 2 == 0, 0.0, ODD_SUBDIVISION_PENALTY)
    if fallback:
        phase_penalty = np.where(lag % bar == 0, 0.0, NO_PULSE_OFF_BAR_PENALTY)
    else:
        phase_penalty = np.where(lag % bar == 0, 0.0,
                                 np.where(lag % max(1, bar // 2) == 0, HALF_BAR_PENALTY, OFF_BAR_PENALTY))
    return cost + phase_penalty + np.where(landing_downbeat, 0.0, OFF_DOWNBEAT_PENALTY)


def jump_candidates(analysis: SongAnalysis, *, min_lag_beats: int, per_source: int = 12) -> JumpCandidates:
    """The ``per_source`` best jumps from each beat, and the cost of every allowed jump.

    Songs of more than ``DENSE_MAX_BEATS`` beats get the same costs computed in blocks
    of source beats (``JumpCosts``; the scales from a grid of pairs), and ``full`` is
    then a ``JumpCosts``: any jump's cost when asked, no matrix.

    Parameters
    ----------
    analysis : SongAnalysis
    min_lag_beats : int
        Shortest allowed jump, in beats (either way).
    per_source : int
        Candidates kept per source beat.

    Returns
    -------
    JumpCandidates
    """
    n = analysis.n_beats
    if n > DENSE_MAX_BEATS:
        return _blocked_candidates(analysis, min_lag_beats=min_lag_beats, per_source=per_source)
    bar = unit_beats(analysis)
    cost = _context_cost(analysis)
    a_idx, b_idx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    lag = b_idx - a_idx
    valid = np.isfinite(cost) & (np.abs(lag) >= min_lag_beats) & (a_idx >= 1)
    downbeat = (np.arange(n) - analysis.downbeat_phase) % analysis.beats_per_bar == 0
    cost = _with_position_cost(cost, lag, downbeat[None, :], bar=bar, fallback=bool(analysis.fallback),
                               odd_costs_more=subdivided_beat(analysis))
    if analysis.mel_before_db is not None:
        cost = cost + LOCAL_WEIGHT * _local_seam_cost(analysis)
    # rhythmic verification: small lags move the landing, large ones drop the jump
    lags, told = rhythm_lags(analysis)
    shift = np.where(told, lags, 0.0)
    valid &= ~(told & (np.abs(lags) > MAX_RHYTHM_SHIFT * analysis.beat_period_seconds))
    cost = np.where(valid, cost, np.inf)
    keep = min(2 * per_source, n)
    order = np.argsort(cost, axis=1)[:, :keep]
    rows = np.repeat(np.arange(n), keep)
    cols = order.reshape(-1)
    values = cost[rows, cols]
    finite = np.isfinite(values)
    rows, cols, values = rows[finite], cols[finite], values[finite]
    return _best_kept(analysis, rows, cols, values, shift[rows, cols], per_source=per_source, full=cost,
                      full_shift=shift)


def _best_kept(analysis: SongAnalysis, rows, cols, values, shifts, *, per_source: int, full,
               full_shift) -> JumpCandidates:
    """Of each source's best jumps (``rows`` in order), those that make no new level dip."""
    times = analysis.beat_seconds
    if analysis.levels is not None:  # of the best, keep those that make no new level dip
        values = values + DIP_SEAM_WEIGHT * seam_dip(analysis.levels, times[rows], times[cols] + shifts)
        order = np.lexsort((values, rows))
        rows, cols, values, shifts = rows[order], cols[order], values[order], shifts[order]
        rank = np.arange(rows.size) - np.searchsorted(rows, rows)  # place within its source's list
        best = rank < per_source
        rows, cols, values, shifts = rows[best], cols[best], values[best], shifts[best]
    return JumpCandidates(rows, cols, values, times[rows] - times[cols] - shifts, full, full_shift)


# ----------------------------------------------------------------------------- long songs, in blocks

#: The blocked candidates of the last long songs, by analysis (the seam audit re-plans
#: the same song up to four times with the same candidates, less the banned jumps).
_BLOCKED_CACHE: dict = {}


def _blocked_candidates(analysis: SongAnalysis, *, min_lag_beats: int, per_source: int) -> JumpCandidates:
    """``jump_candidates`` of a long song: each source's best jumps from blocks of its costs."""
    key = (id(analysis), int(min_lag_beats), int(per_source))
    cached = _BLOCKED_CACHE.get(key)
    if cached is not None and cached[0]() is analysis:
        return replace(cached[1])
    costs = JumpCosts(analysis, min_lag_beats=min_lag_beats)
    n = costs.n
    keep = min(2 * per_source, n)
    parts = []
    for r0, r1, cost, shift in costs.blocks():
        if keep < n:
            order = np.argpartition(cost, keep - 1, axis=1)[:, :keep]
            order = np.take_along_axis(order, np.argsort(np.take_along_axis(cost, order, axis=1), axis=1,
                                                         kind="stable"), axis=1)
        else:
            order = np.argsort(cost, axis=1, kind="stable")
        local = np.repeat(np.arange(r1 - r0), order.shape[1])
        cols = order.reshape(-1)
        values = cost[local, cols]
        finite = np.isfinite(values)
        parts.append((local[finite] + r0, cols[finite], values[finite], shift[local, cols][finite]))
    rows, cols, values, shifts = (np.concatenate([part[k] for part in parts]) for k in range(4))
    result = _best_kept(analysis, rows, cols, values, shifts, per_source=per_source, full=costs,
                        full_shift=costs.shifts)
    _BLOCKED_CACHE[key] = (weakref.ref(analysis), result)
    weakref.finalize(analysis, _BLOCKED_CACHE.pop, key, None)
    return replace(result)


class _Shifts:
    """``JumpCandidates.full_shift`` of a long song: ``shifts[a, b]`` computed when asked."""

    def __init__(self, costs: "JumpCosts") -> None:
        self.costs = costs
        self.shape = costs.shape

    def __getitem__(self, key):
        a, b = np.broadcast_arrays(*(np.asarray(index, dtype=np.int64) for index in key))
        return self.costs.shift_pairs(a.reshape(-1), b.reshape(-1)).reshape(a.shape)


class JumpCosts:
    """The cost of every jump of a long song, computed when asked, never as an n x n matrix.

    The same cost as ``jump_candidates``' ``full`` matrix (the bar context, the local
    spectral cost, the bar-position and downbeat terms, the rhythmic verification, inf
    where a jump is not allowed), with the medians that scale the beat distances and
    the local cost taken over an even grid of at most ``_SCALE_GRID`` x ``_SCALE_GRID``
    pairs. ``costs[a, b]`` (index arrays) gives the costs of those jumps; ``blocks``
    every source's costs, ``_BLOCK_ROWS`` sources at a time; ``shifts[a, b]`` the
    landing shifts (``full_shift``). ``without`` and ``with_target`` give the same costs
    with jumps banned, or with the model's target cost added.
    """

    def __init__(self, analysis: SongAnalysis, *, min_lag_beats: int) -> None:
        n = analysis.n_beats
        self.n = n
        self.shape = (n, n)
        self.min_lag = int(min_lag_beats)
        self.odd_costs_more = subdivided_beat(analysis)
        self.bar = unit_beats(analysis)
        self.fallback = analysis.fallback
        self.times = analysis.beat_seconds
        self.period = analysis.beat_period_seconds
        self.downbeat = (np.arange(n) - analysis.downbeat_phase) % analysis.beats_per_bar == 0
        self.chroma = analysis.chroma.astype(np.float64)
        timbre = analysis.timbre.astype(np.float64)
        self.timbre = (timbre - timbre.mean(axis=0)) / (timbre.std(axis=0) + 1e-6)
        self.timbre_sq = np.sum(self.timbre ** 2, axis=1)
        self.loud = analysis.loudness_db.astype(np.float64)
        self.context = max(2, min(self.bar, 4))
        self.offsets = np.arange(-self.context, self.context)
        self.weights = np.where((self.offsets >= -2) & (self.offsets <= 1), 1.0, 0.5)
        self.local = analysis.mel_before_db is not None
        if self.local:
            # (distances do not change when both sides move by the same spectrum: centred,
            # float32 products are exact enough)
            before, after = analysis.mel_before_db, analysis.mel_after_db
            centre = 0.5 * (before.mean(axis=0) + after.mean(axis=0))
            self.before = (before - centre).astype(np.float32)
            self.after = (after - centre).astype(np.float32)
            self.before_sq = np.sum(self.before.astype(np.float64) ** 2, axis=2)
            self.after_sq = np.sum(self.after.astype(np.float64) ** 2, axis=2)
        self.rhythm = None if analysis.rhythm is None else analysis.rhythm.astype(np.complex128)
        self.clear = None if analysis.rhythm is None else analysis.rhythm_clarity >= MIN_RHYTHM_CLARITY
        self.banned = np.zeros(0, dtype=np.int64)  # a * n + b
        self.target = None
        self._scales()
        self.shifts = _Shifts(self)

    # -- scales (the dense path's medians, over a grid of pairs)
    def _scales(self) -> None:
        grid = np.unique(np.linspace(0, self.n - 1, min(self.n, _SCALE_GRID)).round().astype(np.int64))
        a, b = grid[:, None], grid[None, :]
        parts = self._components(grid, grid, grid=True)
        off = a != b
        self.distance_scales = []
        for matrix in parts:
            scale = float(np.median(matrix[off]))
            self.distance_scales.append(scale if scale > 1e-9 else 1.0)
        if self.local:
            self.local_scale = 1.0
            scale = float(np.median(self._local(grid, grid, grid=True)))
            self.local_scale = scale if scale > 1e-9 else 1.0

    # -- the parts of a jump's cost, for a grid (i x j) or for pairs (i[k], j[k])
    def _components(self, i: np.ndarray, j: np.ndarray, *, grid: bool):
        """Chroma, timbre and loudness distances of beats ``i`` and ``j`` (unscaled)."""
        if grid:
            dot_c = self.chroma[i] @ self.chroma[j].T
            dot_t = self.timbre[i] @ self.timbre[j].T
            sq_i, sq_j = self.timbre_sq[i][:, None], self.timbre_sq[j][None, :]
            loud_i, loud_j = self.loud[i][:, None], self.loud[j][None, :]
        else:
            dot_c = np.einsum("kd,kd->k", self.chroma[i], self.chroma[j])
            dot_t = np.einsum("kd,kd->k", self.timbre[i], self.timbre[j])
            sq_i, sq_j, loud_i, loud_j = self.timbre_sq[i], self.timbre_sq[j], self.loud[i], self.loud[j]
        return (np.clip(1.0 - dot_c, 0.0, 2.0), np.sqrt(np.maximum(sq_i + sq_j - 2.0 * dot_t, 0.0)),
                np.abs(loud_i - loud_j) / 6.0)

    def _distance(self, i: np.ndarray, j: np.ndarray, *, grid: bool) -> np.ndarray:
        total = 0.0
        for matrix, weight, scale in zip(self._components(i, j, grid=grid), (1.0, 1.0, 0.5), self.distance_scales):
            total = total + weight * matrix / scale
        return total

    def _context_grid(self, r0: int, r1: int) -> np.ndarray:
        """``_context_cost`` of sources ``r0 .. r1 - 1`` to every beat [shape=(r1 - r0, n)]."""
        n, c, r = self.n, self.context, r1 - r0
        ext = np.arange(max(0, r0 - c), min(n, r1 + c))
        padded = np.full((r + 2 * c, n + 2 * c), np.nan)
        padded[ext - (r0 - c), c:c + n] = self._distance(ext, np.arange(n), grid=True)
        cost = np.zeros((r, n))
        present = np.zeros((r, n))
        for offset, weight in zip(self.offsets, self.weights):
            values = padded[c + offset:c + offset + r, c + offset:c + offset + n]
            finite = np.isfinite(values)
            cost += np.where(finite, weight * values, 0.0)
            present += weight * finite
        return np.where(present >= self.weights.sum() / 3.0, cost / np.maximum(present, 1e-12), np.nan)

    def _context_pairs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        n = self.n
        cost = np.zeros(a.size)
        present = np.zeros(a.size)
        for offset, weight in zip(self.offsets, self.weights):
            i, j = a + offset, b + offset
            inside = (i >= 0) & (i < n) & (j >= 0) & (j < n)
            values = np.full(a.size, np.nan)
            values[inside] = self._distance(i[inside], j[inside], grid=False)
            finite = np.isfinite(values)
            cost += np.where(finite, weight * values, 0.0)
            present += weight * finite
        return np.where(present >= self.weights.sum() / 3.0, cost / np.maximum(present, 1e-12), np.nan)

    def _local(self, i: np.ndarray, j: np.ndarray, *, grid: bool) -> np.ndarray:
        """``_local_seam_cost`` of leaving at beats ``i`` and landing on beats ``j``."""
        bands = self.before.shape[2]
        best = None
        for offset in range(self.before.shape[1]):
            x, y = self.before[i, offset], self.after[j, offset]
            if grid:
                sq = (self.before_sq[i, offset][:, None] + self.after_sq[j, offset][None, :]
                      - 2.0 * (x @ y.T).astype(np.float64))
            else:
                sq = (self.before_sq[i, offset] + self.after_sq[j, offset]
                      - 2.0 * np.einsum("kd,kd->k", x, y).astype(np.float64))
            value = np.sqrt(np.maximum(sq, 0.0) / bands)
            best = value if best is None else np.minimum(best, value)
        return best / self.local_scale

    def _rhythm(self, i: np.ndarray, j: np.ndarray, *, grid: bool):
        """``rhythm_lags`` of these jumps: the lags (s) and whether both sides can tell."""
        if self.rhythm is None:
            shape = (i.size, j.size) if grid else i.shape
            return np.zeros(shape), np.zeros(shape, dtype=bool)
        if grid:
            cross = np.conj(self.rhythm[i]) @ self.rhythm[j].T
            told = self.clear[i][:, None] & self.clear[j][None, :]
        else:
            cross = np.einsum("kd,kd->k", np.conj(self.rhythm[i]), self.rhythm[j])
            told = self.clear[i] & self.clear[j]
        return -np.angle(cross) / (2.0 * np.pi) * self.period, told

    def _assemble(self, a, b, context, local, lags, told):
        """The jump cost from its parts, inf where not allowed, and the landing shift
        (``jump_candidates``' terms, in its order)."""
        lag = b - a
        valid = np.isfinite(context) & (np.abs(lag) >= self.min_lag) & (a >= 1)
        cost = _with_position_cost(context, lag, self.downbeat[b], bar=self.bar, fallback=bool(self.fallback),
                                   odd_costs_more=self.odd_costs_more)
        if local is not None:
            cost = cost + LOCAL_WEIGHT * local
        shift = np.where(told, lags, 0.0)
        valid &= ~(told & (np.abs(lags) > MAX_RHYTHM_SHIFT * self.period))
        return np.where(valid, cost, np.inf), shift

    def _finish(self, a, b, cost: np.ndarray, *, grid: bool) -> np.ndarray:
        """Banned jumps made inf, the target cost added (where allowed)."""
        if self.banned.size:
            cost[np.isin(a * self.n + b, self.banned)] = np.inf
        if self.target is not None:
            from harmonizer_cli.core.extend.guidance import TARGET_WEIGHT

            finite = np.isfinite(cost)
            if grid:
                cost = cost + np.where(finite, TARGET_WEIGHT * self.target.grid(self.times[a[:, 0]],
                                                                               self.times[b[0]]), 0.0)
            elif finite.any():
                cost[finite] += TARGET_WEIGHT * self.target.for_jumps(self.times[a[finite]], self.times[b[finite]])
        return cost

    # -- what the planner asks for
    def block(self, r0: int, r1: int, *, n_cols: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Costs and landing shifts of sources ``r0 .. r1 - 1`` to beats ``0 .. n_cols - 1``."""
        n_cols = self.n if n_cols is None else n_cols
        rows, cols = np.arange(r0, r1), np.arange(n_cols)
        context = self._context_grid(r0, r1)[:, :n_cols]
        local = self._local(rows, cols, grid=True) if self.local else None
        lags, told = self._rhythm(rows, cols, grid=True)
        a, b = rows[:, None], cols[None, :]
        cost, shift = self._assemble(a, b, context, local, lags, told)
        return self._finish(a, b, cost, grid=True), shift

    def blocks(self, first: int = 0, *, n_cols: int | None = None):
        """``(r0, r1, costs, shifts)`` of every source from ``first`` on, ``_BLOCK_ROWS`` at a time."""
        for r0 in range(first, self.n, _BLOCK_ROWS):
            r1 = min(self.n, r0 + _BLOCK_ROWS)
            yield (r0, r1) + self.block(r0, r1, n_cols=n_cols)

    def pairs(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Costs and landing shifts of the jumps ``a[k] -> b[k]`` (1-D index arrays)."""
        a, b = np.asarray(a, dtype=np.int64).reshape(-1), np.asarray(b, dtype=np.int64).reshape(-1)
        cost, shift = np.empty(a.size), np.empty(a.size)
        for start in range(0, a.size, _PAIR_CHUNK):
            aa, bb = a[start:start + _PAIR_CHUNK], b[start:start + _PAIR_CHUNK]
            local = self._local(aa, bb, grid=False) if self.local else None
            lags, told = self._rhythm(aa, bb, grid=False)
            part, shift[start:start + _PAIR_CHUNK] = self._assemble(aa, bb, self._context_pairs(aa, bb), local,
                                                                    lags, told)
            cost[start:start + _PAIR_CHUNK] = self._finish(aa, bb, part, grid=False)
        return cost, shift

    def shift_pairs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Landing shifts (s) of the jumps ``a[k] -> b[k]``."""
        lags, told = self._rhythm(a, b, grid=False)
        return np.where(told, lags, 0.0)

    def __getitem__(self, key) -> np.ndarray:
        a, b = np.broadcast_arrays(*(np.asarray(index, dtype=np.int64) for index in key))
        return self.pairs(a.reshape(-1), b.reshape(-1))[0].reshape(a.shape)

    def without(self, pairs: np.ndarray) -> "JumpCosts":
        """The same costs with the jumps ``pairs`` [shape=(k, 2)] not allowed (a new object)."""
        other = self._copy()
        other.banned = np.union1d(self.banned, pairs[:, 0] * self.n + pairs[:, 1]).astype(np.int64)
        return other

    def with_target(self, target_cost) -> "JumpCosts":
        """The same costs plus ``TARGET_WEIGHT`` times the model's target cost (a new object)."""
        other = self._copy()
        other.target = target_cost
        return other

    def _copy(self) -> "JumpCosts":
        other = object.__new__(JumpCosts)
        other.__dict__.update(self.__dict__)
        other.shifts = _Shifts(other)
        return other
