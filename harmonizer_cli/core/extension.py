"""Extend (or shorten) a song to an exact duration: the ``guided`` and ``neural`` engines.

``guided`` (the default) keeps the song's real beginning and real ending and
recomposes the middle from the song's own beats, like unit-selection synthesis:

* **analysis** (``analysis.analyze_song``): beats, bars and per-beat chroma,
  timbre, loudness, brightness and the spectra either side of candidate cut
  points, from the 22050 Hz mono view;
* **jump candidates**: leaving the source at the start of beat ``a`` and
  continuing at beat ``b`` is allowed when the beats around ``a`` sound like the
  beats around ``b`` (context cost over one bar on both sides: chroma, timbre,
  loudness), the spectra either side of the best cut point near the beat match
  (local cost), the position in the bar is the same (half-bar and beat shifts
  penalised), and ``|b - a|`` is at least 2 (short songs) or 4 planning bars
  (a planning bar is the meter, doubled while shorter than 1.5 s);
* **path planning** (extension): randomised greedy construction, 48 restarts
  from ``seed`` (restart 0 greedy); each step is guided by the seam cost,
  pacing towards the target, even segment lengths, reuse of the material
  ahead/behind, repeated jumps or lags, and the running loudness (K-weighted,
  quiet beats gated out as LUFS does) and brightness of the output against the
  song's; plans are judged by their seam costs, length residual, mood
  (``_PathLevels``: the path's own analysis frames, concatenated and measured
  like audio: BS.1770-gated integrated loudness, energy-weighted spectral
  centroid, and the deepest 1 s level dip below its running median, each
  against the song's), balance of reuse and the share of the extension that
  repeats at one single lag (a loop scores 1).
  Shortening searches every one-jump plan and every pair of top candidate
  jumps exhaustively. With a ``FramePredictor`` the model predicts, in one
  batch, the next 10 s after every second of the song from the 20 s before, and
  each jump gets a target cost (prediction at the jump versus the frames that
  follow the landing, relative to the song's own continuation) beside its seam
  cost;
* **exact length**: the planned length is off by a fraction of a beat (the
  planner charges residuals beyond what the seams and a few bars of local
  stretch absorb); the residual goes to the seams (each seam's cut moves by at
  most 10 ms, on a waveform-correlation peak so the crossfade stays
  phase-coherent; 250 ms without a pulse) and what they cannot absorb to a
  local, pitch-preserving time-stretch (``_stretch_to_length``): after
  rendering, one region sized for a 2 % stretch (at least 2 s, never over
  3 %) is chosen where the output has the fewest onsets (spectral flux),
  away from the seams, the first 5 s and the real ending, and is
  time-stretched by WSOLA (``_wsola``: 50 ms Hann frames, 50 % overlap, each
  read within +-7 ms of its nominal position where its waveform best
  continues the previous frame; all channels with the same offsets; a smooth
  gain restores the power that frames adding incoherently lose; the
  region's first and last 25 ms are the input's, so it joins without a
  seam). There is no global time-stretch and no resampling: the pitch is
  unchanged. The tail (the real ending) is copied sample for sample;
* **render** from the original samples at their own rate and channel count:
  each seam is aligned by waveform cross-correlation (+-15 ms around the beat
  grid), then moved, in both passages alike, to the least exposed point from
  half a beat before to 30 % of a beat after the beat (a grid unit without a
  pulse; smallest spectral jump, up to 16 kHz, between the 50 ms before in one
  and the 50 ms after in the other, and no transient within +-5 ms); the
  crossfade (20 ms; 100 or 200 ms where the spectra still differ; 80 ms
  without a pulse) has gains with ``g_out^2 + g_in^2 + 2 rho g_out g_in = 1``
  (equal power for uncorrelated passages, equal gain for correlated ones),
  blended towards linear where the mix would pass the passages' own peak;
* **seam audit**: every rendered seam is measured as the benchmark measures
  seams (``_exposure``: the sample-step crest within +-5 ms and the 50 ms
  spectral novelty) against the song's own moments (80th percentile over
  points every 50 ms); a jump whose seam stands out is banned, with the same
  jump a beat either side, and the path re-planned, at most
  ``SEAM_AUDIT_ROUNDS`` plans in all; the least exposed is kept.

``neural`` is the seed paper's method: from the last 20 s predict 10 s of
frames, append, repeat; rendered by the predictor (``render_frames``) and
appended to the untouched original (there is no real ending: the paper only
appends). It needs a model and sounds like the paper's output (mushy,
noisy); it exists for research comparison and only extends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from harmonizer_cli.core.analysis import SongAnalysis, analyze_song
from harmonizer_cli.core.audio_io import Audio, resample, to_model_view
from harmonizer_cli.errors import AudioError, ConfigError, ModelError

__all__ = ["ExtensionResult", "extend_audio", "plan_path", "PlannedPath", "ENGINES"]

ENGINES = ("guided", "neural")
#: Largest timing shift applied at one seam to absorb the length residual.
MAX_SEAM_SHIFT_SECONDS = 0.010
#: The same without a pulse (a fixed grid: no groove to keep).
NO_PULSE_SEAM_SHIFT_SECONDS = 0.25
#: Length residual the planner accepts per second of output middle, for the local
#: stretch to absorb (charged beyond it).
STRETCH_PLANNING_SHARE = 0.005
#: ... and at most this much in all (7.5 s of music at PREFERRED_STRETCH).
STRETCH_PLANNING_MAX_SECONDS = 0.15
#: The local time-stretch (WSOLA, pitch kept) that makes the length exact: the region
#: is sized for PREFERRED_STRETCH and never stretched by more than MAX_STRETCH.
PREFERRED_STRETCH = 0.02
MAX_STRETCH = 0.03
#: The song's first seconds are never stretched (a quarter of a short output).
HEAD_KEEP_SECONDS = 5.0
#: Weight of the model's target cost beside the seam (context) cost.
TARGET_WEIGHT = 0.5
#: Weight of the local spectral jump at a cut (beside the bar-context cost).
LOCAL_WEIGHT = 3.0
#: Weight (per dB) of a level dip near a seam deeper than any in the song.
DIP_SEAM_WEIGHT = 0.5
#: Weight of the seam (context + local) cost in the planner, against pacing and reuse.
SEAM_WEIGHT = 2.5
#: Weight of the length residual a finishing jump leaves (per beat period).
RESIDUAL_WEIGHT = 1.0
#: Weights of the output's drift in loudness (per LU) and brightness (per % of
#: spectral centroid) from the song's, and steeper ones past a tolerance.
MOOD_LOUDNESS_WEIGHT = 10.0
LOUDNESS_TOLERANCE_LU = 0.05
LOUDNESS_EXCESS_WEIGHT = 100.0
MOOD_CENTROID_WEIGHT = 1.5
CENTROID_TOLERANCE_PERCENT = 2.5
CENTROID_EXCESS_WEIGHT = 10.0
#: Weight of a level dip deeper than the song's own (per dB), steeper past 0.5 dB.
DIP_WEIGHT = 5.0
DIP_TOLERANCE_DB = 0.5
DIP_EXCESS_WEIGHT = 50.0
#: Beyond about what a listener notices (a loudness change of 0.6 LU, a brightness
#: change of 3.5 %, a dip 0.9 dB deeper than the song's), each share of it costs this.
AUDIBLE_LOUDNESS_LU = 0.6
AUDIBLE_CENTROID_PERCENT = 3.5
AUDIBLE_DIP_DB = 0.9
AUDIBLE_WEIGHT = 200.0
#: Share of the mood drift charged at each step (guidance while building the path).
MOOD_STEP = 2.0
#: Weight of the modal-lag share of the extension (the signature of a loop).
REPETITION_WEIGHT = 60.0
#: Softmax temperature of the randomised restarts (restart 0 is greedy; the others
#: cycle through half, once and twice this).
SAMPLING_TEMPERATURE = 1.0
#: Planner weights: reuse of the material ahead of a landing, of the segment a jump
#: ends, and the final balance of plays over the song (coefficient of variation).
REUSE_AHEAD = 1.2
REUSE_BEHIND = 0.6
BALANCE_WEIGHT = 4.0
#: Typical jump length and segment length, as a share of the song (4 bars to 30 s).
TYPICAL_SHARE = 0.16
#: Weight of uneven segment lengths (log ratio to the typical length, squared).
SEGMENT_EVENNESS = 1.5
#: Longer crossfades where the spectra on either side of the chosen cut still differ:
#: (spectral jump in dB above which, crossfade seconds).
LONG_FADES = ((3.0, 0.100), (4.5, 0.200))
#: A seam is exposed where it reads above this percentile of the song's own moments.
EXPOSURE_PERCENTILE = 80.0
#: Plans tried at most when rendered seams are more exposed than the song's own moments.
SEAM_AUDIT_ROUNDS = 4
#: Sources peaking at most this high are full-scale masters: no seam passes 1.0.
FULL_SCALE_OVERS = 1.25
#: Seam crossfade length.
CROSSFADE_SECONDS = 0.020
NO_PULSE_CROSSFADE_SECONDS = 0.080
#: The real ending kept untouched is at least this long (shorter songs: 30 %).
TAIL_MIN_SECONDS = 11.0

ProgressFn = Optional[Callable[[int, int], None]]


@dataclass
class ExtensionResult:
    """An extended song and how it was made.

    Attributes
    ----------
    samples : np.ndarray [shape=(n_samples, n_channels), dtype=float32]
        The output at the input's sample rate and channel count.
    sample_rate : int
    seams_seconds : list of float
        Output times of the seams (crossfade centres).
    segments : list of dict
        ``{"source_start", "source_end", "output_start"}`` in seconds, in order.
    engine : str
    model : str or None
        Name of the predictor used, None without one.
    fallback : str or None
        ``"no-pulse"`` when the song had no detectable beat.
    tempo_bpm : float or None
        None for the neural engine.
    beats_per_bar : int or None
    stretch : dict or None
        The local, pitch-preserving time-stretch that made the length exact:
        ``{"factor": output / input length of the region (> 1 lengthens),
        "region_seconds": [start, end] in the output}``; None when none was needed.
    timings : dict
        Seconds spent in ``analysis``, ``plan`` and ``render``.
    """

    samples: np.ndarray
    sample_rate: int
    seams_seconds: list
    segments: list
    engine: str
    model: Optional[str]
    fallback: Optional[str]
    tempo_bpm: Optional[float]
    beats_per_bar: Optional[int]
    stretch: Optional[dict] = None
    timings: dict = field(default_factory=dict)

    @property
    def duration_seconds(self) -> float:
        return self.samples.shape[0] / float(self.sample_rate)


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
    """

    jumps: list
    score: float
    residual_seconds: float


# ---------------------------------------------------------------------------
# Jump candidates
# ---------------------------------------------------------------------------

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


@dataclass
class _Candidates:
    a: np.ndarray        # leave the source at the start of beat a
    b: np.ndarray        # continue at the start of beat b
    cost: np.ndarray     # seam (context) cost
    back_seconds: np.ndarray  # t[a] - t[b]: > 0 replays material, < 0 skips
    full: np.ndarray     # [n, n] cost of every allowed jump (inf where not allowed)


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


def _unit_beats(analysis: SongAnalysis) -> int:
    """Beats per planning bar: the meter, doubled while a bar is shorter than 1.5 s."""
    unit = analysis.beats_per_bar
    while unit * analysis.beat_period_seconds < 1.5:
        unit *= 2
    return unit


def _dip_frames(rate: float) -> tuple[int, int, int]:
    """The benchmark's dip measure in analysis frames: 1 s window, 0.25 s hop, +-10 s median."""
    return max(1, round(rate)), max(1, round(0.25 * rate)), 40


def _level_and_running_median(power: np.ndarray, *, window: int, hop: int, half: int,
                              edge: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Level (dB) of ``window``-frame means every ``hop`` frames, from ``edge`` to ``edge``
    before the end, and its running median over +-``half`` steps (edges repeated)."""
    cum = np.concatenate([[0.0], np.cumsum(power, dtype=np.float64)])
    starts = np.arange(edge, power.size - window - edge + 1, hop)
    level = 10.0 * np.log10((cum[starts + window] - cum[starts]) / window + 1e-10)
    if level.size == 0:
        return level, level
    padded = np.pad(level, half, mode="edge")
    return level, np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)


def _seam_dip(levels, leave_seconds: np.ndarray, continue_seconds: np.ndarray) -> np.ndarray:
    """How much deeper than any in the song a level dip near each seam would be (dB, >= 0).

    The benchmark's dip: the 1 s level (0.25 s hop) below its running median over
    +-10 s. Around a seam the output is the 10 s before the cut followed by the 10 s
    after the landing; a quiet moment on either side is measured against the median
    of that new neighbourhood, and charged for what it exceeds the deepest dip of
    the song itself and of its own place in the song (a quiet intro or outro played
    among louder music sounds like the song restarting).
    """
    rate = float(levels.frame_rate)
    window, hop, half = _dip_frames(rate)
    level, running = _level_and_running_median(levels.power, window=window, hop=hop, half=half)
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


def _jump_candidates(analysis: SongAnalysis, *, min_lag_beats: int, per_source: int = 12) -> _Candidates:
    n = analysis.n_beats
    distance = _beat_distance(analysis)
    bar = _unit_beats(analysis)
    context = max(2, min(bar, 4))
    offsets = np.arange(-context, context)
    weights = np.where((offsets >= -2) & (offsets <= 1), 1.0, 0.5)
    padded = np.full((n + 2 * context, n + 2 * context), np.nan)
    padded[context:context + n, context:context + n] = distance
    cost = np.zeros((n, n))
    for offset, weight in zip(offsets, weights):
        cost += weight * padded[context + offset:context + offset + n, context + offset:context + offset + n]
    cost /= weights.sum()
    a_idx, b_idx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    lag = b_idx - a_idx
    valid = np.isfinite(cost) & (np.abs(lag) >= min_lag_beats) & (a_idx >= 1)
    # musical position: same place in the bar is free, half-bar costs, other beats more
    phase_penalty = np.where(lag % bar == 0, 0.0, np.where(lag % max(1, bar // 2) == 0, 0.6, 1.5))
    if analysis.fallback:
        phase_penalty = np.where(lag % bar == 0, 0.0, 0.3)
    downbeat = (np.arange(n) - analysis.downbeat_phase) % analysis.beats_per_bar == 0
    cost = cost + phase_penalty + np.where(downbeat[None, :], 0.0, 0.15)
    if analysis.mel_before_db is not None:
        cost = cost + LOCAL_WEIGHT * _local_seam_cost(analysis)
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
        values = values + DIP_SEAM_WEIGHT * _seam_dip(analysis.levels, times[rows], times[cols])
        order = np.lexsort((values, rows))
        rows, cols, values = rows[order], cols[order], values[order]
        rank = np.arange(rows.size) - np.searchsorted(rows, rows)  # place within its source's list
        best = rank < per_source
        rows, cols, values = rows[best], cols[best], values[best]
    return _Candidates(rows, cols, values, times[rows] - times[cols], cost)


# ---------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------

class _TargetCost:
    """Model guidance: distance between the predicted next 10 s and a candidate continuation.

    The model predicts, once per song and in one batch, the next ``n_output_frames``
    frames after every 1 s position of the song from the ``n_input_frames`` before
    it. A jump that leaves the source at ``t_a`` and continues at ``t_b`` is then
    charged the distance between the prediction at ``t_a`` and the song's frames
    from ``t_b``, minus the distance to its natural continuation (frames from
    ``t_a``): how much less expected the jump is than the song itself. The context
    is the source's own 20 s before the jump, which is the path's own when the
    current segment is at least 20 s long and an approximation otherwise; it keeps
    the guidance to one prediction batch per song.
    """

    def __init__(self, predictor, mono: np.ndarray) -> None:
        features = np.asarray(predictor.frame_features(mono), dtype=np.float32)
        n_in = int(getattr(predictor, "n_input_frames", 20))
        n_out = int(getattr(predictor, "n_output_frames", 10))
        self.frame_seconds = float(getattr(predictor, "frame_seconds", 1.0))
        n = features.shape[0]
        padded = np.concatenate([np.repeat(features[:1], n_in, axis=0), features,
                                 np.repeat(features[-1:], n_out, axis=0)], axis=0)
        # context ending at frame k (exclusive) for k = 0..n
        contexts = np.stack([padded[k:k + n_in] for k in range(n + 1)])
        predicted = np.asarray(predictor.predict(contexts), dtype=np.float32)  # [n+1, n_out, F]
        continuations = np.stack([padded[n_in + m: n_in + m + n_out] for m in range(n + 1)])
        scale = float(np.mean((features - features.mean(axis=0)) ** 2)) + 1e-9
        cost = np.zeros((n + 1, n + 1))
        for j in range(n_out):
            p, c = predicted[:, j].astype(np.float64), continuations[:, j].astype(np.float64)
            cost += (np.sum(p * p, axis=1)[:, None] + np.sum(c * c, axis=1)[None, :] - 2.0 * p @ c.T)
        cost /= n_out * features.shape[1] * scale
        self.matrix = cost - np.diag(cost)[:, None]  # relative to the natural continuation
        self.n = n

    def for_jumps(self, leave_seconds: np.ndarray, continue_seconds: np.ndarray) -> np.ndarray:
        """Target cost of leaving at ``leave_seconds`` and continuing at ``continue_seconds``."""
        k = np.clip(np.round(leave_seconds / self.frame_seconds).astype(np.int64), 0, self.n)
        m = np.clip(np.round(continue_seconds / self.frame_seconds).astype(np.int64), 0, self.n)
        return self.matrix[k, m]


def _mood_penalty(d_loudness: float, d_brightness: float, d_dip: float) -> float:
    """Planner cost of a path's loudness (LU), brightness (%) and dip (dB) changes."""
    return (MOOD_LOUDNESS_WEIGHT * abs(d_loudness)
            + LOUDNESS_EXCESS_WEIGHT * max(0.0, abs(d_loudness) - LOUDNESS_TOLERANCE_LU)
            + MOOD_CENTROID_WEIGHT * abs(d_brightness)
            + CENTROID_EXCESS_WEIGHT * max(0.0, abs(d_brightness) - CENTROID_TOLERANCE_PERCENT)
            + DIP_WEIGHT * max(0.0, d_dip) + DIP_EXCESS_WEIGHT * max(0.0, d_dip - DIP_TOLERANCE_DB)
            + AUDIBLE_WEIGHT * (max(0.0, abs(d_loudness) - AUDIBLE_LOUDNESS_LU) / AUDIBLE_LOUDNESS_LU
                                + max(0.0, abs(d_brightness) - AUDIBLE_CENTROID_PERCENT) / AUDIBLE_CENTROID_PERCENT
                                + max(0.0, d_dip - AUDIBLE_DIP_DB) / AUDIBLE_DIP_DB))


class _PathLevels:
    """Predicted loudness, brightness and level dips of a path, without rendering it.

    The frames of the path's source spans (``analysis.levels``) are concatenated and
    measured the way the benchmark measures audio: integrated loudness with the
    BS.1770 gating (K-weighted 400 ms blocks every 100 ms, relative gate 10 LU below
    the ungated mean), the energy-weighted spectral centroid, and the deepest drop
    of the 1 s level (0.25 s hop) below its running median over +-10 s, away from the
    first and last 5 s. The song itself is measured the same way, so what the frame
    estimate gets wrong cancels out of the differences.
    """

    def __init__(self, levels) -> None:
        self.levels = levels
        rate = float(levels.frame_rate)
        self.rate = rate
        self.block, self.block_hop = max(1, round(0.4 * rate)), max(1, round(0.1 * rate))
        self.window, self.window_hop, self.half = _dip_frames(rate)
        self.edge = round(5.0 * rate)
        self.reference = self._measure(np.arange(levels.power.size))

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
        level, running = _level_and_running_median(levels.power[idx].astype(np.float64), window=self.window,
                                                   hop=self.window_hop, half=self.half, edge=edge)
        if level.size < 2:
            return loudness, centroid, 0.0
        return loudness, centroid, float(np.max(running - level))

    def drift(self, spans: list) -> tuple[float, float, float]:
        """(loudness change in LU, centroid change in %, dip deepening in dB) of a path."""
        loudness, centroid, dip = self._measure(self.frames(spans))
        ref_loudness, ref_centroid, ref_dip = self.reference
        return (loudness - ref_loudness, 100.0 * (centroid / max(ref_centroid, 1e-9) - 1.0), dip - ref_dip)


def plan_path(
    analysis: SongAnalysis,
    target_seconds: float,
    *,
    seed: int = 0,
    target_cost: Optional[_TargetCost] = None,
    n_restarts: int = 48,
    banned: frozenset = frozenset(),
    _relaxed: bool = False,
) -> PlannedPath:
    """Choose the jumps that recompose the song to about ``target_seconds``.

    Parameters
    ----------
    analysis : SongAnalysis
    target_seconds : float
        Requested output length.
    seed : int
        Seeds the restarts; the same seed gives the same plan.
    target_cost : optional
        Model guidance (see module docstring).
    n_restarts : int
        Randomised greedy restarts; the best-scoring plan wins.
    banned : frozenset of (int, int)
        Jumps ``(a, b)`` that must not be taken (seams found too exposed).

    Returns
    -------
    PlannedPath
    """
    times = analysis.beat_seconds
    n = analysis.n_beats
    duration = analysis.duration_seconds
    bar = _unit_beats(analysis)
    n_bars = n // bar
    seg_min = bar * (4 if n_bars >= 24 else 2)
    min_lag = bar * (4 if n_bars >= 24 else 2)
    if _relaxed:  # short songs: one-bar segments and jumps
        seg_min = min_lag = bar
    tail_min = min(TAIL_MIN_SECONDS, 0.3 * duration)
    period = analysis.beat_period_seconds
    extra = target_seconds - duration
    if abs(extra) < 1e-3:
        return PlannedPath([], 0.0, extra)
    cands = _jump_candidates(analysis, min_lag_beats=min_lag)
    if banned:
        pairs = np.array([(a, b) for a, b in banned if 0 <= a < n and 0 <= b < n], dtype=np.int64).reshape(-1, 2)
        cands.full[pairs[:, 0], pairs[:, 1]] = np.inf
        keep = np.isfinite(cands.full[cands.a, cands.b])
        cands = _Candidates(cands.a[keep], cands.b[keep], cands.cost[keep], cands.back_seconds[keep], cands.full)
    if target_cost is not None:  # unit-selection target cost beside the seam cost
        times_all = analysis.beat_seconds
        cands.cost = cands.cost + TARGET_WEIGHT * target_cost.for_jumps(times_all[cands.a], times_all[cands.b])
        rows, cols = np.nonzero(np.isfinite(cands.full))
        cands.full[rows, cols] += TARGET_WEIGHT * target_cost.for_jumps(times_all[rows], times_all[cols])
    # a landing must leave room for the real ending, or for a further jump
    last_start = np.searchsorted(times, duration - tail_min, side="right") - 1
    typical = float(np.clip(TYPICAL_SHARE * duration, 4 * bar * period, 30.0))
    typical_beats = max(seg_min, int(typical / period))
    rng = np.random.default_rng(seed)

    seam_shift = NO_PULSE_SEAM_SHIFT_SECONDS if analysis.fallback else MAX_SEAM_SHIFT_SECONDS

    def capacity(n_seams: int, middle_seconds: float) -> float:
        return n_seams * seam_shift * 0.8 + np.minimum(STRETCH_PLANNING_SHARE * 0.8 * middle_seconds,
                                                             STRETCH_PLANNING_MAX_SECONDS)

    if extra < 0:
        short = _plan_shortening(analysis, target_seconds, cands, seg_min=seg_min, last_start=last_start,
                                 capacity=capacity)
        if short is not None:
            return short
    # mood: the output's loudness and brightness should stay the song's, so reuse must
    # not favour the loud or bright sections. Per beat: the energy that counts for
    # loudness (K-weighted; beats more than 10 LU below the song's mean are gated out,
    # as LUFS does) and the time it spans, and the spectral energy and its
    # frequency-weighted sum (the centroid is their ratio)
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
    song_loudness = loud_energy.sum() / max(loud_time.sum(), 1e-12)
    song_centroid = bright_num.sum() / max(bright_den.sum(), 1e-12)
    cumulative = [np.concatenate([[0.0], np.cumsum(v)]) for v in (loud_energy, loud_time, bright_num, bright_den)]
    tail_from = max(0, last_start)
    tail_sums = np.array([c[n] - c[tail_from] for c in cumulative])
    per_beat_sums = np.stack([loud_energy, loud_time, bright_num, bright_den])  # (4, n)

    def mood_terms(sums: np.ndarray) -> np.ndarray:
        """Mood cost of output sums (4, ...): loudness (dB) and centroid (%) drift, weighted."""
        loud = sums[0] / np.maximum(sums[1], 1e-12)
        bright = sums[2] / np.maximum(sums[3], 1e-12)
        return (MOOD_LOUDNESS_WEIGHT * np.abs(10.0 * np.log10(np.maximum(loud, 1e-30) / max(song_loudness, 1e-30)))
                + MOOD_CENTROID_WEIGHT * 100.0 * np.abs(bright / max(song_centroid, 1e-12) - 1.0))

    def mood_drift(plays: np.ndarray) -> float:
        return float(mood_terms(per_beat_sums @ plays))

    path_levels = _PathLevels(analysis.levels) if analysis.levels is not None else None
    # (short songs, relaxed: the ending may be left again where nothing else reaches the target)
    leave_last = n - 1 if _relaxed else max(last_start, seg_min + 1)
    # every jump goes back at least min_lag beats: short songs and long targets need many
    max_steps = 64 + int(abs(extra) / max(min_lag * period, 0.25))
    best: Optional[PlannedPath] = None
    for restart in range(n_restarts):
        greedy = restart == 0
        plays = np.zeros(n)
        jumps: list = []
        backs: list = []
        p_beat, p_time, elapsed, head_end = 0, 0.0, 0.0, None
        score = 0.0
        for _step in range(max_steps):
            need = target_seconds - elapsed - (duration - p_time)
            # what the local stretch may absorb grows with the middle (or the head while there is none)
            middle = (elapsed - head_end) if len(jumps) >= 2 else elapsed
            # finish when what is left fits the absorbers; up to half a beat is accepted
            # (the final score charges what exceeds them: a larger local stretch)
            settle = max(capacity(len(jumps), middle), 0.55 * period) if jumps else 1e-3
            if abs(need) <= settle and p_time <= duration - tail_min + 1e-6:
                break
            # the song's last seconds are its real ending: never played through mid-way
            # and left again (a fake ending and a restart), only at the very end
            mask = (cands.a >= p_beat + seg_min) & (cands.a <= leave_last) & (cands.b <= last_start)
            if not jumps:
                mask &= cands.a >= seg_min
            a, b, cost, back = cands.a[mask], cands.b[mask], cands.cost[mask], cands.back_seconds[mask]
            # finishing jumps from the full matrix: land early enough for the real ending
            # and leave a residual the seams and a small local stretch can absorb
            rows = np.arange(p_beat + seg_min if jumps else max(seg_min, 1), leave_last + 1)
            if rows.size and last_start > 0:
                cap = np.maximum(capacity(len(jumps) + 1, middle + np.maximum(times[rows] - p_time, 0.0)),
                                 0.55 * period)[:, None]
            # (while more is left than the longest such jump spans, none can finish: skip the matrix)
            if rows.size and last_start > 0 and need - (times[rows[-1]] - times[0]) <= float(cap.max()):
                sub = cands.full[rows, : last_start + 1]
                left_all = need - (times[rows][:, None] - times[: last_start + 1][None, :])
                ok = np.isfinite(sub) & (np.abs(left_all) <= cap)
                if ok.any():
                    flat = np.flatnonzero(ok)
                    excess_all = np.abs(left_all.reshape(-1)[flat])
                    order = flat[np.argsort(SEAM_WEIGHT * sub.reshape(-1)[flat] + RESIDUAL_WEIGHT * excess_all / period)[:24]]
                    fa = rows[order // sub.shape[1]]
                    fb = order % sub.shape[1]
                    a = np.concatenate([a, fa])
                    b = np.concatenate([b, fb])
                    cost = np.concatenate([cost, cands.full[fa, fb]])
                    back = np.concatenate([back, times[fa] - times[fb]])
            if a.size == 0:
                break
            left = need - back
            # pacing: how far the jump's length is from an even share of what remains
            if need > 0:
                goal = need / max(1, round(need / typical))
            else:
                goal = need
            same_sign = np.sign(back) == np.sign(goal)
            pace = np.where(same_sign, np.log(np.maximum(np.abs(back), 1e-3) / max(abs(goal), 1e-3)) ** 2, 4.0)
            # finishing right after this jump must leave the real ending intact
            finishing = np.abs(left) <= np.maximum(capacity(len(jumps) + 1, middle + times[a] - p_time),
                                                   0.55 * period) + 1e-3
            tail_ok = times[b] <= duration - tail_min
            pace = np.where(finishing & ~tail_ok, pace + 3.0, pace)
            # a remainder too small for one more jump, or past the target, forces
            # detours (forward jumps, tiny loops): only finishing jumps may leave it
            min_back = 1.5 * min_lag * period
            settles = finishing & tail_ok
            if need > 0:
                # (a landing that is not the last must leave room to leave again before the ending)
                allowed = settles | ((left >= min_back) & (b + seg_min <= leave_last))
            else:
                # shortening: a further forward jump must remain possible after landing
                allowed = settles | ((left <= -min_back) & (back < 0) & (b + seg_min + min_lag <= last_start))
                pace = np.where(settles, pace, pace + 2.0)  # fewest seams
            if not allowed.any():
                break
            a, b, cost, back, left = a[allowed], b[allowed], cost[allowed], back[allowed], left[allowed]
            pace, finishing, tail_ok = pace[allowed], finishing[allowed], tail_ok[allowed]
            # prefer finishes that need little absorbing (seam shifts, local stretch)
            pace = np.where(finishing & tail_ok, pace + RESIDUAL_WEIGHT * np.abs(left) / period, pace)
            plays_sum = np.concatenate([[0.0], np.cumsum(plays)])
            # reuse: how often the material after the landing (about one typical segment)
            # and the segment that this jump ends have been played already
            ahead = np.minimum(b + typical_beats, n)
            reuse = REUSE_AHEAD * (plays_sum[ahead] - plays_sum[b]) / np.maximum(ahead - b, 1)
            reuse = reuse + REUSE_BEHIND * (plays_sum[a] - plays_sum[p_beat]) / np.maximum(a - p_beat, 1)
            lag_rep = np.zeros(len(b))
            for previous in backs:
                lag_rep += np.exp(-(((back - previous) / 1.0) ** 2))
            same = np.zeros(len(b))
            for prev_a, prev_b in jumps:
                same += (np.abs(a - prev_a) <= 2) & (np.abs(b - prev_b) <= 2)
            # even segment lengths keep any one repetition lag from dominating
            if jumps:
                seg_len = np.maximum(times[a] - p_time, 1e-3)
                pace = pace + SEGMENT_EVENNESS * np.log(seg_len / typical) ** 2
            # the real ending that a finishing jump leads into is a segment too
            tail_len = np.maximum(duration - times[b], 1e-3)
            long_tail = np.maximum(np.log(tail_len / max(typical, tail_min)), 0.0) ** 2
            pace = np.where(finishing & tail_ok, pace + SEGMENT_EVENNESS * long_tail, pace)
            # mood: steer the running loudness and brightness of the output (with the
            # segment this jump ends and the one it starts) towards the song's
            landing_end = np.minimum(b + typical_beats, n)
            acc = per_beat_sums @ plays + tail_sums
            seg = np.stack([c[a] - c[p_beat] + c[landing_end] - c[b] for c in cumulative])
            mood = mood_terms(acc[:, None] + seg)
            total = SEAM_WEIGHT * cost + 0.5 * pace + reuse + 1.0 * lag_rep + 3.0 * same + MOOD_STEP * mood
            if greedy:
                pick = int(np.argmin(total))
            else:
                finite = np.isfinite(total)
                temperature = SAMPLING_TEMPERATURE * (0.5, 1.0, 2.0)[restart % 3]
                weights = np.where(finite, np.exp(-(total - np.min(total)) / temperature), 0.0)
                pick = int(rng.choice(len(total), p=weights / weights.sum()))
            ja, jb = int(a[pick]), int(b[pick])
            # the plan is judged by its seams and its final shape; the other step terms only guide
            score += float(SEAM_WEIGHT * cost[pick] + 3.0 * same[pick] + 1.0 * lag_rep[pick])
            plays[p_beat:ja] += 1
            if head_end is None:
                head_end = float(times[ja])
            elapsed += float(times[ja]) - p_time
            jumps.append((ja, jb))
            backs.append(float(back[pick]))
            p_beat, p_time = jb, float(times[jb])
        plays[p_beat:] += 1
        residual = target_seconds - elapsed - (duration - p_time)
        middle = (elapsed - head_end) if len(jumps) >= 2 else elapsed
        excess = max(0.0, abs(residual) - capacity(len(jumps), middle))
        tail_bad = p_time > duration - tail_min + 1e-6
        score += 50.0 * excess + 0.3 * len(jumps) + (100.0 if tail_bad else 0.0)
        score += 2.0 * abs(residual) / period
        segments_s = [(0.0, float(times[jumps[0][0]]))] if jumps else [(0.0, duration)]
        for k, (ja, jb) in enumerate(jumps):
            end = float(times[jumps[k + 1][0]]) if k + 1 < len(jumps) else duration
            segments_s.append((float(times[jb]), end))
        if path_levels is not None:  # the path's own frames, gated as LUFS is
            score += _mood_penalty(*path_levels.drift(segments_s))
        else:
            score += mood_drift(plays)
        if extra > 0:
            score += REPETITION_WEIGHT * _modal_lag_share(segments_s, duration, target_seconds)
        inner = plays[n // 10: n - n // 10]
        score += BALANCE_WEIGHT * float(np.std(inner) / (np.mean(inner) + 1e-9))  # spread reuse over the song
        if best is None or score < best.score:
            best = PlannedPath(list(jumps), score, residual)
    if best is None:  # n_restarts < 1
        raise ValueError("n_restarts must be at least 1")
    if abs(best.residual_seconds) > 0.6 * period + capacity(len(best.jumps), target_seconds) and not _relaxed:
        relaxed = plan_path(analysis, target_seconds, seed=seed, target_cost=target_cost,
                            n_restarts=n_restarts, banned=banned, _relaxed=True)
        if abs(relaxed.residual_seconds) < abs(best.residual_seconds):
            return relaxed
    return best


def _modal_lag_share(segments: list, duration: float, target_seconds: float, *, bin_seconds: float = 0.3,
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
    starts = np.cumsum([0.0] + [end - start for start, end in segments[:-1]])
    totals: dict = {}
    for j in range(1, len(segments)):
        sj0, sj1 = segments[j]
        offset_j = starts[j] - sj0
        for i in range(j):
            si0, si1 = segments[i]
            lo, hi = max(si0, sj0), min(si1, sj1)
            if hi <= lo:
                continue
            lag = offset_j - (starts[i] - si0)
            if lag < min_lag_seconds:
                continue
            out_lo, out_hi = max(lo + offset_j, duration), hi + offset_j
            if out_hi > out_lo:
                key = int(round(lag / bin_seconds))
                totals[key] = totals.get(key, 0.0) + (out_hi - out_lo)
    if not totals:
        return 0.0
    best = max(sum(totals.get(key + d, 0.0) for d in (-1, 0, 1)) for key in totals)
    return float(min(best / past, 1.0))


def _plan_shortening(analysis: SongAnalysis, target_seconds: float, cands: _Candidates, *,
                     seg_min: int, last_start: int, capacity) -> Optional[PlannedPath]:
    """Best one- or two-jump shortening, by exhaustive search (None if none fits).

    One jump: every allowed pair of beats. Two jumps: every pair of the top
    candidate jumps with a middle segment of at least ``seg_min`` beats. The score
    is the seam cost plus the length residual the absorbers must take, with a
    small charge for the second seam.
    """
    times = analysis.beat_seconds
    duration = analysis.duration_seconds
    period = analysis.beat_period_seconds
    need = target_seconds - duration
    n = analysis.n_beats
    options = []
    # one jump
    a_idx, b_idx = np.nonzero(np.isfinite(cands.full))
    keep = (a_idx >= seg_min) & (b_idx <= last_start) & (b_idx > a_idx)
    a_idx, b_idx = a_idx[keep], b_idx[keep]
    if a_idx.size:
        left = need - (times[a_idx] - times[b_idx])
        cap = capacity(1, times[a_idx])
        score = (SEAM_WEIGHT * cands.full[a_idx, b_idx] + 4.0 * np.abs(left) / period
                 + 50.0 * np.maximum(np.abs(left) - cap, 0.0))
        k = int(np.argmin(score))
        options.append((float(score[k]), [(int(a_idx[k]), int(b_idx[k]))], float(left[k])))
    # two jumps, both forward, from the top candidates
    forward = (cands.b > cands.a) & (cands.a >= seg_min)
    a1, b1, c1, back1 = cands.a[forward], cands.b[forward], cands.cost[forward], cands.back_seconds[forward]
    second = forward & (cands.b <= last_start)
    a2, b2, c2, back2 = cands.a[second], cands.b[second], cands.cost[second], cands.back_seconds[second]
    if a1.size and a2.size and a1.size * a2.size <= 16_000_000:
        left = need - back1[:, None] - back2[None, :]
        valid = (a2[None, :] >= b1[:, None] + seg_min) & (np.abs(left) <= 0.6 * period + 0.5)
        if valid.any():
            middle = times[a2][None, :] - times[b1][:, None]
            varied = np.where(middle >= 30.0, middle, middle + times[a1][:, None])
            cap = capacity(2, varied)
            score = (SEAM_WEIGHT * (c1[:, None] + c2[None, :]) + 4.0 * np.abs(left) / period
                     + 50.0 * np.maximum(np.abs(left) - cap, 0.0) + 0.5)
            score = np.where(valid, score, np.inf)
            flat = int(np.argmin(score))
            i, j = divmod(flat, a2.size)
            options.append((float(score[i, j]), [(int(a1[i]), int(b1[i])), (int(a2[j]), int(b2[j]))],
                            float(left[i, j])))
    if not options:
        return None
    score, jumps, residual = min(options, key=lambda option: option[0])
    if not np.isfinite(score) or abs(residual) > 0.6 * period + 0.5:
        return None
    return PlannedPath(jumps, score, residual)


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------

def _normalised_xcorr(reference: np.ndarray, signal: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of ``reference`` against each offset of ``signal``."""
    n = reference.size
    ref = reference - reference.mean()
    size = 1 << int(np.ceil(np.log2(signal.size + n)))
    raw = np.fft.irfft(np.fft.rfft(signal, size) * np.conj(np.fft.rfft(ref, size)), size)[: signal.size - n + 1]
    energy = np.cumsum(np.concatenate([[0.0], signal.astype(np.float64) ** 2]))
    sums = np.cumsum(np.concatenate([[0.0], signal.astype(np.float64)]))
    window_energy = energy[n:] - energy[:-n] - (sums[n:] - sums[:-n]) ** 2 / n
    denom = np.sqrt(np.maximum(window_energy, 1e-12) * max(float(np.sum(ref ** 2)), 1e-12))
    return raw / denom


def _crossfade_gains(n: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """Fade-out and fade-in gains with ``g_out^2 + g_in^2 + 2 rho g_out g_in = 1``."""
    u = (np.arange(n) + 0.5) / n
    u = 0.5 - 0.5 * np.cos(np.pi * u)  # smooth start and end
    v = 1.0 - u
    rho = float(np.clip(rho, 0.0, 1.0))
    k = 1.0 / np.sqrt(u * u + v * v + 2.0 * rho * u * v)
    return (v * k).astype(np.float32), (u * k).astype(np.float32)


def _crossfade(seg_a: np.ndarray, seg_b: np.ndarray, *, full_scale: bool) -> np.ndarray:
    """Crossfade ``seg_a`` out and ``seg_b`` in [shape=(n, channels)], gains by their correlation.

    The gains keep the power (``_crossfade_gains``); where the mix would pass the
    passages' own peak, or full scale in a full-scale master, they are blended
    towards linear (equal gain never passes the louder passage).
    """
    rho = float(np.clip(np.sum(seg_a * seg_b) / (np.sqrt(np.sum(seg_a ** 2) * np.sum(seg_b ** 2)) + 1e-12), 0, 1))
    g_out, g_in = _crossfade_gains(seg_a.shape[0], rho)
    mixed = seg_a * g_out[:, None] + seg_b * g_in[:, None]
    limit = max(float(np.max(np.abs(seg_a))), float(np.max(np.abs(seg_b))))
    limit = min(limit, 1.0) if full_scale else limit
    if float(np.max(np.abs(mixed))) > limit:
        linear_out, linear_in = _crossfade_gains(seg_a.shape[0], 1.0)
        for blend in (0.75, 0.5, 0.25, 0.0):
            go = blend * g_out + (1 - blend) * linear_out
            gi = blend * g_in + (1 - blend) * linear_in
            mixed = seg_a * go[:, None] + seg_b * gi[:, None]
            if float(np.max(np.abs(mixed))) <= limit:
                break
    return mixed.astype(np.float32)


@dataclass
class _Piece:
    """A source segment ready to splice: ``audio[start:end]`` is its nominal extent."""

    audio: np.ndarray   # (n, channels), with margins around [start, end)
    mono: np.ndarray
    start: int
    end: int
    source_offset: int = 0   # source sample of audio[0]

    def source_seconds(self, index: int, sample_rate: int) -> float:
        return (self.source_offset + index) / float(sample_rate)


def _make_piece(samples: np.ndarray, mono: np.ndarray, start: int, end: int, *, margin: int) -> _Piece:
    lo = max(0, start - margin)
    hi = min(samples.shape[0], end + margin)
    return _Piece(samples[lo:hi], mono[lo:hi], start - lo, end - lo, lo)


def _align(piece_a: "_Piece", piece_b: "_Piece", *, window: int, reach: int, search: int, centre: int = 0):
    """Correlation of A's natural continuation with B at each offset x of B's start.

    Returns ``(xc, offsets, x0)``: the normalised correlation, the offsets (samples)
    it is given at, and ``x0``, the best offset within ``centre +- search`` (the
    groove alignment). ``xc`` and ``offsets`` are None when A is silent there.
    """
    ref = piece_a.mono[piece_a.end - window // 2: piece_a.end + window]
    lo = max(0, piece_b.start - window // 2 - reach)
    hi = min(piece_b.mono.size, piece_b.start + window + reach)
    if ref.size != window // 2 + window or np.std(ref) <= 1e-6 or hi - lo <= ref.size:
        return None, None, centre
    xc = _normalised_xcorr(ref, piece_b.mono[lo:hi])
    offsets = np.arange(xc.size) + lo - (piece_b.start - window // 2)
    in_search = np.abs(offsets - centre) <= search
    x0 = int(offsets[in_search][np.argmax(xc[in_search])]) if in_search.any() else centre
    return xc, offsets, x0


_MEL_CACHE: dict = {}


def _local_log_mel(signal: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """40-band log-mel (dB) of each row of ``signal`` [shape=(n, length)] -> (n, 40)."""
    n_fft = 1 << int(np.ceil(np.log2(signal.shape[1])))
    key = (sample_rate, n_fft)
    if key not in _MEL_CACHE:
        from harmonizer_cli.core.analysis import mel_filterbank

        # up to 16 kHz: above it lossy sources hold only codec noise
        _MEL_CACHE[key] = mel_filterbank(sample_rate=sample_rate, n_fft=n_fft, n_mels=40, fmin=40.0,
                                         fmax=min(16000.0, sample_rate / 2.0))
    window = np.hanning(signal.shape[1]).astype(np.float32)
    spectrum = np.abs(np.fft.rfft(signal * window, n_fft, axis=1)) ** 2
    return 10.0 * np.log10(spectrum @ _MEL_CACHE[key].T + 1e-10)


def _step_crest(signal: np.ndarray, at: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """Largest sample step within +-5 ms of each point over the RMS there [shape=(len(at),)].

    ``signal`` is mono or (n, channels) (largest over channels); the RMS is floored
    at -80 dBFS so that near-silence reads 0. A hard splice is a step.
    """
    half = max(1, int(0.005 * sample_rate))
    region = signal[np.asarray(at)[:, None] + np.arange(-half, half + 1)].astype(np.float64)
    if region.ndim == 2:
        region = region[:, :, None]
    step = np.max(np.abs(np.diff(region, axis=1)), axis=1)
    rms = np.sqrt(np.mean(region ** 2, axis=1)) + 1e-4
    return np.max(step / rms, axis=1)


def _spectral_jump(before: np.ndarray, after: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """Mean absolute difference (dB) of the 40-band log-mel spectra of paired windows.

    ``before`` and ``after`` are [shape=(n, length)]; levels are floored 80 dB below
    the louder window's loudest band. A splice between unrelated places jumps.
    """
    mel_before = _local_log_mel(before, sample_rate=sample_rate)
    mel_after = _local_log_mel(after, sample_rate=sample_rate)
    floor = np.maximum(mel_before.max(axis=1), mel_after.max(axis=1))[:, None] - 80.0
    return np.mean(np.abs(np.maximum(mel_before, floor) - np.maximum(mel_after, floor)), axis=1)


def _quiet_cut_offset(piece_a: "_Piece", piece_b: "_Piece", x0: int, *, period_samples: int,
                      sample_rate: int) -> tuple[int, float]:
    """Offset (samples, from the beat) of the least exposed cut point near the beat.

    Candidates every 5 ms from half a beat before the beat to 30 % after; each is
    scored by the spectral jump between the 50 ms of A before it and the 50 ms of B
    after it (dB, as a listener or a novelty detector hears a splice) plus the
    sample-step crest of A and B within +-5 ms of it (transients expose a cut).
    """
    step = max(1, int(0.005 * sample_rate))
    length = int(0.05 * sample_rate)
    deltas = np.arange(-int(0.5 * period_samples), int(0.3 * period_samples) + 1, step)
    a_at = piece_a.end + deltas
    b_at = piece_b.start + x0 + deltas
    ok = (a_at - length >= 0) & (a_at + length <= piece_a.mono.size) & \
         (b_at - length >= 0) & (b_at + length <= piece_b.mono.size)
    if not ok.any():
        return 0, 0.0
    deltas, a_at, b_at = deltas[ok], a_at[ok], b_at[ok]
    idx = np.arange(length)
    novelty = _spectral_jump(piece_a.mono[a_at[:, None] - length + idx], piece_b.mono[b_at[:, None] + idx],
                             sample_rate=sample_rate)
    crest_a = _step_crest(piece_a.mono, a_at, sample_rate=sample_rate)
    crest_b = _step_crest(piece_b.mono, b_at, sample_rate=sample_rate)
    exposure = novelty / 4.0 + np.maximum(crest_a, crest_b) / 3.0
    exposure = exposure + 0.1 * np.abs(deltas) / max(1, period_samples)  # ties: stay near the beat
    best = int(np.argmin(exposure))
    return int(deltas[best]), float(novelty[best])


def _exposure(samples: np.ndarray, mono: np.ndarray, *, sample_rate: int, points: np.ndarray) -> np.ndarray:
    """How exposed a cut at each point would be [shape=(n_points, 2)]: crest and novelty.

    The two seam measures of the benchmark (``metrics.seam_crest`` and
    ``metrics.seam_novelty``): the largest sample step within +-5 ms over the local
    RMS (largest over channels), and the mean absolute difference of the 40-band
    log-mel spectra (dB, 80 dB range) of the 50 ms before and after. NaN where a
    point is too close to an edge.
    """
    length = int(0.05 * sample_rate)
    half = max(1, int(0.005 * sample_rate))
    at = np.round(np.asarray(points, dtype=np.float64) * sample_rate).astype(np.int64)
    values = np.full((at.size, 2), np.nan)
    ok = (at - max(length, half) >= 0) & (at + max(length, half + 1) <= mono.size)
    if not ok.any():
        return values
    at_ok = at[ok]
    values[ok, 0] = _step_crest(samples, at_ok, sample_rate=sample_rate)
    idx = np.arange(length)
    values[ok, 1] = _spectral_jump(mono[at_ok[:, None] - length + idx], mono[at_ok[:, None] + idx],
                                   sample_rate=sample_rate)
    return values


def _exposure_limits(audio: Audio, song_mono: np.ndarray, analysis: SongAnalysis) -> np.ndarray:
    """How exposed the song's own moments are: a high percentile of crest and novelty [2].

    Measured every 50 ms (at most 1000 points, evenly spread): a seam should not
    stand out among the song's own moments (``EXPOSURE_PERCENTILE``, the 80th).
    (At the analysis beats themselves the measures read high: the beats sit on the
    onsets. Over all moments the 90th percentile is, on 10 of the 12 songs of
    ../shared/music/songs, at or below the 95th percentile at librosa's beats, the
    benchmark's reference, and within 6 % of it on the other two; the 80th leaves a
    margin, which quiet orchestral music needs.)
    """
    duration = analysis.duration_seconds
    step = max(0.05, duration / 1000.0)
    points = np.arange(0.2, duration - 0.2, step)
    values = _exposure(audio.samples, song_mono, sample_rate=audio.sample_rate, points=points)
    limits = np.array([np.nanpercentile(values[:, k], EXPOSURE_PERCENTILE) if np.isfinite(values[:, k]).any() else np.inf
                       for k in range(2)])
    return np.maximum(limits, 1e-6)


def _mono_mix(samples: np.ndarray) -> np.ndarray:
    """Mean of the channels of ``samples`` [shape=(n, channels)] as float32 (fast for few channels)."""
    mono = samples[:, 0].astype(np.float32)
    for channel in range(1, samples.shape[1]):
        mono += samples[:, channel]
    return mono / np.float32(samples.shape[1])


def _wsola(samples: np.ndarray, *, start: int, end: int, new_length: int, sample_rate: int) -> np.ndarray:
    """Time-stretch ``samples[start:end]`` to ``new_length`` samples, pitch unchanged (WSOLA).

    Waveform-similarity overlap-add at the original rate over all channels at
    once (the same offsets for every channel): 50 ms Hann frames at 50 %
    overlap on the output; each frame is read from the input near its nominal
    (linearly mapped) position, at the offset within +-7 ms whose waveform best
    continues the previous frame (normalised cross-correlation of the mono
    mix). The first frames are read at ``start`` and the last ones at ``end``
    exactly, so the result joins ``samples[:start]`` and ``samples[end:]``
    without a seam: its first and last 25 ms equal the input's (the other
    frames are at most 25 ms apart, evenly spaced).

    Parameters
    ----------
    samples : np.ndarray [shape=(n_samples, n_channels)]
        Needs 32 ms of material before ``start`` and 25 ms after ``end``.
    start, end : int
        The region to stretch, in samples.
    new_length : int
        Its length after stretching, in samples (at least 200 ms).
    sample_rate : int

    Returns
    -------
    np.ndarray [shape=(new_length, n_channels), dtype=float32]
    """
    hop = max(8, int(round(0.025 * sample_rate)))
    width = 2 * hop
    tolerance = max(2, int(round(0.007 * sample_rate)))
    length_in, length_out = end - start, new_length
    if start - hop - tolerance < 0 or end + hop > samples.shape[0] or length_out < 4 * hop or length_in < 4 * hop:
        raise ValueError("region too short or too close to the edges for WSOLA")
    # the mono mix of the region and its surroundings only (indices shifted by `base`)
    base = start - hop - tolerance
    stop = min(samples.shape[0], end + width + tolerance)
    mono = _mono_mix(samples[base:stop]).astype(np.float64)
    ratio = length_in / float(length_out)
    bias = 1e-3 * np.abs(np.arange(2 * tolerance + 1) - tolerance) / tolerance
    frames = [(-hop, start - hop), (0, start)]  # (output position, input position)
    pinned_end = [(length_out - width, end - width), (length_out - hop, end - hop)]
    # free frames from hop to length_out - 3 hop, evenly at most one hop apart: the
    # first and last hop of the output are then made of pinned frames only
    n_steps = max(1, int(np.ceil((length_out - 4 * hop) / hop)))
    positions = np.unique(np.round(hop + np.arange(n_steps + 1) * ((length_out - 4 * hop) / n_steps)).astype(int))
    for position in positions:
        position = int(position)
        nominal = start + int(round(position * ratio))
        lo, hi = nominal - tolerance, nominal + tolerance + width
        previous_out, previous_in = frames[-1]
        natural = previous_in + (position - previous_out) - base
        score = _normalised_xcorr(mono[natural:natural + width], mono[lo - base:hi - base])
        if position == positions[-1]:  # the last free frame also leads into the pinned end
            target = end - (length_out - position) - base
            score = score + _normalised_xcorr(mono[target:target + width], mono[lo - base:hi - base])
        score = np.nan_to_num(score, nan=-2.0) - bias  # ties (silence): stay on the nominal position
        frames.append((position, lo + int(np.argmax(score))))
    frames += pinned_end
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(width) / width))  # periodic Hann
    acc = np.zeros((length_out + 2 * width, samples.shape[1]))
    weight = np.zeros(length_out + 2 * width)
    frame_power = np.zeros(length_out + 2 * width)  # window-weighted power of the frames read
    for out_at, in_at in frames:
        chunk = samples[in_at:in_at + width].astype(np.float64)
        acc[out_at + width:out_at + 2 * width] += window[:, None] * chunk
        weight[out_at + width:out_at + 2 * width] += window
        frame_power[out_at + width:out_at + 2 * width] += window * np.mean(chunk ** 2, axis=1)
    norm = np.maximum(weight[width:width + length_out], 1e-9)
    out = acc[width:width + length_out] / norm[:, None]
    # keep the level: overlapping frames that do not add coherently (noise, reverb,
    # dense mixes) lose up to 3 dB; a smooth gain restores the frames' own power
    # (1 where they add coherently), never past the region's peak, and is 1 in the
    # first and last hop, which are the input's own samples
    def smooth(values: np.ndarray) -> np.ndarray:
        cum = np.concatenate([[0.0], np.cumsum(values)])
        lo = np.clip(np.arange(values.size) - hop // 2, 0, values.size)
        hi = np.clip(np.arange(values.size) + hop // 2 + 1, 0, values.size)
        return (cum[hi] - cum[lo]) / (hi - lo)

    wanted = smooth(frame_power[width:width + length_out] / norm)
    got = smooth(np.mean(out ** 2, axis=1))
    gain = np.sqrt(np.clip(wanted / np.maximum(got, 1e-20), 1.0, 2.0))
    gain = np.where(wanted > 1e-12, gain, 1.0)
    taper = np.clip((np.minimum(np.arange(length_out), length_out - 1 - np.arange(length_out)) - hop) / hop, 0.0, 1.0)
    gain = 1.0 + (gain - 1.0) * taper
    peak = float(np.max(np.abs(samples[start:end])))
    peak = min(peak, 1.0) if peak <= FULL_SCALE_OVERS else peak  # no new overs in a full-scale master
    loudest = np.max(np.abs(out), axis=1)
    gain = np.maximum(np.minimum(gain, peak / np.maximum(loudest, 1e-12)), 1.0)  # the guard only lowers a boost
    return (out * gain[:, None]).astype(np.float32)


def _steady_region(out: np.ndarray, *, sample_rate: int, length: int, lo: int, hi: int,
                   avoid: list) -> Optional[int]:
    """Start (sample) of the ``length``-sample window within ``[lo, hi)`` with the fewest onsets.

    Onsets are the positive spectral flux (log magnitude, 46 ms frames at 23 ms
    hop on the mono mix at about 11 kHz); windows that contain a seam (``avoid``,
    samples, +-200 ms) are excluded. None when no window fits.
    """
    if hi - lo < length:
        return None
    step = max(1, int(round(sample_rate / 11025)))  # about 11 kHz is enough to see onsets
    mono = _mono_mix(out[lo:hi:step])
    frame = 1 << int(np.ceil(np.log2(max(64, 0.046 * sample_rate / step))))
    hop = frame // 2
    if mono.size < 2 * frame:
        return lo
    n_frames = (mono.size - frame) // hop + 1
    index = np.arange(frame)[None, :] + hop * np.arange(n_frames)[:, None]
    magnitude = np.abs(np.fft.rfft(mono[index] * np.hanning(frame).astype(np.float32), axis=1))
    logmag = np.log1p(100.0 * magnitude / (float(magnitude.max()) + 1e-12))
    flux = np.concatenate([[0.0], np.sum(np.maximum(np.diff(logmag, axis=0), 0.0), axis=1)])
    frame_samples = hop * step
    span = max(1, int(np.ceil(length / frame_samples)))
    if span > n_frames:
        return lo
    sums = np.cumsum(np.concatenate([[0.0], flux]))
    cost = sums[span:] - sums[:-span]  # window starting at frame i
    starts = lo + np.arange(cost.size) * frame_samples
    fits = starts + length <= hi
    guard = int(0.2 * sample_rate)
    for seam in avoid:
        fits &= ~((starts - guard < seam) & (starts + length + guard > seam))
    if not fits.any():
        fits = starts + length <= hi  # every window has a seam: accept one
        if not fits.any():
            return None
    cost = np.where(fits, cost, np.inf)
    return int(starts[int(np.argmin(cost))])


def _stretch_to_length(out: np.ndarray, n_target: int, *, sample_rate: int, seams: list,
                       head_keep_seconds: float, tail_keep_seconds: float) -> tuple[np.ndarray, Optional[dict]]:
    """Make ``out`` exactly ``n_target`` samples long by a local, pitch-preserving stretch.

    The difference goes to one region (sized for a 2 % stretch, at least 2 s,
    at most 3 %) where the music is steadiest, away from the seams, the first
    ``head_keep_seconds`` and the last ``tail_keep_seconds``; it is time-stretched
    by WSOLA. Returns the new samples and ``{"factor", "region_seconds"}`` (output
    times of the stretched region; factor > 1 lengthens), or None when nothing
    was stretched.
    """
    difference = n_target - out.shape[0]
    if difference == 0:
        return out, None
    lo = int(round(head_keep_seconds * sample_rate))
    hi = out.shape[0] - int(round(tail_keep_seconds * sample_rate))
    length = int(max(2.0 * sample_rate, abs(difference) / PREFERRED_STRETCH))
    length = min(length, hi - lo)
    if length <= 0 or abs(difference) > MAX_STRETCH * length:
        # no room between the protected head and ending: use what lies between 1 s and the last 2 s
        lo, hi = int(1.0 * sample_rate), out.shape[0] - int(2.0 * sample_rate)
        length = min(int(max(2.0 * sample_rate, abs(difference) / PREFERRED_STRETCH)), hi - lo)
        if length <= 0 or abs(difference) > MAX_STRETCH * length:
            raise AudioError(f"cannot recompose to {n_target / sample_rate:.2f} s: the best plan is off by "
                             f"{difference / sample_rate:.3f} s, too much for a local stretch (the target may be too "
                             "short to keep the song's beginning and real ending; try another length)")
    avoid = [int(round(seconds * sample_rate)) for seconds in seams]
    start = _steady_region(out, sample_rate=sample_rate, length=length, lo=lo, hi=hi, avoid=avoid)
    if start is None:
        raise AudioError("cannot reach the exact length (no region to absorb the residual)")
    end = start + length
    stretched = _wsola(out, start=start, end=end, new_length=length + difference, sample_rate=sample_rate)
    result = np.concatenate([out[:start], stretched, out[end:]], axis=0)
    info = {"factor": round((length + difference) / float(length), 6),
            "region_seconds": [round(start / sample_rate, 4), round((start + length + difference) / sample_rate, 4)]}
    return result, info


@dataclass
class _Spliced:
    """A path rendered with its seams, before the local stretch that makes the length exact."""

    out: np.ndarray
    seams: list      # output seconds of each seam (one per jump)
    segments: list
    n_target: int
    head_keep: float
    tail_keep: float
    stretch: Optional[dict] = None
    windows: list = field(default_factory=list)  # (output around a seam, its output start), unassembled


def _finish_length(spliced: "_Spliced", sample_rate: int) -> tuple[np.ndarray, list, list, Optional[dict]]:
    """The exact length: a local, pitch-preserving stretch of the steadiest region
    between the untouched head and the real ending (the tail stays sample-exact)."""
    out, seams, segments = spliced.out, spliced.seams, spliced.segments
    n_before = out.shape[0]
    out, stretch = _stretch_to_length(out, spliced.n_target, sample_rate=sample_rate, seams=seams,
                                      head_keep_seconds=spliced.head_keep, tail_keep_seconds=spliced.tail_keep)
    if stretch is not None:
        region_start, region_end = stretch["region_seconds"]
        old_end = region_start + (region_end - region_start) / stretch["factor"]

        def moved(seconds: float) -> float:
            if seconds <= region_start:
                return seconds
            if seconds >= old_end:
                return round(seconds + (out.shape[0] - n_before) / sample_rate, 4)
            return round(region_start + (seconds - region_start) * stretch["factor"], 4)

        seams = [moved(seconds) for seconds in seams]
        for segment in segments:
            segment["output_start"] = moved(segment["output_start"])
    return out, seams, segments, stretch


def _splice(audio: Audio, analysis: SongAnalysis, plan: PlannedPath, target_seconds: float, *,
            song_mono: Optional[np.ndarray] = None, assemble: bool = True) -> _Spliced:
    """Render ``plan`` from the original samples: every seam aligned, placed and crossfaded.

    ``song_mono`` is the mono mix of ``audio.samples`` (computed when not given).
    The result is within the seams' and the local stretch's reach of the target;
    ``_finish_length`` makes it exact. With ``assemble=False`` the output is not put
    together (``out`` is None); ``windows`` holds the output around each seam, exactly
    as it would be, for the seam audit.
    """
    samples = audio.samples
    if song_mono is None:
        song_mono = _mono_mix(samples)
    sample_rate = audio.sample_rate
    n_source = samples.shape[0]
    n_target = int(round(target_seconds * sample_rate))
    times = analysis.beat_seconds
    to_sample = lambda seconds: int(round(seconds * sample_rate))  # noqa: E731
    bounds = [0]
    for a, b in plan.jumps:
        bounds += [to_sample(times[a]), to_sample(times[b])]
    bounds.append(n_source)
    spans = [(bounds[2 * k], bounds[2 * k + 1]) for k in range(len(bounds) // 2)]
    tail_keep = min(TAIL_MIN_SECONDS, 0.3 * analysis.duration_seconds)
    head_keep = min(HEAD_KEEP_SECONDS, 0.25 * target_seconds)
    if not plan.jumps:  # the target equals the length within a ms
        segments = [{"source_start": 0.0, "source_end": round(n_source / sample_rate, 4), "output_start": 0.0}]
        return _Spliced(samples.copy(), [], segments, n_target, head_keep, tail_keep)

    n_seams = len(spans) - 1
    planned = sum(end - start for start, end in spans)
    residual = n_target - planned
    # without a pulse there is no groove to keep: a seam may move by up to half a grid unit
    seam_shift = NO_PULSE_SEAM_SHIFT_SECONDS if analysis.fallback else MAX_SEAM_SHIFT_SECONDS
    max_shift = int(round(seam_shift * sample_rate))
    # the seams absorb what they can (each moves by at most max_shift); a local
    # pitch-preserving stretch of one steady region takes the rest after rendering
    seam_budget = int(0.6 * n_seams * max_shift)
    seam_part = int(np.clip(residual, -seam_budget, seam_budget))
    n_render = n_target - (residual - seam_part)
    fallback = analysis.fallback is not None
    fade = int(round((NO_PULSE_CROSSFADE_SECONDS if fallback else CROSSFADE_SECONDS) * sample_rate))
    fades = [fade] * n_seams
    long_fade = int(round(max(seconds for _, seconds in LONG_FADES) * sample_rate))
    search = int(round(0.015 * sample_rate))
    margin = (max(fade, long_fade) + search + 3 * max_shift + int(0.12 * sample_rate)
              + int(0.5 * analysis.beat_period_seconds * sample_rate))
    pieces = [_make_piece(samples, song_mono, start, end, margin=margin) for start, end in spans]
    nominal = [piece.end - piece.start for piece in pieces]
    # a seam never passes full scale where the song is a full-scale master (decoded
    # lossy files overshoot 0 dBFS by a few per cent; 16/24-bit output clips those
    # overs, and a clipped crossfade is a broadband click); float sources with
    # larger peaks keep the passages' own peaks as the limit
    full_scale = float(np.max(np.abs(samples))) <= FULL_SCALE_OVERS

    # groove alignment of every seam first (waveform correlation of A's natural
    # continuation with B, within +-15 ms of the beat grid), then spread the length
    # residual over the seams, each snapped to a correlation peak near its share
    window = int(0.030 * sample_rate)
    reach = search + 2 * max_shift + int(0.003 * sample_rate)
    alignments = [_align(pieces[k], pieces[k + 1], window=window, reach=reach, search=search)
                  for k in range(n_seams)]
    # move each cut (in both A and B, so the musical alignment is kept) to the point near
    # the beat where the splice is least exposed: a steady spot where the sound before
    # the cut in A and after it in B match
    # (without a pulse the grid unit stands for the beat, and the cut is judged where B
    # will start once the seams' share of the length residual is applied)
    expected_shift = int(np.clip(seam_part / max(1, n_seams), -max_shift, max_shift)) if fallback else 0
    period_samples = int(round(analysis.beat_period_seconds * sample_rate))
    moved = False
    for k in range(n_seams):
        piece_a, piece_b = pieces[k], pieces[k + 1]
        delta, novelty = _quiet_cut_offset(piece_a, piece_b, alignments[k][2] - expected_shift,
                                           period_samples=period_samples, sample_rate=sample_rate)
        # where the two sides still differ in spectrum, a longer crossfade makes the
        # change gradual (the cut points sit between onsets, so nothing is smeared)
        for limit, seconds in LONG_FADES:
            if novelty > limit:
                fades[k] = max(fades[k], int(round(seconds * sample_rate)))
        if delta:
            piece_a.end += delta
            piece_b.start += delta
            moved = True
    if moved:
        nominal = [piece.end - piece.start for piece in pieces]
        # refine around the alignment the cut was chosen with (the groove offset
        # found before the move), not around the beat grid
        alignments = [_align(pieces[k], pieces[k + 1], window=window, reach=reach, search=search // 4,
                             centre=alignments[k][2]) for k in range(n_seams)]

    out_blocks: list = []
    windows: list = []
    reach_out = int(0.1 * sample_rate)  # beyond the 50 ms either side that the audit measures
    out_len = 0
    seams: list = []
    segments: list = []
    cursor = pieces[0].start  # position in the current piece where output continues
    current = 0
    source_start = pieces[0].source_seconds(pieces[0].start, sample_rate)
    for k in range(n_seams):
        piece_a, piece_b = pieces[k], pieces[k + 1]
        cut_a = piece_a.end
        xc, offsets, x0 = alignments[k]
        # output length if A is cut at cut_a and every remaining seam is groove-aligned
        projected = out_len + (cut_a - cursor) + sum(nominal[k + 1:]) - sum(al[2] for al in alignments[k:])
        seams_left = n_seams - k
        wanted = n_render - projected  # > 0: the output must get longer
        shift = int(np.clip(wanted / seams_left, -max_shift, max_shift))
        desired = x0 - shift  # B continues at its nominal start + x: output change is -x
        if xc is not None:
            tol = int(0.002 * sample_rate) if seams_left > 1 else int(0.0005 * sample_rate)
            near = np.abs(offsets - desired) <= tol
            x = int(offsets[near][np.argmax(xc[near])]) if near.any() else desired
        else:
            x = desired
        start_b = piece_b.start + x
        fade = fades[k]
        start_b = int(np.clip(start_b, fade // 2, piece_b.audio.shape[0] - 1))
        half = fade // 2
        # A up to the crossfade, then the crossfade
        out_blocks.append(piece_a.audio[cursor:cut_a - half])
        seg_a = piece_a.audio[cut_a - half: cut_a - half + fade]
        seg_b = piece_b.audio[start_b - half: start_b - half + fade]
        if seg_a.shape[0] == fade and seg_b.shape[0] == fade:
            out_blocks.append(_crossfade(seg_a, seg_b, full_scale=full_scale))
        else:  # at the very edge of the audio: hard cut (not expected)
            out_blocks.append(piece_b.audio[start_b - half: start_b - half + fade])
        if not assemble:  # the output around the seam: A before the fade, the fade, B after it
            before = piece_a.audio[max(cursor, cut_a - half - reach_out):cut_a - half]
            after = piece_b.audio[start_b - half + fade:start_b - half + fade + reach_out]
            fade_at = out_len + (cut_a - half - cursor)
            windows.append((np.concatenate([before, out_blocks[-1], after], axis=0), fade_at - before.shape[0]))
        out_len += (cut_a - half - cursor) + fade
        seam_time = (out_len - fade + half) / sample_rate
        segments.append({"source_start": round(source_start, 4),
                         "source_end": round(piece_a.source_seconds(cut_a, sample_rate), 4)})
        seams.append(round(seam_time, 4))
        cursor = start_b - half + fade
        current = k + 1
        source_start = piece_b.source_seconds(start_b, sample_rate)
    last = pieces[current]
    out_blocks.append(last.audio[cursor:])
    out = np.concatenate(out_blocks, axis=0) if assemble else None
    segments.append({"source_start": round(source_start, 4), "source_end": round(n_source / sample_rate, 4)})
    starts = [0.0] + seams
    for segment, start in zip(segments, starts):
        segment["output_start"] = round(start, 4)
    return _Spliced(out, seams, segments, n_target, head_keep, tail_keep, windows=windows)


# ---------------------------------------------------------------------------
# Engines
# ---------------------------------------------------------------------------

def _extend_neural(audio: Audio, mono: np.ndarray, target_seconds: float, predictor,
                   on_progress: ProgressFn) -> np.ndarray:
    n_target = int(round(target_seconds * audio.sample_rate))
    if n_target <= audio.n_samples:
        raise ConfigError("the neural engine only extends: the target must be longer than the song "
                          "(use the guided engine to shorten)")
    features = np.asarray(predictor.frame_features(mono), dtype=np.float32)
    n_in, n_out = int(predictor.n_input_frames), int(predictor.n_output_frames)
    frame_seconds = float(getattr(predictor, "frame_seconds", 1.0))
    if features.shape[0] < n_in:
        raise AudioError(f"too short for the neural engine (needs {n_in * frame_seconds:.0f} s of context)")
    # the last frame is zero-padded by framing: use whole frames only as context
    whole = int(mono.size // int(round(frame_seconds * 22050)))
    history = features[:max(whole, n_in)]
    missing = target_seconds - audio.duration_seconds
    n_frames_needed = int(np.ceil(missing / frame_seconds))
    generated = []
    total = 0
    while total < n_frames_needed:
        context = history[-n_in:][None]
        predicted = np.asarray(predictor.predict(context), dtype=np.float32)[0]
        generated.append(predicted)
        history = np.concatenate([history, predicted], axis=0)
        total += predicted.shape[0]
        if on_progress:
            on_progress(min(total, n_frames_needed), n_frames_needed)
    frames = np.concatenate(generated, axis=0)[:n_frames_needed]
    rendered = np.asarray(predictor.render_frames(frames), dtype=np.float32).reshape(-1)
    rendered = resample(rendered, from_rate=22050, to_rate=audio.sample_rate)
    rendered = np.repeat(rendered[:, None], audio.n_channels, axis=1)
    need = n_target - audio.n_samples
    if rendered.shape[0] < need:
        rendered = np.concatenate([rendered, np.zeros((need - rendered.shape[0], audio.n_channels), np.float32)])
    peak = float(np.max(np.abs(rendered))) if rendered.size else 0.0
    if peak > 1.0:
        rendered = rendered / peak
    return np.concatenate([audio.samples, rendered[:need]], axis=0)


def extend_audio(
    audio: Audio,
    *,
    target_seconds: float,
    engine: str = "guided",
    predictor=None,
    seed: int = 0,
    path: str | None = None,
    on_progress: ProgressFn = None,
) -> ExtensionResult:
    """Extend or shorten ``audio`` to ``target_seconds``.

    Parameters
    ----------
    audio : Audio
        The original samples (their rate and channel count are kept).
    target_seconds : float
        Requested output length in seconds (> 0).
    engine : {"guided", "neural"}
        ``guided`` recombines the song's beats (default); ``neural`` appends the
        predictor's frames (the seed paper's method; needs ``predictor``).
    predictor : FramePredictor, optional
        Guides the ``guided`` engine (target cost); required by ``neural``.
    seed : int
        Same seed and input give the same output.
    path : str, optional
        Named in error messages.
    on_progress : callable(done, total), optional

    Returns
    -------
    ExtensionResult

    Raises
    ------
    AudioError
        Too short to analyse (< 6 s or < 8 beats) or digital silence.
    ConfigError
        Unknown engine, non-positive target, or the neural engine asked to shorten.
    ModelError
        ``neural`` without a predictor.
    """
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r} (choose from {', '.join(ENGINES)})")
    if not np.isfinite(target_seconds) or target_seconds <= 0:
        raise ConfigError(f"the target duration must be positive, got {target_seconds}")
    timings: dict = {}
    progress = on_progress or (lambda done, total: None)
    clock = time.perf_counter()
    mono = to_model_view(audio)
    if engine == "neural":
        if predictor is None:
            raise ModelError("no model available: the neural engine needs a trained model (--model PATH)")
        if float(np.max(np.abs(mono))) < 1e-4:
            raise AudioError("is digital silence: nothing to extend", path=path)
        out = _extend_neural(audio, mono, target_seconds, predictor, on_progress)
        timings["render"] = round(time.perf_counter() - clock, 4)
        length = round(audio.duration_seconds, 4)
        segments = [{"source_start": 0.0, "source_end": length, "output_start": 0.0},
                    {"source_start": None, "source_end": None, "output_start": length, "generated": True}]
        return ExtensionResult(out, audio.sample_rate, [length], segments, "neural",
                               getattr(predictor, "name", "model"), None, None, None, None, timings)
    progress(0, 3)
    analysis = analyze_song(mono, path=path)
    timings["analysis"] = round(time.perf_counter() - clock, 4)
    progress(1, 3)
    clock = time.perf_counter()
    guidance = _TargetCost(predictor, mono) if predictor is not None else None
    song_mono = _mono_mix(audio.samples)
    limits = None
    banned: set = set()
    best = None
    plan_seconds = 0.0
    render_seconds = 0.0
    # seam audit: every seam as rendered must be no more exposed (sample step, spectral
    # jump) than most of the song's own moments; a jump whose seam is gets banned and
    # the path re-planned, and the least exposed of the attempts is kept
    for attempt in range(SEAM_AUDIT_ROUNDS):
        clock = time.perf_counter()
        plan = plan_path(analysis, target_seconds, seed=seed, target_cost=guidance, banned=frozenset(banned))
        plan_seconds += time.perf_counter() - clock
        clock = time.perf_counter()
        spliced = _splice(audio, analysis, plan, target_seconds, song_mono=song_mono, assemble=False)
        if plan.jumps:
            if limits is None:
                limits = _exposure_limits(audio, song_mono, analysis)
            rate = audio.sample_rate
            exposure = np.stack([
                _exposure(window, _mono_mix(window), sample_rate=rate,
                          points=np.array([(int(round(seam * rate)) - window_start) / rate]))[0]
                for (window, window_start), seam in zip(spliced.windows, spliced.seams)]) / limits[None, :]
            worst = np.nan_to_num(np.max(exposure, axis=1), nan=0.0)
        else:
            worst = np.zeros(0)
        render_seconds += time.perf_counter() - clock
        score = float(worst.max()) if worst.size else 0.0
        if best is None or score < best[0] - 1e-9:
            best = (score, plan)
        exposed = [plan.jumps[k] for k in np.flatnonzero(worst > 1.0)]
        if not exposed or attempt + 1 == SEAM_AUDIT_ROUNDS:
            break
        for a, b in exposed:  # the cut and the same cut a beat either side
            banned.update({(a, b), (a - 1, b - 1), (a + 1, b + 1)})
    timings["plan"] = round(plan_seconds, 4)
    progress(2, 3)
    clock = time.perf_counter()
    spliced = _splice(audio, analysis, best[1], target_seconds, song_mono=song_mono)
    out, seams, segments, stretch = _finish_length(spliced, audio.sample_rate)
    timings["render"] = round(render_seconds + time.perf_counter() - clock, 4)
    progress(3, 3)
    return ExtensionResult(
        samples=out, sample_rate=audio.sample_rate, seams_seconds=seams, segments=segments,
        engine="guided", model=(getattr(predictor, "name", "model") if predictor is not None else None),
        fallback=analysis.fallback, tempo_bpm=round(analysis.tempo_bpm, 2),
        beats_per_bar=analysis.beats_per_bar, stretch=stretch, timings=timings,
    )
