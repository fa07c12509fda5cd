"""Rendering a planned path from the original samples: pieces, seam alignment, crossfades.

Each source segment of the path becomes a ``Piece`` (its samples with margins). Every
seam is aligned by waveform cross-correlation (+-15 ms around the beat grid), then
moved, in both passages alike, to the least exposed point from half a beat before to
30 % of a beat after the beat (smallest spectral jump between the 50 ms before in one
and the 50 ms after in the other, no transient within +-5 ms). The crossfade (20 ms;
100 or 200 ms where the spectra still differ; 80 ms without a pulse) has gains with
``g_out^2 + g_in^2 + 2 rho g_out g_in = 1`` (equal power for uncorrelated passages,
equal gain for correlated ones), blended towards linear where the mix would pass the
passages' own peak. The seams absorb what they can of the length residual (each
moves by at most ``MAX_SEAM_SHIFT_SECONDS``); ``stretch`` makes the length exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from harmonizer_cli.core.audio_io import Audio, to_mono
from harmonizer_cli.core.decoded import is_on_disk, peak_of, window_of
from harmonizer_cli.core.extend.analysis import SongAnalysis
from harmonizer_cli.core.extend.plan import (
    ENDING_SECONDS, PlannedPath, seam_shift_seconds, tail_seconds,
)
from harmonizer_cli.core.quality.seams import spectral_jump, step_crest

__all__ = ["Piece", "Spliced", "Timeline", "align", "crossfade", "crossfade_gains", "normalised_xcorr", "splice",
           "HEAD_KEEP_SECONDS"]

#: Seam crossfade length.
CROSSFADE_SECONDS = 0.020
NO_PULSE_CROSSFADE_SECONDS = 0.080
#: Longer crossfades where the spectra on either side of the chosen cut still differ:
#: (spectral jump in dB above which, crossfade seconds).
LONG_FADES = ((3.0, 0.100), (4.5, 0.200))
#: Sources peaking at most this high are full-scale masters: no seam passes 1.0.
FULL_SCALE_OVERS = 1.25
#: The song's first seconds are never stretched (a quarter of a short output).
HEAD_KEEP_SECONDS = 5.0
#: Groove alignment: B's start is searched within this of the beat grid.
ALIGN_SEARCH_SECONDS = 0.015
#: ... comparing this much of A's natural continuation with B.
ALIGN_WINDOW_SECONDS = 0.030
#: Share of the seams' reach (``MAX_SEAM_SHIFT_SECONDS`` each) given to the length residual.
SEAM_BUDGET_SHARE = 0.6


def normalised_xcorr(reference: np.ndarray, signal: np.ndarray) -> np.ndarray:
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


def crossfade_gains(n: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """Fade-out and fade-in gains with ``g_out^2 + g_in^2 + 2 rho g_out g_in = 1``."""
    u = (np.arange(n) + 0.5) / n
    u = 0.5 - 0.5 * np.cos(np.pi * u)  # smooth start and end
    v = 1.0 - u
    rho = float(np.clip(rho, 0.0, 1.0))
    k = 1.0 / np.sqrt(u * u + v * v + 2.0 * rho * u * v)
    return (v * k).astype(np.float32), (u * k).astype(np.float32)


def crossfade(seg_a: np.ndarray, seg_b: np.ndarray, *, full_scale: bool) -> np.ndarray:
    """Crossfade ``seg_a`` out and ``seg_b`` in [shape=(n, channels)], gains by their correlation.

    The gains keep the power (``crossfade_gains``); where the mix would pass the
    passages' own peak, or full scale in a full-scale master, they are blended
    towards linear (equal gain never passes the louder passage).
    """
    rho = float(np.clip(np.sum(seg_a * seg_b) / (np.sqrt(np.sum(seg_a ** 2) * np.sum(seg_b ** 2)) + 1e-12), 0, 1))
    g_out, g_in = crossfade_gains(seg_a.shape[0], rho)
    mixed = seg_a * g_out[:, None] + seg_b * g_in[:, None]
    limit = max(float(np.max(np.abs(seg_a))), float(np.max(np.abs(seg_b))))
    limit = min(limit, 1.0) if full_scale else limit
    if float(np.max(np.abs(mixed))) > limit:
        linear_out, linear_in = crossfade_gains(seg_a.shape[0], 1.0)
        for blend in (0.75, 0.5, 0.25, 0.0):
            go = blend * g_out + (1 - blend) * linear_out
            gi = blend * g_in + (1 - blend) * linear_in
            mixed = seg_a * go[:, None] + seg_b * gi[:, None]
            if float(np.max(np.abs(mixed))) <= limit:
                break
    return mixed.astype(np.float32)


@dataclass
class Piece:
    """A source segment ready to splice: ``audio[start:end]`` is its nominal extent."""

    audio: np.ndarray   # (n, channels), with margins around [start, end) (a long song's: a decoded.Window)
    mono: np.ndarray
    start: int
    end: int
    source_offset: int = 0   # source sample of audio[0]

    def source_seconds(self, index: int, sample_rate: int) -> float:
        return (self.source_offset + index) / float(sample_rate)


def _make_piece(samples: np.ndarray, mono: np.ndarray, start: int, end: int, *, margin: int) -> Piece:
    lo = max(0, start - margin)
    hi = min(samples.shape[0], end + margin)
    # (views of arrays; of a long song kept on disk, windows read only where a seam looks)
    return Piece(window_of(samples, lo, hi), window_of(mono, lo, hi), start - lo, end - lo, lo)


def align(piece_a: Piece, piece_b: Piece, *, window: int, reach: int, search: int, centre: int = 0):
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
    xc = normalised_xcorr(ref, piece_b.mono[lo:hi])
    offsets = np.arange(xc.size) + lo - (piece_b.start - window // 2)
    in_search = np.abs(offsets - centre) <= search
    x0 = int(offsets[in_search][np.argmax(xc[in_search])]) if in_search.any() else centre
    return xc, offsets, x0


def _quiet_cut_offset(piece_a: Piece, piece_b: Piece, x0: int, *, period_samples: int,
                      sample_rate: int) -> tuple[int, float]:
    """Offset (samples, from the beat) of the least exposed cut point near the beat.

    Candidates every 5 ms from half a beat before the beat to 30 % after; each is
    scored by the spectral jump between the 50 ms of A before it and the 50 ms of B
    after it (dB, as a listener or a novelty detector hears a splice) plus the
    sample-step crest of A and B within +-5 ms of it (transients expose a cut).
    Returns the offset and the spectral jump there.
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
    novelty = spectral_jump(piece_a.mono[a_at[:, None] - length + idx], piece_b.mono[b_at[:, None] + idx],
                            sample_rate=sample_rate)
    crest_a = step_crest(piece_a.mono, a_at, sample_rate=sample_rate)
    crest_b = step_crest(piece_b.mono, b_at, sample_rate=sample_rate)
    exposure = novelty / 4.0 + np.maximum(crest_a, crest_b) / 3.0
    exposure = exposure + 0.1 * np.abs(deltas) / max(1, period_samples)  # ties: stay near the beat
    best = int(np.argmin(exposure))
    return int(deltas[best]), float(novelty[best])


@dataclass
class Timeline:
    """The output before the local stretch, as operations on the original's samples.

    Nothing is rendered until asked for: ``read(start, stop)`` renders any range of the
    output (copies of the original and crossfades between two of its places), and
    ``blocks`` the whole of it, a block at a time, so an output of hours never has to be
    in memory. ``samples`` is the original (an array, or a reader of a decoded file that
    slices like one).

    Attributes
    ----------
    kinds : np.ndarray [shape=(n_ops,)]
        0: copy ``samples[a:a + length]``; 1: crossfade ``samples[a:a + length]`` out and
        ``samples[b:b + length]`` in.
    starts : np.ndarray [shape=(n_ops,)]
        Output sample where each operation begins.
    """

    samples: object
    kinds: np.ndarray
    starts: np.ndarray
    a: np.ndarray
    b: np.ndarray
    lengths: np.ndarray
    n_channels: int
    full_scale: bool

    @classmethod
    def of_array(cls, samples: np.ndarray) -> "Timeline":
        """A timeline that plays ``samples`` [shape=(n, n_channels)] as they are."""
        one = np.zeros(1, dtype=np.int64)
        return cls(samples, one, one, one, one, np.array([samples.shape[0]], dtype=np.int64),
                   n_channels=int(samples.shape[1]), full_scale=True)

    @property
    def n_samples(self) -> int:
        return int(self.starts[-1] + self.lengths[-1]) if self.starts.size else 0

    def read(self, start: int, stop: int) -> np.ndarray:
        """Output samples ``[start, stop)`` (clipped to the output) [shape=(n, n_channels), float32]."""
        start, stop = max(0, int(start)), min(self.n_samples, int(stop))
        if stop <= start:
            return np.zeros((0, self.n_channels), dtype=np.float32)
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        last = int(np.searchsorted(self.starts, stop, side="left"))
        parts = []
        for i in range(first, last):
            at, length = int(self.starts[i]), int(self.lengths[i])
            lo, hi = max(start, at) - at, min(stop, at + length) - at
            if hi <= lo:
                continue
            a = int(self.a[i])
            if self.kinds[i] == 0:
                parts.append(np.asarray(self.samples[a + lo:a + hi], dtype=np.float32))
            else:
                b = int(self.b[i])
                mixed = crossfade(np.asarray(self.samples[a:a + length], dtype=np.float32),
                                  np.asarray(self.samples[b:b + length], dtype=np.float32), full_scale=self.full_scale)
                parts.append(mixed[lo:hi])
        return np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]

    def blocks(self, block_frames: int = 1 << 16):
        """The whole output, ``block_frames`` at a time."""
        for start in range(0, self.n_samples, block_frames):
            yield self.read(start, start + block_frames)


@dataclass
class Spliced:
    """A path laid out with its seams, before the local stretch that makes the length exact."""

    timeline: Timeline
    seams: list      # output seconds of each seam (one per jump)
    segments: list
    n_target: int
    head_keep: float
    tail_keep: float


@dataclass
class _Seams:
    """Everything decided about the seams before assembly."""

    pieces: list
    fades: list
    alignments: list
    nominal: list
    n_render: int        # the output length the seams aim for (the stretch takes the rest)
    max_shift: int
    full_scale: bool


def _place_seams(samples: np.ndarray, song_mono: np.ndarray, analysis: SongAnalysis, spans: list, *,
                 n_target: int, sample_rate: int) -> _Seams:
    """Cut the pieces, align every seam on the groove and move it to its least exposed point."""
    n_seams = len(spans) - 1
    planned = sum(end - start for start, end in spans)
    residual = n_target - planned
    # without a pulse there is no groove to keep: a seam may move by up to half a grid unit
    seam_shift = seam_shift_seconds(analysis)
    max_shift = int(round(seam_shift * sample_rate))
    # the seams absorb what they can (each moves by at most max_shift); a local
    # pitch-preserving stretch of one steady region takes the rest after rendering
    seam_budget = int(SEAM_BUDGET_SHARE * n_seams * max_shift)
    seam_part = int(np.clip(residual, -seam_budget, seam_budget))
    n_render = n_target - (residual - seam_part)
    fallback = analysis.fallback is not None
    fade = int(round((NO_PULSE_CROSSFADE_SECONDS if fallback else CROSSFADE_SECONDS) * sample_rate))
    fades = [fade] * n_seams
    long_fade = int(round(max(seconds for _, seconds in LONG_FADES) * sample_rate))
    search = int(round(ALIGN_SEARCH_SECONDS * sample_rate))
    margin = (max(fade, long_fade) + search + 3 * max_shift + int(0.12 * sample_rate)
              + int(0.5 * analysis.beat_period_seconds * sample_rate))
    pieces = [_make_piece(samples, song_mono, start, end, margin=margin) for start, end in spans]
    nominal = [piece.end - piece.start for piece in pieces]
    # a seam never passes full scale where the song is a full-scale master (decoded
    # lossy files overshoot 0 dBFS by a few per cent; 16/24-bit output clips those
    # overs, and a clipped crossfade is a broadband click); float sources with
    # larger peaks keep the passages' own peaks as the limit
    full_scale = peak_of(samples) <= FULL_SCALE_OVERS

    # groove alignment of every seam first (waveform correlation of A's natural
    # continuation with B, within +-15 ms of the beat grid)
    window = int(ALIGN_WINDOW_SECONDS * sample_rate)
    reach = search + 2 * max_shift + int(0.003 * sample_rate)
    # everything below depends only on where A ends and B starts in the source: a junction
    # an output of hours takes many times is measured once
    junctions: dict = {}

    def once(key, make):
        if key not in junctions:
            junctions[key] = make()
        return junctions[key]

    def junction(k: int) -> tuple:
        return (pieces[k].source_offset + pieces[k].end, pieces[k + 1].source_offset + pieces[k + 1].start)

    alignments = [once(("align",) + junction(k), lambda k=k: align(pieces[k], pieces[k + 1], window=window,
                                                                    reach=reach, search=search))
                  for k in range(n_seams)]
    # move each cut (in both A and B, so the musical alignment is kept) to the point near
    # the beat where the splice is least exposed: a steady spot where the sound before
    # the cut in A and after it in B match
    # (without a pulse the grid unit stands for the beat, and the cut is judged where B
    # will start once the seams' share of the length residual is applied)
    expected_shift = int(np.clip(seam_part / max(1, n_seams), -max_shift, max_shift)) if fallback else 0
    period_samples = int(round(analysis.beat_period_seconds * sample_rate))
    # a last landing this early is on the song's first beat; in a clip no longer than the
    # ending a listener compares (whose first tracked beat may lie a beat or more after
    # its first sample when it was cut from a song), the last pass is then the whole clip
    # (the cut moves as far in both passages: they stay in step)
    first_landing = period_samples // 2
    first_beat = int(round(float(analysis.beat_seconds[0]) * sample_rate))
    if analysis.duration_seconds <= ENDING_SECONDS:
        first_landing = max(first_landing, first_beat + period_samples // 4)
    moved = False
    for k in range(n_seams):
        piece_a, piece_b = pieces[k], pieces[k + 1]
        if k == n_seams - 1 and piece_b.source_offset + piece_b.start <= first_landing:
            # the last landing is the song's first beat (a looped clip ends with the whole
            # clip, and its last seconds are the clip's own): cut both passages so that it
            # starts at the song's very first sample, with a short crossfade
            delta, novelty = -(piece_b.source_offset + piece_b.start), 0.0
            fades[k] = min(fades[k], int(round(CROSSFADE_SECONDS * sample_rate)))
        else:
            x0 = alignments[k][2] - expected_shift
            delta, novelty = once(("cut", x0) + junction(k), lambda: _quiet_cut_offset(
                piece_a, piece_b, x0, period_samples=period_samples, sample_rate=sample_rate))
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
        alignments = [once(("refine", alignments[k][2]) + junction(k), lambda k=k: align(
            pieces[k], pieces[k + 1], window=window, reach=reach, search=search // 4, centre=alignments[k][2]))
            for k in range(n_seams)]
    return _Seams(pieces, fades, alignments, nominal, n_render, max_shift, full_scale)


def _lay_out(seams: _Seams, *, samples, n_source: int, sample_rate: int) -> tuple[Timeline, list, list]:
    """The output as operations, spreading the length residual over the seams, each snapped
    to a correlation peak near its share.

    Returns ``(timeline, seam times, segments)``.
    """
    pieces, fades, alignments, nominal = seams.pieces, seams.fades, seams.alignments, seams.nominal
    n_seams = len(pieces) - 1
    ops: list = []   # (kind, a, b, length)
    out_len = 0
    seam_times: list = []
    segments: list = []
    # what the rest of the output adds, if every remaining seam is groove-aligned
    later_nominal = np.concatenate([np.cumsum(nominal[::-1])[::-1], [0]])
    later_align = np.concatenate([np.cumsum([al[2] for al in alignments][::-1])[::-1], [0]])
    cursor = pieces[0].source_offset + pieces[0].start  # source sample where the output continues
    source_start = pieces[0].source_seconds(pieces[0].start, sample_rate)
    for k in range(n_seams):
        piece_a, piece_b = pieces[k], pieces[k + 1]
        cut_a = piece_a.source_offset + piece_a.end
        xc, offsets, x0 = alignments[k]
        # output length if A is cut at cut_a and every remaining seam is groove-aligned
        projected = out_len + (cut_a - cursor) + later_nominal[k + 1] - later_align[k]
        seams_left = n_seams - k
        wanted = seams.n_render - projected  # > 0: the output must get longer
        shift = int(np.clip(wanted / seams_left, -seams.max_shift, seams.max_shift))
        desired = x0 - shift  # B continues at its nominal start + x: output change is -x
        if xc is not None:
            tol = int(0.002 * sample_rate) if seams_left > 1 else int(0.0005 * sample_rate)
            near = np.abs(offsets - desired) <= tol
            x = int(offsets[near][np.argmax(xc[near])]) if near.any() else desired
        else:
            x = desired
        start_b = piece_b.source_offset + piece_b.start + x
        fade = fades[k]
        half = fade // 2
        if start_b < half:  # B starts at the song's first samples: cut both later (length and alignment kept)
            late = min(half - start_b, n_source - fade - cut_a + half)
            cut_a, start_b = cut_a + late, start_b + late
        start_b = int(np.clip(start_b, 0, n_source - 1))
        # the crossfade fits the audio there is on both sides (at a song's ends, and in a
        # short clip's loops, there may be less than a long fade needs: a shorter fade,
        # never a hard cut)
        half = max(0, min(half, cut_a - cursor, n_source - cut_a, start_b, n_source - start_b))
        fade = 2 * half
        # A up to the crossfade, then the crossfade
        if cut_a - half > cursor:
            ops.append((0, cursor, 0, cut_a - half - cursor))
        if fade:
            ops.append((1, cut_a - half, start_b - half, fade))
        out_len += (cut_a - half - cursor) + fade
        seam_time = (out_len - fade + half) / sample_rate
        segments.append({"source_start": round(source_start, 4), "source_end": round(cut_a / sample_rate, 4)})
        seam_times.append(round(seam_time, 4))
        cursor = start_b - half + fade
        source_start = start_b / sample_rate
    if n_source > cursor:
        ops.append((0, cursor, 0, n_source - cursor))
    segments.append({"source_start": round(source_start, 4), "source_end": round(n_source / sample_rate, 4)})
    starts = [0.0] + seam_times
    for segment, start in zip(segments, starts):
        segment["output_start"] = round(start, 4)
    table = np.array(ops, dtype=np.int64).reshape(-1, 4)
    offsets = np.concatenate([[0], np.cumsum(table[:, 3])[:-1]]).astype(np.int64)
    timeline = Timeline(samples, table[:, 0], offsets, table[:, 1], table[:, 2], table[:, 3],
                        n_channels=int(samples.shape[1]), full_scale=seams.full_scale)
    return timeline, seam_times, segments


def splice(audio: Audio, analysis: SongAnalysis, plan: PlannedPath, target_seconds: float, *,
           song_mono: Optional[np.ndarray] = None) -> Spliced:
    """Lay ``plan`` out on the original samples: every seam aligned, placed and crossfaded.

    ``song_mono`` is the mono mix of ``audio.samples`` (computed when not given).
    The result is within the seams' and the local stretch's reach of the target;
    ``stretch.finish_length`` makes it exact. Nothing is rendered: the ``timeline``
    renders any range of the output on demand.
    """
    samples = audio.samples
    if song_mono is None:
        song_mono = samples.mono() if is_on_disk(samples) else to_mono(samples)
    sample_rate = audio.sample_rate
    n_source = samples.shape[0]
    n_target = int(round(target_seconds * sample_rate))
    times = analysis.beat_seconds
    landings = plan.landings or [float(times[b]) for _, b in plan.jumps]
    bounds = [0]
    for (a, _), landing in zip(plan.jumps, landings):
        bounds += [int(round(times[a] * sample_rate)), int(round(landing * sample_rate))]
    bounds.append(n_source)
    spans = [(bounds[2 * k], bounds[2 * k + 1]) for k in range(len(bounds) // 2)]
    tail_keep = tail_seconds(analysis) if plan.tail_seconds is None else plan.tail_seconds
    head_keep = min(HEAD_KEEP_SECONDS, 0.25 * target_seconds)
    if not plan.jumps:  # the target equals the length within a ms
        timeline = Timeline.of_array(samples)
        segments = [{"source_start": 0.0, "source_end": round(n_source / sample_rate, 4), "output_start": 0.0}]
        return Spliced(timeline, [], segments, n_target, head_keep, tail_keep)
    seams = _place_seams(samples, song_mono, analysis, spans, n_target=n_target, sample_rate=sample_rate)
    timeline, seam_times, segments = _lay_out(seams, samples=samples, n_source=n_source, sample_rate=sample_rate)
    return Spliced(timeline, seam_times, segments, n_target, head_keep, tail_keep)
