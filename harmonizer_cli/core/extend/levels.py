"""The level model: loudness, brightness and level dips of a path, predicted without rendering.

A path through the song is a list of source spans. Its output's integrated loudness
(BS.1770 gating), spectral centroid and deepest 1 s level dip are predicted from the
song's own analysis frames (``analysis.FrameLevels``), measured the way a meter (and
the quality benchmark) measures audio. ``PathLevels`` judges whole paths,
``BeatMood`` steers each step of the path search, and ``mood_penalty`` turns drifts
into planner cost.
"""

from __future__ import annotations

import numpy as np

from harmonizer_cli.core.extend.analysis import FrameLevels, SongAnalysis

__all__ = ["dip_frames", "level_and_running_median", "mood_penalty", "PathLevels", "BeatMood"]

# Planner weights of the output's drift from the song, each with what it trades:
#: per LU of loudness change (against seam quality and pacing)
MOOD_LOUDNESS_WEIGHT = 10.0
#: loudness change that is free of the steep charge below
LOUDNESS_TOLERANCE_LU = 0.05
#: per LU beyond the tolerance (a near-constraint: meters and ears notice)
LOUDNESS_EXCESS_WEIGHT = 100.0
#: per % of spectral-centroid change (brighter or duller than the song)
MOOD_CENTROID_WEIGHT = 1.5
#: centroid change that is free of the steeper charge below
CENTROID_TOLERANCE_PERCENT = 2.5
#: per % of centroid change beyond the tolerance
CENTROID_EXCESS_WEIGHT = 10.0
#: per dB of level dip deeper than the song's own (a restart or a fade played mid-way)
DIP_WEIGHT = 5.0
#: extra dip depth free of the steep charge below
DIP_TOLERANCE_DB = 0.5
#: per dB of extra dip beyond the tolerance
DIP_EXCESS_WEIGHT = 50.0
#: about what a listener notices: a loudness change of 0.6 LU, a brightness change of
#: 3.5 %, a dip 0.9 dB deeper than the song's ...
AUDIBLE_LOUDNESS_LU = 0.6
AUDIBLE_CENTROID_PERCENT = 3.5
AUDIBLE_DIP_DB = 0.9
#: ... and each share of it beyond costs this (outweighs everything else)
AUDIBLE_WEIGHT = 200.0


def dip_frames(rate: float) -> tuple[int, int, int]:
    """The benchmark's dip measure in analysis frames: 1 s window, 0.25 s hop, +-10 s median."""
    return max(1, round(rate)), max(1, round(0.25 * rate)), 40


def level_and_running_median(power: np.ndarray, *, window: int, hop: int, half: int,
                             edge: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Level (dB) of ``window``-frame means every ``hop`` frames, from ``edge`` to ``edge``
    before the end, and its running median over +-``half`` steps (edges repeated)."""
    cum = np.concatenate([[0.0], np.cumsum(power, dtype=np.float64)])
    starts = np.arange(edge, power.size - window - edge + 1, hop)
    level = 10.0 * np.log10((cum[starts + window] - cum[starts]) / window + 1e-10)
    if level.size == 0:
        return level, level
    padded = np.pad(level, half, mode="edge")
    # the middle of each odd window (np.median's value, 5x faster than np.median)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    return level, np.partition(windows, half, axis=1)[:, half]


def mood_penalty(d_loudness, d_brightness, d_dip):
    """Planner cost of a path's loudness (LU), brightness (%) and dip (dB) changes
    (floats, or arrays of many paths' changes)."""
    d_loudness, d_brightness = np.abs(d_loudness), np.abs(d_brightness)
    return (MOOD_LOUDNESS_WEIGHT * d_loudness
            + LOUDNESS_EXCESS_WEIGHT * np.maximum(0.0, d_loudness - LOUDNESS_TOLERANCE_LU)
            + MOOD_CENTROID_WEIGHT * d_brightness
            + CENTROID_EXCESS_WEIGHT * np.maximum(0.0, d_brightness - CENTROID_TOLERANCE_PERCENT)
            + DIP_WEIGHT * np.maximum(0.0, d_dip) + DIP_EXCESS_WEIGHT * np.maximum(0.0, d_dip - DIP_TOLERANCE_DB)
            + AUDIBLE_WEIGHT * (np.maximum(0.0, d_loudness - AUDIBLE_LOUDNESS_LU) / AUDIBLE_LOUDNESS_LU
                                + np.maximum(0.0, d_brightness - AUDIBLE_CENTROID_PERCENT) / AUDIBLE_CENTROID_PERCENT
                                + np.maximum(0.0, d_dip - AUDIBLE_DIP_DB) / AUDIBLE_DIP_DB))


class PathLevels:
    """Predicted loudness, brightness and level dips of a path, without rendering it.

    The frames of the path's source spans (``analysis.levels``) are concatenated and
    measured the way the benchmark measures audio: integrated loudness with the
    BS.1770 gating (K-weighted 400 ms blocks every 100 ms, relative gate 10 LU below
    the ungated mean), the energy-weighted spectral centroid, and the deepest drop
    of the 1 s level (0.25 s hop) below its running median over +-10 s, away from the
    first and last 5 s. The song itself is measured the same way, so what the frame
    estimate gets wrong cancels out of the differences.
    """

    def __init__(self, levels: FrameLevels) -> None:
        self.levels = levels
        rate = float(levels.frame_rate)
        self.rate = rate
        self.block, self.block_hop = max(1, round(0.4 * rate)), max(1, round(0.1 * rate))
        self.window, self.window_hop, self.half = dip_frames(rate)
        self.edge = round(5.0 * rate)
        self.reference = self._measure(np.arange(levels.power.size))
        self._sums: list | None = None  # (``rough_drifts``)

    def frames(self, spans: list) -> np.ndarray:
        """Frame indices of source spans ``[(start_s, end_s), ...]`` played in order."""
        n = self.levels.power.size
        parts = [np.arange(min(n, int(round(lo * self.rate))), min(n, int(round(hi * self.rate))))
                 for lo, hi in spans]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def _measure(self, idx: np.ndarray) -> tuple[float, float, float]:
        levels = self.levels
        k_power = levels.k_power[idx]
        cum = np.concatenate([[0.0], np.cumsum(k_power)])
        starts = np.arange(0, max(1, idx.size - self.block + 1), self.block_hop)
        blocks = (cum[np.minimum(starts + self.block, idx.size)] - cum[starts]) / self.block
        blocks = blocks[blocks > 1e-12 * max(float(blocks.max()), 1e-30)]
        ungated = float(np.mean(blocks)) if blocks.size else 1e-30
        gated = blocks[blocks > ungated * 0.1]  # -10 LU
        loudness = 10.0 * np.log10(max(float(np.mean(gated)) if gated.size else ungated, 1e-30))
        centroid = float(np.sum(levels.centroid_num[idx]) / max(float(np.sum(levels.energy[idx])), 1e-30))
        edge = self.edge if idx.size >= self.window + 2 * self.edge else max(0, (idx.size - self.window) // 4)
        level, running = level_and_running_median(levels.power[idx].astype(np.float64), window=self.window,
                                                  hop=self.window_hop, half=self.half, edge=edge)
        if level.size < 2:
            return loudness, centroid, 0.0
        return loudness, centroid, float(np.max(running - level))

    def rough_drifts(self, *spans: tuple) -> tuple[np.ndarray, np.ndarray]:
        """(loudness change in LU, centroid change in %) of many paths at once, roughly.

        Each span is ``(start_s, end_s)``, numbers or arrays with one entry per path;
        a path plays its spans once each. Frames are gated by the song's own 400 ms
        blocks, not the path's, and dips are not measured: quick enough to weigh every
        shortening of a song (``drift`` then measures the best).
        """
        if self._sums is None:
            levels = self.levels
            k_power = levels.k_power.astype(np.float64)
            blocks = np.convolve(k_power, np.ones(self.block) / self.block, mode="same")
            gate = (blocks > 0.1 * float(np.mean(blocks))) & (blocks > 1e-12 * max(float(blocks.max()), 1e-30))
            self._sums = [np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
                          for values in (k_power * gate, gate, levels.centroid_num, levels.energy)]
        n = self.levels.power.size

        def frame(seconds):
            return np.clip(np.round(np.asarray(seconds) * self.rate).astype(np.int64), 0, n)

        whole = [c[n] for c in self._sums]
        kept = [sum(c[frame(hi)] - c[frame(lo)] for lo, hi in spans) for c in self._sums]
        loudness = 10.0 * np.log10(np.maximum(kept[0] / np.maximum(kept[1], 1.0), 1e-30)
                                   / max(whole[0] / max(whole[1], 1.0), 1e-30))
        centroid = 100.0 * ((kept[2] / np.maximum(kept[3], 1e-30)) / max(whole[2] / max(whole[3], 1e-30), 1e-30) - 1.0)
        return loudness, centroid

    def drift(self, spans: list) -> tuple[float, float, float]:
        """(loudness change in LU, centroid change in %, dip deepening in dB) of a path."""
        loudness, centroid, dip = self._measure(self.frames(spans))
        ref_loudness, ref_centroid, ref_dip = self.reference
        return (loudness - ref_loudness, 100.0 * (centroid / max(ref_centroid, 1e-9) - 1.0), dip - ref_dip)


class BeatMood:
    """Per-beat sums that steer each step of the path search towards the song's mood.

    The output's loudness and brightness should stay the song's, so reuse must not
    favour the loud or bright sections. Per beat: the energy that counts for loudness
    (K-weighted; beats more than 10 LU below the song's mean are gated out, as LUFS
    does) and the time it spans, and the spectral energy and its frequency-weighted
    sum (the centroid is their ratio). Sums over any set of beats give the loudness
    and brightness of an output made of them.

    Parameters
    ----------
    analysis : SongAnalysis
    tail_from : int
        First beat of the real ending (always played once, at the end).
    """

    def __init__(self, analysis: SongAnalysis, *, tail_from: int) -> None:
        n = analysis.n_beats
        beat_dur = np.maximum(analysis.beat_ends() - analysis.beat_seconds, 1e-3)
        if analysis.levels is not None:
            levels = analysis.levels
            n_frames = levels.power.size
            edges = np.clip(np.round(np.append(analysis.beat_seconds, analysis.beat_ends()[-1]) * levels.frame_rate),
                            0, n_frames).astype(np.int64)
            edges[1:] = np.maximum(edges[1:], edges[:-1])

            def per_beat(values: np.ndarray) -> np.ndarray:
                cum = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
                return cum[edges[1:]] - cum[edges[:-1]]

            frames = np.maximum(np.diff(edges), 0).astype(np.float64)
            loud_energy = per_beat(levels.k_power)
            mean_k = loud_energy / np.maximum(frames, 1.0)
            counted = mean_k > 0.1 * loud_energy.sum() / max(frames.sum(), 1.0)
            loud_energy, loud_time = loud_energy * counted, frames * counted
            bright_num, bright_den = per_beat(levels.centroid_num), per_beat(levels.energy)
        else:
            loud_energy = 10.0 ** (analysis.loudness_db.astype(np.float64) / 10.0) * beat_dur
            loud_time = beat_dur
            centroid = analysis.centroid_hz.astype(np.float64) if analysis.centroid_hz is not None else np.ones(n)
            bright_num, bright_den = loud_energy * centroid, loud_energy
        self.song_loudness = loud_energy.sum() / max(loud_time.sum(), 1e-12)
        self.song_centroid = bright_num.sum() / max(bright_den.sum(), 1e-12)
        #: cumulative sums of the four per-beat quantities, each [shape=(n + 1,)]
        self.cumulative = [np.concatenate([[0.0], np.cumsum(v)]) for v in (loud_energy, loud_time, bright_num,
                                                                           bright_den)]
        self.tail_sums = np.array([c[n] - c[max(0, tail_from)] for c in self.cumulative])
        self.per_beat_sums = np.stack([loud_energy, loud_time, bright_num, bright_den])  # (4, n)

    def terms(self, sums: np.ndarray) -> np.ndarray:
        """Mood cost of output sums (4, ...): loudness (dB) and centroid (%) drift, weighted."""
        loud = sums[0] / np.maximum(sums[1], 1e-12)
        bright = sums[2] / np.maximum(sums[3], 1e-12)
        return (MOOD_LOUDNESS_WEIGHT * np.abs(10.0 * np.log10(np.maximum(loud, 1e-30) / max(self.song_loudness, 1e-30)))
                + MOOD_CENTROID_WEIGHT * 100.0 * np.abs(bright / max(self.song_centroid, 1e-12) - 1.0))

    def drift(self, plays: np.ndarray) -> float:
        """Mood cost of an output that plays beat ``k`` ``plays[k]`` times."""
        return float(self.terms(self.per_beat_sums @ plays))

    def step_terms(self, plays: np.ndarray, *, p_beat: int, a: np.ndarray, b: np.ndarray,
                   landing_end: np.ndarray) -> np.ndarray:
        """Mood cost after each candidate step: the output so far (``plays`` and the real
        ending), the segment from ``p_beat`` to each ``a`` and a typical segment from
        each landing ``b`` to ``landing_end``."""
        acc = self.per_beat_sums @ plays + self.tail_sums
        c = self.cumulative
        seg = np.stack([ck[a] - ck[p_beat] + ck[landing_end] - ck[b] for ck in c])
        return self.terms(acc[:, None] + seg)
