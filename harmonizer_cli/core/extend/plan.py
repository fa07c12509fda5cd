"""The path search: which jumps recompose the song to about the target length.

A path plays the song from its start, jumps between beats (``candidates``) and ends
with the song's real ending. The search is a randomised greedy construction with
restarts from ``seed`` (restart 0 is greedy). Each step is guided by the seam cost,
pacing towards the target, even segment lengths, reuse of the material around the
jump, repeated jumps or lags, and the running loudness and brightness of the output
(``levels.BeatMood``). Finished paths are judged by their seam costs, the length left
for the seams and the local stretch to absorb, their mood (``levels.PathLevels``:
loudness, brightness and dips measured from the song's own frames), the balance of
reuse over the song and the share of the extension that repeats at one single lag.
Shortening searches every one- and two-jump plan instead (``shorten``).

Steps of ``plan_path``: ``_Geometry`` (the song's bars, segment and jump lengths,
what the absorbers can take), ``_candidate_costs`` (jumps and their seam and target
costs), ``_PathSearch.walk`` (one restart: ``_options`` and ``_step_costs`` at each
step) and ``_PathSearch.score``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from harmonizer_cli.core.extend.analysis import SongAnalysis
from harmonizer_cli.core.extend.candidates import (
    MAX_RHYTHM_SHIFT, JumpCandidates, jump_candidates, unit_beats,
)
from harmonizer_cli.core.extend.guidance import TargetCost
from harmonizer_cli.core.extend.levels import BeatMood, PathLevels, mood_penalty
from harmonizer_cli.core.extend.loops import loop_groove_cost, loop_length_fit, loop_rhythm_cost, plan_loops
from harmonizer_cli.core.extend.shorten import plan_shortening

__all__ = ["PlannedPath", "plan_path", "modal_lag_share", "tail_seconds", "seam_shift_seconds", "TAIL_MIN_SECONDS", "MAX_SEAM_SHIFT_SECONDS",
           "NO_PULSE_SEAM_SHIFT_SECONDS"]

#: The real ending kept untouched is this long; in shorter songs the last
#: ``ENDING_SECONDS`` (all of a short clip), and at least 30 %.
TAIL_MIN_SECONDS = 11.0
ENDING_SECONDS = 10.0
#: Songs of fewer planning bars than this are short clips, looped (``loops``): one-bar
#: segments and jumps, and the ending played through and left again before the last time.
SHORT_SONG_BARS = 8
#: Largest timing shift applied at one seam to absorb the length residual.
MAX_SEAM_SHIFT_SECONDS = 0.010
#: The same without a pulse (a fixed grid: no groove to keep).
NO_PULSE_SEAM_SHIFT_SECONDS = 0.25
#: Length residual the planner accepts per second of output middle, for the local
#: stretch to absorb (charged beyond it) ...
STRETCH_PLANNING_SHARE = 0.005
#: ... and at most this much in all (7.5 s of music at a 2 % stretch).
STRETCH_PLANNING_MAX_SECONDS = 0.15
#: Share of the seams' and the stretch's reach the planner counts on (a margin).
ABSORBER_MARGIN = 0.8
#: A path may finish with up to this share of a beat left over (the final score
#: charges what exceeds the absorbers: a larger local stretch).
SETTLE_BEATS = 0.55

# Step weights (they guide the construction; only some count in the final score):
#: seam (context + local + target) cost, against pacing and reuse
SEAM_WEIGHT = 2.5
#: pacing: jump lengths near an even share of what remains, even segment lengths
PACE_WEIGHT = 0.5
#: a jump whose length (lag) was used before: the signature of a loop
LAG_REPEAT_WEIGHT = 1.0
#: lags within about this many seconds of an earlier one count as the same
LAG_REPEAT_WIDTH_SECONDS = 1.0
#: the same jump (within two beats either side) taken again
SAME_JUMP_WEIGHT = 3.0
#: beats either side within which two jumps are the same
SAME_JUMP_BEATS = 2
#: the repeated-lag and same-jump terms look back this many jumps (a path of hours has
#: thousands: each step stays as fast as the first)
HISTORY_JUMPS = 64
#: the running loudness and brightness drift of the output (a share of the path's)
MOOD_STEP = 2.0
#: the length residual a finishing jump leaves, per beat period
RESIDUAL_WEIGHT = 1.0
#: reuse of the material ahead of a landing, and of the segment a jump ends
REUSE_AHEAD = 1.2
REUSE_BEHIND = 0.6
#: uneven segment lengths (log ratio to the typical length, squared)
SEGMENT_EVENNESS = 1.5
#: pace of a jump that goes the wrong way (forward when the song must get longer)
WRONG_WAY_PACE = 4.0
#: pace added to a finishing jump that lands inside the real ending
TAIL_LANDING_PACE = 3.0
#: pace added to each non-finishing step of a shortening (fewest seams)
EXTRA_SEAM_PACE = 2.0
#: finishing jumps taken from the full cost matrix at each step
FINISHING_OPTIONS = 24
#: a non-finishing jump must leave at least this many shortest jumps of length to go
MIN_BACK_LAGS = 1.5
# Path weights (the final score):
#: per second of residual beyond what the absorbers take
EXCESS_WEIGHT = 50.0
#: per seam
SEAM_COUNT_WEIGHT = 0.3
#: a path whose last landing is inside the real ending
TAIL_BAD_WEIGHT = 100.0
#: per beat period of residual (prefer paths that need little absorbing)
RESIDUAL_SCORE_WEIGHT = 2.0
#: the modal-lag share of the extension (a loop scores 1)
REPETITION_WEIGHT = 60.0
#: the balance of plays over the song (coefficient of variation)
BALANCE_WEIGHT = 4.0
#: a short clip's loop against its seam cost: the mood of the loop played over and over
MOOD_LOOP_WEIGHT = 0.1
#: Path-search steps (jumps) over all restarts at most, and restarts at least.
PLAN_STEP_BUDGET = 1200
MIN_RESTARTS = 2
#: Softmax temperature of the randomised restarts (restart 0 is greedy; the others
#: cycle through half, once and twice this).
SAMPLING_TEMPERATURE = 1.0
#: Typical jump length and segment length, as a share of the song (4 bars to 30 s).
TYPICAL_SHARE = 0.16
TYPICAL_MAX_SECONDS = 30.0
#: The real ending of a clip extended by less than a loop back to its first beat, or
#: shortened (a share of the clip, at most half the target; otherwise all of it from
#: its first beat, ``tail_seconds``).
SHORT_TAIL_SHARE = 0.3
#: Songs of at least this many planning bars get 4-bar segments and jumps, shorter 2.
LONG_SONG_BARS = 24


def seam_shift_seconds(analysis: SongAnalysis) -> float:
    """How far one seam may move to absorb length: ``MAX_SEAM_SHIFT_SECONDS`` on a beat
    grid (the groove is kept); on the no-pulse grid half a grid unit, at most
    ``NO_PULSE_SEAM_SHIFT_SECONDS``."""
    if not analysis.fallback:
        return MAX_SEAM_SHIFT_SECONDS
    return min(NO_PULSE_SEAM_SHIFT_SECONDS, 0.5 * analysis.beat_period_seconds)


def tail_seconds(analysis: SongAnalysis) -> float:
    """How much of the song's end is its real ending, played once, untouched, at the end.

    ``TAIL_MIN_SECONDS``; in shorter songs what a listener compares with the song's
    ending (the last ``ENDING_SECONDS``, all of a short clip from its first beat), and
    at least 30 % of the song.
    """
    duration = analysis.duration_seconds
    return min(TAIL_MIN_SECONDS, max(0.3 * duration, min(ENDING_SECONDS, duration - float(analysis.beat_seconds[0]))))


@dataclass
class PlannedPath:
    """Source segments in beat indices.

    Attributes
    ----------
    jumps : list of (int, int)
        ``(a, b)``: the output leaves the source at the start of beat ``a``
        (after playing beat ``a - 1``) and continues at the start of beat ``b``.
    score : float
        Lower is better.
    residual_seconds : float
        Target length minus planned length.
    landings : list of float
        Source time (s) where the output continues after each jump: beat ``b``'s,
        moved by the rhythmic verification (``candidates``).
    tail_seconds : float or None
        The real ending kept at the end, where it is shorter than ``tail_seconds``'s
        (a short clip extended by less than a loop back to its first beat, or cut
        shorter: ``SHORT_TAIL_SHARE``).
    """

    jumps: list
    score: float
    residual_seconds: float
    landings: list = field(default_factory=list)
    tail_seconds: Optional[float] = None


@dataclass(frozen=True)
class _Geometry:
    """The song's planning facts: bars, segment and jump lengths, the real ending."""

    target_seconds: float
    times: np.ndarray
    n: int
    duration: float
    period: float
    bar: int
    seg_min: int
    min_lag: int
    tail_min: float
    last_start: int
    leave_last: int
    typical: float
    typical_beats: int
    seam_shift: float
    max_steps: int
    relaxed: bool

    @property
    def extra(self) -> float:
        return self.target_seconds - self.duration

    def capacity(self, n_seams, middle_seconds):
        """Length (s) the seams and the local stretch can absorb (numbers or arrays)."""
        return n_seams * self.seam_shift * ABSORBER_MARGIN + np.minimum(
            STRETCH_PLANNING_SHARE * ABSORBER_MARGIN * middle_seconds, STRETCH_PLANNING_MAX_SECONDS)

    @classmethod
    def of(cls, analysis: SongAnalysis, target_seconds: float, *, relaxed: bool,
           tail: Optional[float] = None) -> "_Geometry":
        times = analysis.beat_seconds
        n = analysis.n_beats
        duration = analysis.duration_seconds
        bar = unit_beats(analysis)
        n_bars = n // bar
        seg_min = bar * (4 if n_bars >= LONG_SONG_BARS else 2)
        min_lag = bar * (4 if n_bars >= LONG_SONG_BARS else 2)
        if relaxed:  # short songs: one-bar segments, and jumps of a bar (a beat where a clip needs it)
            seg_min, min_lag = bar, max(1, bar // 4)
        tail_min = tail_seconds(analysis) if tail is None else tail
        period = analysis.beat_period_seconds
        # a landing must leave room for the real ending, or for a further jump
        last_start = int(np.searchsorted(times, duration - tail_min + 1e-6, side="right") - 1)
        typical = float(np.clip(TYPICAL_SHARE * duration, 4 * bar * period, TYPICAL_MAX_SECONDS))
        # (short songs, relaxed: the ending may be left again where nothing else reaches the target)
        leave_last = n - 1 if relaxed else min(n - 1, max(last_start, seg_min + 1))
        # every jump goes back at least min_lag beats: short songs and long targets need many
        max_steps = 64 + int(abs(target_seconds - duration) / max(min_lag * period, 0.25))
        return cls(target_seconds=target_seconds, times=times, n=n, duration=duration, period=period, bar=bar,
                   seg_min=seg_min, min_lag=min_lag, tail_min=tail_min, last_start=last_start,
                   leave_last=leave_last, typical=typical, typical_beats=max(seg_min, int(typical / period)),
                   seam_shift=seam_shift_seconds(analysis),
                   max_steps=max_steps, relaxed=relaxed)


def _candidate_costs(analysis: SongAnalysis, g: _Geometry, *, banned: frozenset,
                     target_cost: Optional[TargetCost]) -> JumpCandidates:
    """Jump candidates without the banned jumps, with the model's target cost added."""
    cands = jump_candidates(analysis, min_lag_beats=g.min_lag)
    if banned:
        cands = cands.without(banned)
    if target_cost is not None:  # unit-selection target cost beside the seam cost
        cands = cands.with_target(target_cost, analysis.beat_seconds)
    return cands


@dataclass
class _Walk:
    """The state of one restart of the path search."""

    plays: np.ndarray
    jumps: list = field(default_factory=list)
    landings: list = field(default_factory=list)
    backs: list = field(default_factory=list)
    p_beat: int = 0          # the beat the output continues from
    p_time: float = 0.0      # its source time
    elapsed: float = 0.0     # output seconds before the current segment
    head_end: Optional[float] = None
    score: float = 0.0

    def middle(self) -> float:
        """Output seconds between the first seam and the current segment (the head while there is none)."""
        return (self.elapsed - self.head_end) if len(self.jumps) >= 2 else self.elapsed


class _PathSearch:
    """One song's randomised greedy path search (see the module docstring)."""

    def __init__(self, g: _Geometry, cands: JumpCandidates, mood: BeatMood,
                 path_levels: Optional[PathLevels]) -> None:
        self.g, self.cands, self.mood, self.path_levels = g, cands, mood, path_levels
        self._opening: Optional[tuple] = None  # the first step's options and costs, the same for every restart

    def _options(self, w: _Walk, need: float, middle: float):
        """Jumps available from the current segment: its candidates, and finishing jumps
        from the full matrix that land early enough for the real ending and leave a
        residual the seams and a small local stretch can absorb."""
        g, cands, times = self.g, self.cands, self.g.times
        # the song's last seconds are its real ending: never played through mid-way
        # and left again (a fake ending and a restart), only at the very end
        mask = (cands.a >= w.p_beat + g.seg_min) & (cands.a <= g.leave_last) & \
            ((cands.b <= g.last_start) | (cands.b + g.seg_min <= g.leave_last))
        if not w.jumps:
            mask &= cands.a >= g.seg_min
        a, b, cost, back = cands.a[mask], cands.b[mask], cands.cost[mask], cands.back_seconds[mask]
        rows = np.arange(w.p_beat + g.seg_min if w.jumps else max(g.seg_min, 1), g.leave_last + 1)
        if not (rows.size and g.last_start > 0):
            return a, b, cost, back
        cap = np.maximum(g.capacity(len(w.jumps) + 1, middle + np.maximum(times[rows] - w.p_time, 0.0)),
                         SETTLE_BEATS * g.period)[:, None]
        # (while more is left than the longest such jump spans, none can finish: skip the matrix)
        if need - (times[rows[-1]] - times[0]) > float(cap.max()):
            return a, b, cost, back
        # only the jumps of about the length needed are costed (not the whole matrix)
        fa, fb = self._finishing(rows, cap[:, 0], need)
        if fa.size:
            a = np.concatenate([a, fa])
            b = np.concatenate([b, fb])
            cost = np.concatenate([cost, cands.full[fa, fb]])
            back = np.concatenate([back, times[fa] - cands.landing(times, fa, fb)])
        return a, b, cost, back

    def _finishing(self, rows: np.ndarray, cap: np.ndarray, need: float) -> tuple[np.ndarray, np.ndarray]:
        """``_options``' finishing jumps: from each row, only the landings whose jump leaves
        about ``need`` (within its ``cap`` and the largest rhythmic shift) are costed, the
        best ``FINISHING_OPTIONS`` of them kept (the same choice as from the whole matrix,
        which a long song does not have: ``JumpCosts``)."""
        g, cands, times = self.g, self.cands, self.g.times
        reach = cap + MAX_RHYTHM_SHIFT * g.period + 1e-6
        ends = times[: g.last_start + 1]
        lo = np.searchsorted(ends, times[rows] - need - reach, side="left")
        hi = np.searchsorted(ends, times[rows] - need + reach, side="right")
        counts = np.maximum(hi - lo, 0)
        total = int(counts.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        fa = np.repeat(rows, counts)
        fb = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(lo, counts)
        sub, shift = cands.full.pairs(fa, fb) if cands.blocked else (cands.full[fa, fb], cands.full_shift[fa, fb])
        left = need - (times[fa] - times[fb] - shift)
        ok = np.isfinite(sub) & (np.abs(left) <= np.repeat(cap, counts))
        if not ok.any():
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        flat = np.flatnonzero(ok)
        order = flat[np.argsort(SEAM_WEIGHT * sub[flat] + RESIDUAL_WEIGHT * np.abs(left[flat]) / g.period,
                                kind="stable")[:FINISHING_OPTIONS]]
        return fa[order], fb[order]

    def _step_costs(self, w: _Walk, need: float, middle: float, a, b, cost, back):
        """The allowed options and the cost of each, or None when none is allowed.

        Returns ``(a, b, cost, total, same, lag_rep)``: the options kept, their seam
        cost, the step's total cost, and the repeated-jump and repeated-lag terms.
        """
        g, times = self.g, self.g.times
        left = need - back
        # pacing: how far the jump's length is from an even share of what remains
        goal = need / max(1, round(need / g.typical)) if need > 0 else need
        same_sign = np.sign(back) == np.sign(goal)
        pace = np.where(same_sign, np.log(np.maximum(np.abs(back), 1e-3) / max(abs(goal), 1e-3)) ** 2,
                        WRONG_WAY_PACE)
        # finishing right after this jump must leave the real ending intact
        finishing = np.abs(left) <= np.maximum(g.capacity(len(w.jumps) + 1, middle + times[a] - w.p_time),
                                               SETTLE_BEATS * g.period) + 1e-3
        tail_ok = times[b] <= g.duration - g.tail_min
        pace = np.where(finishing & ~tail_ok, pace + TAIL_LANDING_PACE, pace)
        # a remainder too small for one more jump, or past the target, forces
        # detours (forward jumps, tiny loops): only finishing jumps may leave it
        min_back = MIN_BACK_LAGS * g.min_lag * g.period
        settles = finishing & tail_ok
        if need > 0:
            # (a landing that is not the last must leave room to leave again before the ending)
            allowed = settles | ((left >= min_back) & (b + g.seg_min <= g.leave_last))
        else:
            # shortening: a further forward jump must remain possible after landing
            allowed = settles | ((left <= -min_back) & (back < 0) & (b + g.seg_min + g.min_lag <= g.last_start))
            pace = np.where(settles, pace, pace + EXTRA_SEAM_PACE)  # fewest seams
        if not allowed.any():
            return None
        a, b, cost, back, left = a[allowed], b[allowed], cost[allowed], back[allowed], left[allowed]
        pace, finishing, tail_ok = pace[allowed], finishing[allowed], tail_ok[allowed]
        # prefer finishes that need little absorbing (seam shifts, local stretch)
        pace = np.where(finishing & tail_ok, pace + RESIDUAL_WEIGHT * np.abs(left) / g.period, pace)
        # reuse: how often the material after the landing (about one typical segment)
        # and the segment that this jump ends have been played already
        plays_sum = np.concatenate([[0.0], np.cumsum(w.plays)])
        ahead = np.minimum(b + g.typical_beats, g.n)
        reuse = REUSE_AHEAD * (plays_sum[ahead] - plays_sum[b]) / np.maximum(ahead - b, 1)
        reuse = reuse + REUSE_BEHIND * (plays_sum[a] - plays_sum[w.p_beat]) / np.maximum(a - w.p_beat, 1)
        lag_rep = np.zeros(len(b))
        for previous in w.backs[-HISTORY_JUMPS:]:
            lag_rep += np.exp(-(((back - previous) / LAG_REPEAT_WIDTH_SECONDS) ** 2))
        same = np.zeros(len(b))
        for prev_a, prev_b in w.jumps[-HISTORY_JUMPS:]:
            same += (np.abs(a - prev_a) <= SAME_JUMP_BEATS) & (np.abs(b - prev_b) <= SAME_JUMP_BEATS)
        # even segment lengths keep any one repetition lag from dominating
        if w.jumps:
            seg_len = np.maximum(times[a] - w.p_time, 1e-3)
            pace = pace + SEGMENT_EVENNESS * np.log(seg_len / g.typical) ** 2
        # the real ending that a finishing jump leads into is a segment too
        tail_len = np.maximum(g.duration - times[b], 1e-3)
        long_tail = np.maximum(np.log(tail_len / max(g.typical, g.tail_min)), 0.0) ** 2
        pace = np.where(finishing & tail_ok, pace + SEGMENT_EVENNESS * long_tail, pace)
        # mood: steer the running loudness and brightness of the output (with the
        # segment this jump ends and the one it starts) towards the song's
        mood = self.mood.step_terms(w.plays, p_beat=w.p_beat, a=a, b=b,
                                    landing_end=np.minimum(b + g.typical_beats, g.n))
        total = (SEAM_WEIGHT * cost + PACE_WEIGHT * pace + reuse + LAG_REPEAT_WEIGHT * lag_rep
                 + SAME_JUMP_WEIGHT * same + MOOD_STEP * mood)
        return a, b, cost, back, total, same, lag_rep

    def _step(self, w: _Walk, need: float, middle: float):
        """``_step_costs`` of ``_options``, or None when there is no option."""
        a, b, cost, back = self._options(w, need, middle)
        return self._step_costs(w, need, middle, a, b, cost, back) if a.size else None

    def walk(self, restart: int, rng: np.random.Generator) -> _Walk:
        """Build one path: greedy for restart 0, sampled by a softmax of the step costs otherwise."""
        g, times = self.g, self.g.times
        w = _Walk(plays=np.zeros(g.n))
        for _step in range(g.max_steps):
            need = g.target_seconds - w.elapsed - (g.duration - w.p_time)
            # what the local stretch may absorb grows with the middle (or the head while there is none)
            middle = w.middle()
            # finish when what is left fits the absorbers; up to SETTLE_BEATS of a beat is accepted
            settle = max(g.capacity(len(w.jumps), middle), SETTLE_BEATS * g.period) if w.jumps else 1e-3
            if abs(need) <= settle and w.p_time <= g.duration - g.tail_min + 1e-6:
                break
            if w.jumps or self._opening is None:
                step = self._step(w, need, middle)
                if not w.jumps:  # (every restart starts from the same state: its options are costed once)
                    self._opening = (step,)
            else:
                step, = self._opening
            if step is None:
                break
            a, b, cost, back, total, same, lag_rep = step
            if restart == 0:
                pick = int(np.argmin(total))
            else:
                finite = np.isfinite(total)
                temperature = SAMPLING_TEMPERATURE * (0.5, 1.0, 2.0)[restart % 3]
                weights = np.where(finite, np.exp(-(total - np.min(total)) / temperature), 0.0)
                pick = int(rng.choice(len(total), p=weights / weights.sum()))
            ja, jb = int(a[pick]), int(b[pick])
            # the plan is judged by its seams and its final shape; the other step terms only guide
            w.score += float(SEAM_WEIGHT * cost[pick] + SAME_JUMP_WEIGHT * same[pick]
                             + LAG_REPEAT_WEIGHT * lag_rep[pick])
            w.plays[w.p_beat:ja] += 1
            if w.head_end is None:
                w.head_end = float(times[ja])
            w.elapsed += float(times[ja]) - w.p_time
            w.jumps.append((ja, jb))
            w.backs.append(float(back[pick]))
            w.p_beat, w.p_time = jb, float(self.cands.landing(times, ja, jb))
            w.landings.append(w.p_time)
        w.plays[w.p_beat:] += 1
        return w

    def score(self, w: _Walk) -> tuple[float, float]:
        """The path's final score and its residual (target minus planned length, s)."""
        g, times, jumps = self.g, self.g.times, w.jumps
        residual = g.target_seconds - w.elapsed - (g.duration - w.p_time)
        excess = max(0.0, abs(residual) - g.capacity(len(jumps), w.middle()))
        tail_bad = w.p_time > g.duration - g.tail_min + 1e-6
        score = w.score
        score += EXCESS_WEIGHT * excess + SEAM_COUNT_WEIGHT * len(jumps) + (TAIL_BAD_WEIGHT if tail_bad else 0.0)
        score += RESIDUAL_SCORE_WEIGHT * abs(residual) / g.period
        segments_s = [(0.0, float(times[jumps[0][0]]))] if jumps else [(0.0, g.duration)]
        for k, (ja, jb) in enumerate(jumps):
            end = float(times[jumps[k + 1][0]]) if k + 1 < len(jumps) else g.duration
            segments_s.append((w.landings[k], end))
        if self.path_levels is not None:  # the path's own frames, gated as LUFS is
            score += mood_penalty(*self.path_levels.drift(segments_s))
        else:
            score += self.mood.drift(w.plays)
        if g.extra > 0:
            score += REPETITION_WEIGHT * modal_lag_share(segments_s, g.duration, g.target_seconds)
        inner = w.plays[g.n // 10: g.n - g.n // 10]
        score += BALANCE_WEIGHT * float(np.std(inner) / (np.mean(inner) + 1e-9))  # spread reuse over the song
        return score, residual


def plan_path(
    analysis: SongAnalysis,
    target_seconds: float,
    *,
    seed: int = 0,
    target_cost: Optional[TargetCost] = None,
    n_restarts: int = 48,
    banned: frozenset = frozenset(),
    groove_of: Optional[Callable[[], tuple]] = None,
    _relaxed: bool = False,
    _tail: Optional[float] = None,
) -> PlannedPath:
    """Choose the jumps that recompose the song to about ``target_seconds``.

    Parameters
    ----------
    analysis : SongAnalysis
    target_seconds : float
        Requested output length.
    seed : int
        Seeds the restarts; the same seed gives the same plan.
    target_cost : TargetCost, optional
        Model guidance (``guidance``).
    n_restarts : int
        Randomised greedy restarts; the best-scoring plan wins.
    banned : frozenset of (int, int)
        Jumps ``(a, b)`` that must not be taken (seams found too exposed).
    groove_of : callable() -> (envelope, frame_rate, pulse), optional
        The song's onset envelope and pulse as the seam audit measures them
        (``quality.groove``), asked for only when a short clip with a pulse is looped
        (its loops must not slip the pulse: ``loops.loop_groove_cost``; on the no-pulse
        grid the audit does not measure the groove either).

    Returns
    -------
    PlannedPath

    Raises
    ------
    ValueError
        ``n_restarts`` below 1.
    """
    short_clip = analysis.n_beats // unit_beats(analysis) < SHORT_SONG_BARS
    g = _Geometry.of(analysis, target_seconds, relaxed=_relaxed or short_clip, tail=_tail)
    if abs(g.extra) < 1e-3:
        return PlannedPath([], 0.0, g.extra)
    cands = _candidate_costs(analysis, g, banned=banned, target_cost=target_cost)
    if _tail is not None and g.extra > 0:  # (a clip extended by less than a loop back to its start)
        one = _one_loop(cands, g)
        if one is not None:
            return one
    if short_clip and g.extra > 0:  # a few bars: looped
        levels = PathLevels(analysis.levels) if analysis.levels is not None else None
        looped = plan_loops(cands, g.times, extra_seconds=g.extra, seg_min=g.seg_min, last_start=g.last_start,
                            period=g.period, seam_shift=g.seam_shift,
                            mood_cost=None if levels is None else
                            (lambda start, end: MOOD_LOOP_WEIGHT * mood_penalty(*levels.drift([(start, end)]))),
                            loop_length=loop_length_fit(analysis), rhythm_cost=loop_rhythm_cost(analysis),
                            groove_cost=loop_groove_cost(*groove_of()) if groove_of is not None and not analysis.fallback
                            else None)
        if looped is not None:
            jumps, landings, residual, cost = looped
            return PlannedPath(jumps, cost, residual, landings)
        if banned:  # (the audit banned every loop that fits: it keeps what it had)
            return PlannedPath([], np.inf, g.extra)
        # (no loop adds up to the target, say a small extension: the path search may)
    rng = np.random.default_rng(seed)
    if g.extra < 0:
        short = plan_shortening(analysis, target_seconds, cands, seg_min=g.seg_min, last_start=g.last_start,
                                capacity=g.capacity, seam_weight=SEAM_WEIGHT, excess_weight=EXCESS_WEIGHT)
        if short is not None:
            jumps, score, residual, landings = short
            return PlannedPath(jumps, score, residual, landings)
    search = _PathSearch(g, cands, BeatMood(analysis, tail_from=g.last_start),
                         PathLevels(analysis.levels) if analysis.levels is not None else None)
    best: Optional[PlannedPath] = None
    # a long output takes many steps a restart: fewer restarts, so that planning time
    # grows no faster than the output
    steps = 1.0 + abs(g.extra) / max(g.typical, 1e-3)
    n_restarts = int(np.clip(PLAN_STEP_BUDGET / steps, min(MIN_RESTARTS, n_restarts), n_restarts))
    for restart in range(n_restarts):
        walk = search.walk(restart, rng)
        score, residual = search.score(walk)
        if best is None or score < best.score:
            best = PlannedPath(list(walk.jumps), score, residual, list(walk.landings))
    if best is None:
        raise ValueError("n_restarts must be at least 1")
    reach = 0.6 * g.period + g.capacity(len(best.jumps), target_seconds)
    if abs(best.residual_seconds) > reach and not _relaxed:
        relaxed = plan_path(analysis, target_seconds, seed=seed, target_cost=target_cost,
                            n_restarts=n_restarts, banned=banned, groove_of=groove_of, _relaxed=True)
        if abs(relaxed.residual_seconds) < abs(best.residual_seconds):
            best = relaxed
        if short_clip and _tail is None and abs(best.residual_seconds) > reach:
            # a clip extended by less than any loop back to its first beat, or cut shorter:
            # it ends with its last part instead of all of it, and the loop (or the cut)
            # goes in before that
            tail = min(SHORT_TAIL_SHARE * analysis.duration_seconds, 0.5 * target_seconds)
            ending = plan_path(analysis, target_seconds, seed=seed, target_cost=target_cost, n_restarts=n_restarts,
                               banned=banned, groove_of=groove_of, _relaxed=True, _tail=tail)
            if abs(ending.residual_seconds) < abs(best.residual_seconds):
                ending.tail_seconds = tail
                best = ending
    return best


def _one_loop(cands: JumpCandidates, g: _Geometry) -> Optional[PlannedPath]:
    """The cheapest single jump back by about the extension (None if none is within the
    seams' and the local stretch's reach): a clip extended by a fraction of a second."""
    a, b = np.nonzero(np.isfinite(cands.full))
    keep = (b < a) & (b <= g.last_start)
    a, b = a[keep], b[keep]
    if a.size == 0:
        return None
    landing = cands.landing(g.times, a, b)
    left = g.extra - (g.times[a] - landing)
    score = np.where(np.abs(left) <= g.capacity(1, g.target_seconds),
                     SEAM_WEIGHT * cands.full[a, b] + RESIDUAL_SCORE_WEIGHT * np.abs(left) / g.period, np.inf)
    k = int(np.argmin(score))
    if not np.isfinite(score[k]):
        return None
    return PlannedPath([(int(a[k]), int(b[k]))], float(score[k]), float(left[k]), [float(landing[k])])


def modal_lag_share(segments: list, duration: float, target_seconds: float, *, bin_seconds: float = 0.3,
                    min_lag_seconds: float = 4.0) -> float:
    """Share of the output past the song's length that replays material at one single lag.

    ``segments`` are the source spans ``(start, end)`` in seconds in output order.
    Where two segments share source material, the later one repeats the earlier at
    the lag of their output offsets; the lengths past ``duration`` are summed per lag
    (bins of ``bin_seconds``, neighbours merged) and the largest sum is returned over
    ``target_seconds - duration``. A plain loop scores about 1.
    """
    past = target_seconds - duration
    if past <= 0 or len(segments) < 2:
        return 0.0
    spans = np.asarray(segments, dtype=np.float64)
    starts = np.cumsum([0.0] + [end - start for start, end in segments[:-1]])
    offsets = starts - spans[:, 0]  # output time minus source time, per segment
    keys, lengths = [], []
    for j in range(1, len(segments)):  # (in the order of j, then i: the sums add up as they always did)
        lo = np.maximum(spans[:j, 0], spans[j, 0])
        hi = np.minimum(spans[:j, 1], spans[j, 1])
        lag = offsets[j] - offsets[:j]
        out_lo = np.maximum(lo + offsets[j], duration)
        out_hi = hi + offsets[j]
        keep = (hi > lo) & (lag >= min_lag_seconds) & (out_hi > out_lo)
        keys.append(np.round(lag[keep] / bin_seconds).astype(np.int64))
        lengths.append((out_hi - out_lo)[keep])
    keys_all = np.concatenate(keys)
    if keys_all.size == 0:
        return 0.0
    totals = np.zeros(int(keys_all.max() - keys_all.min()) + 3)
    np.add.at(totals, keys_all - keys_all.min() + 1, np.concatenate(lengths))
    present = np.unique(keys_all - keys_all.min() + 1)
    best = float(np.max(totals[present - 1] + totals[present] + totals[present + 1]))
    return float(min(best / past, 1.0))
