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

from dataclasses import dataclass

import numpy as np

from harmonizer_cli.core.extend.analysis import FrameLevels, SongAnalysis
from harmonizer_cli.core.extend.levels import dip_frames, level_and_running_median

__all__ = ["JumpCandidates", "jump_candidates", "rhythm_lags", "unit_beats", "seam_dip"]

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

    def without(self, banned: frozenset) -> "JumpCandidates":
        """These candidates without the jumps ``(a, b)`` in ``banned`` (also in ``full``)."""
        n = self.full.shape[0]
        pairs = np.array([(a, b) for a, b in banned if 0 <= a < n and 0 <= b < n], dtype=np.int64).reshape(-1, 2)
        self.full[pairs[:, 0], pairs[:, 1]] = np.inf
        keep = np.isfinite(self.full[self.a, self.b])
        return JumpCandidates(self.a[keep], self.b[keep], self.cost[keep], self.back_seconds[keep], self.full,
                              self.full_shift)

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
    pre = np.clip(cut[:, None] - half + offsets, 0, m - 1)
    post = np.clip(land[:, None] + offsets, 0, m - 1)
    around = np.concatenate([level[pre], level[post]], axis=1)
    reference = np.median(around, axis=1)
    deepest_pre = reference - level[pre].min(axis=1)
    deepest_post = reference - level[post].min(axis=1)
    own_pre = drop[pre].max(axis=1)
    own_post = drop[post].max(axis=1)
    excess = np.maximum(deepest_pre - np.maximum(own_pre, song_dip), deepest_post - np.maximum(own_post, song_dip))
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


def jump_candidates(analysis: SongAnalysis, *, min_lag_beats: int, per_source: int = 12) -> JumpCandidates:
    """The ``per_source`` best jumps from each beat, and the cost of every allowed jump.

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
    bar = unit_beats(analysis)
    cost = _context_cost(analysis)
    a_idx, b_idx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    lag = b_idx - a_idx
    valid = np.isfinite(cost) & (np.abs(lag) >= min_lag_beats) & (a_idx >= 1)
    if not analysis.fallback and analysis.beat_period_seconds < SUBDIVISION_BEAT_SECONDS:
        cost = cost + np.where(lag % 2 == 0, 0.0, ODD_SUBDIVISION_PENALTY)
    # musical position: same place in the bar is free, half-bar costs, other beats more
    phase_penalty = np.where(lag % bar == 0, 0.0,
                             np.where(lag % max(1, bar // 2) == 0, HALF_BAR_PENALTY, OFF_BAR_PENALTY))
    if analysis.fallback:
        phase_penalty = np.where(lag % bar == 0, 0.0, NO_PULSE_OFF_BAR_PENALTY)
    downbeat = (np.arange(n) - analysis.downbeat_phase) % analysis.beats_per_bar == 0
    cost = cost + phase_penalty + np.where(downbeat[None, :], 0.0, OFF_DOWNBEAT_PENALTY)
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
    times = analysis.beat_seconds
    if analysis.levels is not None:  # of the best, keep those that make no new level dip
        values = values + DIP_SEAM_WEIGHT * seam_dip(analysis.levels, times[rows], times[cols] + shift[rows, cols])
        order = np.lexsort((values, rows))
        rows, cols, values = rows[order], cols[order], values[order]
        rank = np.arange(rows.size) - np.searchsorted(rows, rows)  # place within its source's list
        best = rank < per_source
        rows, cols, values = rows[best], cols[best], values[best]
    return JumpCandidates(rows, cols, values, times[rows] - times[cols] - shift[rows, cols], cost, shift)
