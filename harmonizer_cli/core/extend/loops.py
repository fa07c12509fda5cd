"""Loop planning for short clips: jingles, game loops, a chorus cut, a few bars long.

A clip of a few bars cannot be recomposed from sections; it is looped, the way a
game composer loops it. Every backward jump ``a -> b`` adds its length
``D = t_a - t_b`` to the output, so a path is a multiset of loops whose lengths add
up to the target minus the clip. The loop types are the cheapest jumps of distinct
lengths (seam cost, rhythm-verified, from ``candidates``, plus the mood of the loop
played over and over, plus a cost per pass for a loop that is not whole bars,
``loop_rhythm_cost``, and for one that slips the clip's pulse as the groove measure
hears it, ``loop_groove_cost``) that can follow each other in any order (every landing lies
before every departure by at least a bar), some of them landing early enough to end
with the clip's own ending. Each loop's length is fitted to where the clip matches
itself (``loop_length_fit``). How many times each is used is a knapsack over their
lengths (milliseconds) that minimises the cost, a residual left to the local stretch
weighed against it; the uses are then spread evenly, an ending loop last.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from harmonizer_cli.core.extend.analysis import ANALYSIS_SAMPLE_RATE, HOP, SongAnalysis
from harmonizer_cli.core.extend.candidates import JumpCandidates, subdivided_beat, unit_beats
from harmonizer_cli.core.quality.groove import GROOVE_WINDOW_SECONDS, phase_jumps

__all__ = ["plan_loops", "loop_length_fit", "loop_rhythm_cost", "loop_groove_cost"]

#: A loop's length may move this share of a beat to where the clip best matches itself,
#: when it matches itself there better by this much (normalised correlation) than at
#: the grid length (a weak, distant maximum is another figure, not the loop).
LOOP_FIT_BEATS = 0.1
LOOP_FIT_GAIN = 0.02
#: Each pass of a short clip's loop that is not whole bars: by an even number of (felt)
#: beats, keeping the beat and its pairs (kick and snare) but shifting the downbeat; by
#: an odd number, swapping the pairs (or, over a subdivided beat, putting the felt beat off).
LOOP_DOWNBEAT_SHIFT_COST = 10.0
LOOP_OFF_BEAT_COST = 25.0
#: Each pass of a loop whose length slips the song's pulse (``quality.groove``) by more
#: than this share of the song's own jitter threshold (a stumble at every pass), and
#: per threshold of slip below it (the nearer a whole number of pulses, the steadier).
LOOP_GROOVE_MARGIN = 1.0
LOOP_STUMBLE_COST = 25.0
LOOP_SLIP_COST = 2.0
#: Loop types kept at most (the knapsack's items), of which at most this many end.
MAX_LOOP_TYPES = 10
ENDING_TYPES = 3
#: Two loop types differ in length by at least this share of a beat.
MIN_LENGTH_STEP_BEATS = 1.0
#: The knapsack's resolution (seconds): its rounding adds up to half of it per loop.
RESOLUTION_SECONDS = 0.001
#: Beyond this much extension the knapsack solves only the last stretch of it, the rest
#: being the cheapest loop repeated (memory and time stay flat for hours).
KNAPSACK_SPAN_SECONDS = 120.0
#: What the local stretch takes of a residual the loops leave (2.5 % of 20 s).
STRETCH_SECONDS = 0.5
#: Loops (the cheapest by seam cost) whose mood is weighed when choosing the loop types.
MOOD_CANDIDATES = 400
#: Added to each loop's cost: fewer seams at equal seam quality.
PER_SEAM_COST = 0.3
#: A length residual the seams cannot take goes to the local stretch: this much per
#: second of it weighs against the loops' cost (half a second of stretch, about one
#: loop that shifts the downbeat; beyond what the seams and the stretch take, nothing).
STRETCH_COST_PER_SECOND = 10.0


def _loop_types(cands: JumpCandidates, times: np.ndarray, *, seg_min: int, head_min: int, last_start: int,
                period: float, mood_cost: Optional[Callable[[float, float], float]] = None,
                rhythm_cost: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                groove_cost: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None,
                loop_length: Optional[Callable[[float], float]] = None):
    """The loop types: ``(a, b, length_seconds, cost, ending)``, or None.

    The cheapest loops of lengths at least a beat apart whose landings all lie a bar
    before all departures (so they can follow each other in any order); up to
    ``ENDING_TYPES`` of them land early enough to end with the clip's ending.
    """
    full = cands.full
    a_idx, b_idx = np.nonzero(np.isfinite(full))
    back = times[a_idx] - cands.landing(times, a_idx, b_idx)
    keep = (b_idx < a_idx) & (a_idx >= head_min) & (back > 0.25 * period)
    a_idx, b_idx, back = a_idx[keep], b_idx[keep], back[keep]
    if a_idx.size == 0:
        return None
    cost = full[a_idx, b_idx]
    if rhythm_cost is not None:  # a loop is heard at every pass: one off the bar stumbles every time
        cost = cost + rhythm_cost(a_idx - b_idx)
    order = np.argsort(cost, kind="stable")[:MOOD_CANDIDATES]
    a_idx, b_idx, back, cost = a_idx[order], b_idx[order], back[order], cost[order]
    if groove_cost is not None:  # ... and one that slips the felt pulse stumbles at every pass too
        fitted = back if loop_length is None else np.array([loop_length(float(d)) for d in back])
        cost = cost + groove_cost(times[a_idx], fitted)
    if mood_cost is not None:  # a loop played over and over is the output's mood
        cost = cost + np.array([mood_cost(float(cands.landing(times, a, b)), float(times[a]))
                                for a, b in zip(a_idx, b_idx)])
    order = np.argsort(cost, kind="stable")
    chosen: list[int] = []
    bounds = [np.inf, -np.inf]  # lowest departure, highest landing

    def fits(k: int) -> bool:
        low, high = min(bounds[0], a_idx[k]), max(bounds[1], b_idx[k])
        return high + seg_min <= low and all(abs(back[k] - back[j]) >= MIN_LENGTH_STEP_BEATS * period
                                             for j in chosen)

    def take(k: int) -> None:
        chosen.append(k)
        bounds[0], bounds[1] = min(bounds[0], a_idx[k]), max(bounds[1], b_idx[k])

    for k in order:  # the ending loops first
        if b_idx[k] <= last_start and sum(b_idx[j] <= last_start for j in chosen) < ENDING_TYPES and fits(k):
            take(k)
    if not chosen:
        return None
    for k in order:
        if len(chosen) >= MAX_LOOP_TYPES:
            break
        if k not in chosen and fits(k):
            take(k)
    return [(int(a_idx[k]), int(b_idx[k]), float(back[k]), float(cost[k]) + PER_SEAM_COST, bool(b_idx[k] <= last_start))
            for k in chosen]


def loop_length_fit(analysis: SongAnalysis):
    """``loop_length`` for ``plan_loops``: the length within ``LOOP_FIT_BEATS`` of a beat
    of a grid length at which the clip's onset envelope best matches itself (normalised
    correlation over the overlap, the peak interpolated between frames); None without
    an onset envelope. On the no-pulse grid, whose points are not beats, the loop moves
    up to half a grid unit to the best match, however slight (a clip whose pulse the
    analysis could not hold may still repeat itself)."""
    if analysis.onset is None or analysis.onset.size < 16:
        return None
    onset = analysis.onset.astype(np.float64)
    onset = onset - onset.mean()
    frame_rate = ANALYSIS_SAMPLE_RATE / HOP
    grid = analysis.fallback is not None
    reach = (0.5 if grid else LOOP_FIT_BEATS) * analysis.beat_period_seconds * frame_rate
    gain = 0.0 if grid else LOOP_FIT_GAIN

    def similarity(lag: int) -> float:
        if lag <= 0 or lag >= onset.size - 8:
            return -np.inf
        x, y = onset[lag:], onset[:-lag]
        return float(x @ y / (np.sqrt((x @ x) * (y @ y)) + 1e-12))

    def fit(seconds: float) -> float:
        centre = seconds * frame_rate
        lags = np.arange(int(np.ceil(centre - reach)), int(np.floor(centre + reach)) + 1)
        values = np.array([similarity(int(lag)) for lag in lags])
        if lags.size < 3 or not np.all(np.isfinite(values)):
            return seconds
        k = int(np.argmax(values))
        if k == 0 or k == lags.size - 1 or values[k] < similarity(int(round(centre))) + gain:
            return seconds  # no clear peak within reach: the grid length stands
        a, b, c = values[k - 1:k + 2]
        denom = a - 2.0 * b + c
        offset = 0.5 * (a - c) / denom if denom < 0 else 0.0
        return float((lags[k] + np.clip(offset, -0.5, 0.5)) / frame_rate)

    return fit


def loop_rhythm_cost(analysis: SongAnalysis):
    """``rhythm_cost`` for ``plan_loops`` (None on the no-pulse grid): a loop of whole
    planning or meter bars is free; over a subdivided beat (``subdivided_beat``) the
    felt beat is two beats and the felt bar two meter bars. Costs are per pass."""
    if analysis.fallback:
        return None
    bar = unit_beats(analysis)
    felt = 2 if subdivided_beat(analysis) else 1
    meter = max(1, analysis.beats_per_bar) * felt

    def cost(lags: np.ndarray) -> np.ndarray:
        lags = np.asarray(lags)
        whole = (lags % bar == 0) | (lags % meter == 0)
        return np.where(whole, 0.0, np.where(lags % (2 * felt) == 0, LOOP_DOWNBEAT_SHIFT_COST, LOOP_OFF_BEAT_COST))

    return cost


def loop_groove_cost(envelope: np.ndarray, frame_rate: float, pulse):
    """``groove_cost`` for ``plan_loops`` (None without a pulse): the cost per pass of loops
    departing at ``departures`` (s) with ``lengths`` (s), against the song's pulse as the
    seam audit and the benchmark measure it (``quality.groove``; ``envelope`` is the
    clip's ``onset_envelope``). Each loop is played over and over in a sketch of the
    output (the clip's envelope frames, the loop repeated), and the phase jump of the
    pulse across its middle seams is measured: a loop of whole analysis beats can still
    slip the felt pulse (a 5:4 figure, beats tracked a little off) at every pass."""
    if pulse is None or not np.isfinite(pulse.thresholds[0]):
        return None
    threshold = float(pulse.thresholds[0])
    n = envelope.shape[0]
    reach = int(np.ceil((GROOVE_WINDOW_SECONDS + 0.5) * frame_rate))

    def slip(departure: float, length: float) -> float:
        fa = int(round(departure * frame_rate))
        fb = max(0, int(round((departure - length) * frame_rate)))  # (a fitted length may reach before the clip)
        if fa > n or fa - fb < 4:
            return 0.0
        passes = int(np.ceil(2 * reach / (fa - fb))) + 2
        sketch = np.concatenate([envelope[:fa]] + [envelope[fb:fa]] * passes + [envelope[fb:]])
        seams = (fa + (fa - fb) * np.arange(passes)) / frame_rate
        middle = seams[(seams * frame_rate >= fa + reach) & (seams * frame_rate <= sketch.shape[0] - reach)]
        if middle.size == 0:
            middle = seams[len(seams) // 2:len(seams) // 2 + 1]
        jumps = np.abs(phase_jumps(sketch, frame_rate, middle, pulse)[:, 0])
        return float(np.median(jumps[np.isfinite(jumps)])) if np.isfinite(jumps).any() else 0.0

    def cost(departures: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        slips = np.array([slip(float(t), float(d)) for t, d in zip(departures, lengths)])
        return LOOP_SLIP_COST * slips / threshold + np.where(slips > LOOP_GROOVE_MARGIN * threshold,
                                                             LOOP_STUMBLE_COST, 0.0)

    return cost


def _knapsack(lengths: np.ndarray, costs: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Unbounded knapsack over exact sums: ``best[x]``, the least cost of loops whose lengths
    (integer units) add up to ``x`` (inf where none do), for ``0 <= x <= limit``, and the
    loop to take last on the way there."""
    best = np.full(limit + 1, np.inf)
    best[0] = 0.0
    choice = np.full(limit + 1, -1, dtype=np.int64)
    for i, (length, cost) in enumerate(zip(lengths, costs)):
        length = int(length)
        if length <= 0 or length > limit:
            continue
        for residue in range(length):
            idx = np.arange(residue, limit + 1, length)
            values = best[idx]
            j = np.arange(idx.size)
            # best over k <= j of values[k] + (j - k) * cost, by a running minimum
            reached = np.minimum.accumulate(values - j * cost) + j * cost
            better = reached < values - 1e-12
            best[idx] = np.where(better, reached, values)
            choice[idx] = np.where(better, i, choice[idx])
    return best, choice


def _counts(choice: np.ndarray, lengths: np.ndarray, x: int) -> np.ndarray:
    """How many of each loop make up the sum ``x`` (``_knapsack``'s choices, walked back)."""
    counts = np.zeros(lengths.size, dtype=np.int64)
    while x > 0:
        i = int(choice[x])
        counts[i] += 1
        x -= int(lengths[i])
    return counts


def _spread(counts: np.ndarray, *, last: int) -> list[int]:
    """The loop types in an order that spreads each type's uses evenly, ``last`` at the end."""
    counts = counts.copy()
    counts[last] -= 1
    total = int(counts.sum())
    slots = []
    for i, m in enumerate(counts):
        slots += [((k + 0.5) / m, i) for k in range(int(m))]
    order = [i for _, i in sorted(slots)]
    assert len(order) == total
    return order + [last]


def plan_loops(cands: JumpCandidates, times: np.ndarray, *, extra_seconds: float, seg_min: int, last_start: int,
               period: float, seam_shift: float,
               mood_cost: Optional[Callable[[float, float], float]] = None,
               loop_length: Optional[Callable[[float], float]] = None,
               rhythm_cost: Optional[Callable[[np.ndarray], np.ndarray]] = None,
               groove_cost: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None) -> Optional[tuple[list, list, float, float]]:
    """Jumps that loop a short clip to ``extra_seconds`` more than its length.

    Parameters
    ----------
    cands : JumpCandidates
    times : np.ndarray [shape=(n_beats,)]
        Beat times (s).
    extra_seconds : float
        Target length minus the clip's (> 0).
    seg_min : int
        Beats between a landing and the next departure, at least (the first segment
        may be shorter when the whole extension is shorter).
    last_start : int
        The last beat the final landing may be on (the clip's ending follows it).
    period : float
        Beat period (s).
    seam_shift : float
        How far (s) each seam may move to absorb length: with the local stretch
        (``STRETCH_SECONDS``), what the loops' lengths may leave over.
    mood_cost : callable(start_s, end_s), optional
        The cost of an output that plays the song from ``start_s`` to ``end_s`` over and
        over against the song's loudness, brightness and dips (``levels``).
    loop_length : callable(seconds) -> seconds, optional
        The loop length near a beat-grid length at which the clip best matches itself
        (its onsets a loop later): beats tracked at the analysis hop are up to 12 ms
        off, and a loop a few tens of ms long or short slips the groove at every seam.
    rhythm_cost : callable(lags) -> costs, optional
        The cost of each use of a loop by ``lags`` beats: nothing for whole bars, more
        for a loop that keeps the beat but shifts the downbeat, most for one that puts
        the felt beat off. The uses are costed, so a loop off the bar is taken as
        rarely as the exact length allows, and the local stretch may take the rest.
    groove_cost : callable(departures, lengths) -> costs, optional
        The cost of each use of loops departing at those times (s) with those (fitted)
        lengths (s) against the song's pulse (``loop_groove_cost``).

    Returns
    -------
    (jumps, landings, residual_seconds, cost) or None
        None when no loop fits.
    """
    # an extension shorter than a bar is one short loop: its segments may be shorter too
    shortest = min(seg_min, max(1, int(np.searchsorted(times, times[0] + extra_seconds - 0.5 * period))))
    types = _loop_types(cands, times, seg_min=shortest, head_min=shortest, last_start=last_start, period=period,
                        mood_cost=mood_cost, rhythm_cost=rhythm_cost, groove_cost=groove_cost,
                        loop_length=loop_length)
    if types is None:
        return None
    if loop_length is not None:
        types = [(a, b, float(loop_length(length)), cost, ending) for a, b, length, cost, ending in types]
    lengths = np.array([t[2] for t in types])
    costs = np.array([t[3] for t in types])
    cheapest = int(np.argmin(costs / lengths))  # cost per second of extension
    bulk = 0
    if extra_seconds > KNAPSACK_SPAN_SECONDS:
        bulk = int((extra_seconds - KNAPSACK_SPAN_SECONDS) // lengths[cheapest])
    rest = extra_seconds - bulk * lengths[cheapest]
    units = np.maximum(np.round(lengths / RESOLUTION_SECONDS).astype(np.int64), 1)
    n_seams = extra_seconds / float(np.mean(lengths))
    slack = int(max(0.5 * period, 0.6 * seam_shift * n_seams + STRETCH_SECONDS) / RESOLUTION_SECONDS)
    free = int(0.3 * seam_shift * n_seams / RESOLUTION_SECONDS)  # what the seams take without a stretch
    best_sum, choice = _knapsack(units, costs, max(0, int(round(rest / RESOLUTION_SECONDS))) + slack)
    found = None
    for last in (i for i, t in enumerate(types) if t[4]):  # each ending loop, used once at least
        wanted = int(round((rest - lengths[last]) / RESOLUTION_SECONDS))
        near = np.arange(max(0, wanted - slack), max(0, wanted + slack + 1))
        near = near[near < best_sum.size]
        reachable = near[np.isfinite(best_sum[near])]
        if reachable.size == 0:
            continue
        distance = np.abs(reachable - wanted)
        total = best_sum[reachable] + costs[last]
        if rhythm_cost is None:  # the sum nearest the target, then the cheapest
            pick = int(np.lexsort((total, distance))[0])
            key = (float(distance[pick]), float(total[pick]))
        else:  # the cheapest, a residual the seams cannot take weighed as the stretch it needs
            stretch = np.maximum(0, distance - free) * RESOLUTION_SECONDS
            total = np.where(stretch <= STRETCH_SECONDS, total + STRETCH_COST_PER_SECOND * stretch, np.inf)
            if not np.isfinite(total).any():
                continue
            pick = int(np.lexsort((distance, total))[0])
            key = (float(total[pick]), float(distance[pick]))
        if found is None or key < found[0]:
            found = (key, int(reachable[pick]), last)
    if found is None:
        return None
    _, x, last = found
    counts = _counts(choice, units, x)
    counts[last] += 1
    counts[cheapest] += bulk
    order = _spread(counts, last=last)
    jumps = [(types[i][0], types[i][1]) for i in order]
    if loop_length is None:
        landings = [float(cands.landing(times, a, b)) for a, b in jumps]
    else:
        landings = [float(times[types[i][0]] - types[i][2]) for i in order]
    planned = float(np.sum(counts * lengths))
    cost = float(np.sum(counts * costs))
    return jumps, landings, extra_seconds - planned, cost
