"""The local time-stretch that makes the output's length exact, pitch unchanged.

The planned path is off the target by a fraction of a beat; the seams absorb up to
10 ms each (``render``) and the rest goes to one region of the output, sized for a
2 % stretch (at least 2 s, never over 3 %), chosen where the output has the fewest
onsets (spectral flux), away from the seams, the first 5 s and the real ending. It is
time-stretched by WSOLA (``wsola``: waveform-similarity overlap-add). There is no
global time-stretch and no resampling: pitch and tempo stay the song's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from harmonizer_cli.core.audio_io import to_mono
from harmonizer_cli.core.extend.render import FULL_SCALE_OVERS, Spliced, Timeline, normalised_xcorr
from harmonizer_cli.errors import AudioError

__all__ = ["Output", "wsola", "stretch_to_length", "finish_length", "stretch_can_finish", "PREFERRED_STRETCH", "MAX_STRETCH", "MAX_STRETCH_SECONDS"]

#: The local time-stretch (WSOLA, pitch kept) that makes the length exact: the region
#: is sized for PREFERRED_STRETCH and never stretched by more than MAX_STRETCH.
PREFERRED_STRETCH = 0.02
MAX_STRETCH = 0.03
#: ... over at most this much of the output.
MAX_STRETCH_SECONDS = 20.0
#: The steadiest region is looked for in at most this much of the output (its middle).
SEARCH_SECONDS = 300.0
#: The output's last seconds are the song's ending as a listener compares it: the
#: stretch stays out of them where the output is long enough.
ENDING_SECONDS = 10.0


def wsola(samples: np.ndarray, *, start: int, end: int, new_length: int, sample_rate: int) -> np.ndarray:
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
    mono = to_mono(samples[base:stop]).astype(np.float64)
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
        score = normalised_xcorr(mono[natural:natural + width], mono[lo - base:hi - base])
        if position == positions[-1]:  # the last free frame also leads into the pinned end
            target = end - (length_out - position) - base
            score = score + normalised_xcorr(mono[target:target + width], mono[lo - base:hi - base])
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
    # (near silence the frames' power is noise: the gain fades to 1 instead of switching)
    floor = 1e-12 + 1e-6 * float(np.mean(wanted))
    gain = np.sqrt(np.clip((wanted + floor) / (got + floor), 1.0, 2.0))
    taper = np.clip((np.minimum(np.arange(length_out), length_out - 1 - np.arange(length_out)) - hop) / hop, 0.0, 1.0)
    gain = 1.0 + (gain - 1.0) * taper
    peak = float(np.max(np.abs(samples[start:end])))
    peak = min(peak, 1.0) if peak <= FULL_SCALE_OVERS else peak  # no new overs in a full-scale master
    # the guard lowers a boost smoothly, never sample by sample (a gain that follows the
    # waveform distorts it: broadband clicks): the smallest allowed gain within a hop,
    # smoothed over half a hop, is at most the allowed gain of every sample
    allowed = peak / np.maximum(np.max(np.abs(out), axis=1), 1e-12)
    allowed = -_running_max(-allowed, hop)
    gain = np.maximum(np.minimum(gain, _box(allowed, hop // 2)), 1.0)
    return (out * gain[:, None]).astype(np.float32)


def _running_max(values: np.ndarray, half: int) -> np.ndarray:
    """The largest value within ``half`` samples either side of each sample."""
    from numpy.lib.stride_tricks import sliding_window_view

    padded = np.pad(values, half, mode="edge")
    return sliding_window_view(padded, 2 * half + 1).max(axis=1)


def _box(values: np.ndarray, half: int) -> np.ndarray:
    """The mean within ``half`` samples either side of each sample (edges: what there is)."""
    cum = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    idx = np.arange(values.size)
    lo, hi = np.clip(idx - half, 0, values.size), np.clip(idx + half + 1, 0, values.size)
    return (cum[hi] - cum[lo]) / (hi - lo)


def _onset_step(sample_rate: int) -> int:
    """Every how many samples ``_steady_region`` looks (about 11 kHz is enough to see onsets)."""
    return max(1, int(round(sample_rate / 11025)))


def _strided_mono(timeline: Timeline, lo: int, hi: int, step: int, *, block_frames: int = 1 << 16) -> np.ndarray:
    """``to_mono(timeline.read(lo, hi)[::step])``, read a block at a time (never the whole range at
    the full rate: 300 s of stereo output is 100 MB)."""
    block = max(step, block_frames // step * step)
    parts = [to_mono(timeline.read(start, min(hi, start + block))[::step]) for start in range(lo, hi, block)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


#: Frames transformed at once by ``_flux`` (a few MB: an output's whole spectrogram at once
#: is hundreds, and fresh memory is what a cold command pays most for).
_FLUX_CHUNK = 1024


def _flux(frames: np.ndarray) -> np.ndarray:
    """Positive spectral flux of ``frames`` [shape=(n, frame)]: the log magnitude (scaled to
    the loudest bin of all) rising from each frame to the next, summed over bins; 0 first."""
    window = np.hanning(frames.shape[1]).astype(np.float32)
    magnitude = np.empty((frames.shape[0], frames.shape[1] // 2 + 1), dtype=np.float32)
    for start in range(0, frames.shape[0], _FLUX_CHUNK):
        magnitude[start:start + _FLUX_CHUNK] = np.abs(np.fft.rfft(frames[start:start + _FLUX_CHUNK] * window, axis=1))
    scale = 100.0 / (float(magnitude.max()) + 1e-12)
    flux = np.zeros(frames.shape[0])
    previous = None
    for start in range(0, frames.shape[0], _FLUX_CHUNK):
        logmag = np.log1p(scale * magnitude[start:start + _FLUX_CHUNK])
        steps = np.diff(logmag if previous is None else np.concatenate([previous, logmag]), axis=0)
        flux[start + (previous is None):start + logmag.shape[0]] = np.sum(np.maximum(steps, 0.0), axis=1)
        previous = logmag[-1:]
    return flux


def _steady_region(out: Optional[np.ndarray], *, sample_rate: int, length: int, lo: int, hi: int,
                   avoid: list, mono: Optional[np.ndarray] = None) -> Optional[int]:
    """Start (sample) of the ``length``-sample window within ``[lo, hi)`` with the fewest onsets.

    Onsets are the positive spectral flux (log magnitude, 46 ms frames at 23 ms
    hop on the mono mix at about 11 kHz); windows that contain a seam (``avoid``,
    samples, +-200 ms) are excluded. None when no window fits. ``mono`` is that mix of
    ``out[lo:hi]`` already (``_strided_mono``), where ``out`` is not given.
    """
    if hi - lo < length:
        return None
    step = _onset_step(sample_rate)
    if mono is None:
        mono = to_mono(out[lo:hi:step])
    frame = 1 << int(np.ceil(np.log2(max(64, 0.046 * sample_rate / step))))
    hop = frame // 2
    if mono.size < 2 * frame:
        return lo
    n_frames = (mono.size - frame) // hop + 1
    flux = _flux(np.lib.stride_tricks.sliding_window_view(mono, frame)[::hop][:n_frames])
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


def _stretch_region(n_out: int, difference: int, *, sample_rate: int, head_keep_seconds: float,
                    tail_keep_seconds: float) -> tuple[int, int, int] | None:
    """Where a stretch of ``difference`` samples may go: ``(lo, hi, length)``, or None.

    The region is sized for ``PREFERRED_STRETCH`` (at least 2 s, at most
    ``MAX_STRETCH_SECONDS``) and stretched by at most ``MAX_STRETCH``. It lies after
    the protected head and before the ending: the last ``ENDING_SECONDS`` (what a
    listener, and the ending measure, compare with the song's) where the output is
    long enough, else the real ending kept by the plan, else all but the first second
    and the last two (a fifth at either end of a very short output).
    """
    length = int(np.clip(abs(difference) / PREFERRED_STRETCH, 2.0 * sample_rate, MAX_STRETCH_SECONDS * sample_rate))
    head = int(round(head_keep_seconds * sample_rate))
    edge = min(1.0, 0.2 * n_out / sample_rate)
    for lo, tail in ((head, max(tail_keep_seconds, ENDING_SECONDS)), (head, tail_keep_seconds),
                     (int(edge * sample_rate), min(2.0, 0.2 * n_out / sample_rate))):
        hi = n_out - int(round(tail * sample_rate))
        fitted = min(length, hi - lo)
        if fitted > 0 and abs(difference) <= MAX_STRETCH * fitted:
            return lo, hi, fitted
    return None


@dataclass
class Output:
    """The finished output: the laid-out timeline with one region stretched (or none).

    ``read(start, stop)`` renders any range, ``blocks`` the whole output a block at a
    time; only the stretched region (at most ``MAX_STRETCH_SECONDS`` and a little) is
    held in memory.
    """

    timeline: Timeline
    region: Optional[tuple] = None          # (start, end) of the stretched region, before stretching
    stretched: Optional[np.ndarray] = None  # that region, stretched

    @property
    def n_channels(self) -> int:
        return self.timeline.n_channels

    @property
    def n_samples(self) -> int:
        if self.region is None:
            return self.timeline.n_samples
        return self.timeline.n_samples + self.stretched.shape[0] - (self.region[1] - self.region[0])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Output samples ``[start, stop)`` (clipped to the output) [shape=(n, n_channels), float32]."""
        start, stop = max(0, int(start)), min(self.n_samples, int(stop))
        if self.region is None or stop <= start:
            return self.timeline.read(start, stop)
        r0 = self.region[0]
        r1 = r0 + self.stretched.shape[0]
        shift = self.stretched.shape[0] - (self.region[1] - self.region[0])
        parts = []
        if start < r0:
            parts.append(self.timeline.read(start, min(stop, r0)))
        if start < r1 and stop > r0:
            parts.append(self.stretched[max(start, r0) - r0:min(stop, r1) - r0])
        if stop > r1:
            parts.append(self.timeline.read(max(start, r1) - shift, stop - shift))
        return np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]

    def blocks(self, block_frames: int = 1 << 16):
        """The whole output, ``block_frames`` at a time."""
        for start in range(0, self.n_samples, block_frames):
            yield self.read(start, start + block_frames)


def _search_range(lo: int, hi: int, length: int, *, sample_rate: int) -> tuple[int, int]:
    """At most ``SEARCH_SECONDS`` of ``[lo, hi)`` for the steadiest region, in its middle
    (an output of hours is not read whole to place a stretch of seconds)."""
    span = max(length, int(SEARCH_SECONDS * sample_rate))
    if hi - lo <= span:
        return lo, hi
    middle = (lo + hi) // 2
    return middle - span // 2, middle - span // 2 + span


def stretch_to_length(timeline: Timeline, n_target: int, *, sample_rate: int, seams: list,
                      head_keep_seconds: float, tail_keep_seconds: float) -> tuple[Output, Optional[dict]]:
    """Make the output exactly ``n_target`` samples long by a local, pitch-preserving stretch.

    The difference goes to one region (``_stretch_region``: sized for a 2 % stretch,
    2-20 s, at most 3 %) where the music is steadiest, away from the seams, the first
    ``head_keep_seconds`` and the ending; it is time-stretched by WSOLA. Returns the
    output and ``{"factor", "region_seconds"}`` (output times of the stretched region;
    factor > 1 lengthens), or None when nothing was stretched.

    Raises
    ------
    AudioError
        The difference is too large for a local stretch.
    """
    n_out = timeline.n_samples
    difference = n_target - n_out
    if difference == 0:
        return Output(timeline), None
    region = _stretch_region(n_out, difference, sample_rate=sample_rate, head_keep_seconds=head_keep_seconds,
                             tail_keep_seconds=tail_keep_seconds)
    if region is None:
        raise AudioError(f"cannot recompose to {n_target / sample_rate:.2f} s: the best plan is off by "
                         f"{difference / sample_rate:.3f} s, too much for a local stretch (the target may be too "
                         "short to keep the song's beginning and real ending; try another length)")
    lo, hi, length = region
    lo, hi = _search_range(lo, hi, length, sample_rate=sample_rate)
    avoid = [int(round(seconds * sample_rate)) for seconds in seams]
    start = _steady_region(None, sample_rate=sample_rate, length=length, lo=0, hi=hi - lo,
                           avoid=[seam - lo for seam in avoid],
                           mono=_strided_mono(timeline, lo, hi, _onset_step(sample_rate)))
    if start is None:
        raise AudioError("cannot reach the exact length (no region to absorb the residual)")
    start += lo
    end = start + length
    pad = min(start, int(0.1 * sample_rate))  # WSOLA reads 32 ms before and 57 ms after the region
    local = timeline.read(start - pad, end + int(0.1 * sample_rate))
    stretched = wsola(local, start=pad, end=pad + length, new_length=length + difference, sample_rate=sample_rate)
    info = {"factor": round((length + difference) / float(length), 6),
            "region_seconds": [round(start / sample_rate, 4), round((start + length + difference) / sample_rate, 4)]}
    return Output(timeline, (start, end), stretched), info


def stretch_can_finish(spliced: Spliced, sample_rate: int) -> bool:
    """Whether the local stretch can bring ``spliced`` to its exact length (what
    ``finish_length`` would otherwise refuse): the difference the seams left, measured on
    the laid-out output, fits one region of at most ``MAX_STRETCH``."""
    difference = spliced.n_target - spliced.timeline.n_samples
    return difference == 0 or _stretch_region(spliced.timeline.n_samples, difference, sample_rate=sample_rate,
                                              head_keep_seconds=spliced.head_keep,
                                              tail_keep_seconds=spliced.tail_keep) is not None


def finish_length(spliced: Spliced, sample_rate: int) -> tuple[Output, list, list, Optional[dict]]:
    """The exact length: a local, pitch-preserving stretch of the steadiest region
    between the untouched head and the real ending (the tail stays sample-exact)."""
    seams, segments = spliced.seams, spliced.segments
    n_before = spliced.timeline.n_samples
    out, stretch = stretch_to_length(spliced.timeline, spliced.n_target, sample_rate=sample_rate, seams=seams,
                                     head_keep_seconds=spliced.head_keep, tail_keep_seconds=spliced.tail_keep)
    if stretch is not None:
        region_start, region_end = stretch["region_seconds"]
        old_end = region_start + (region_end - region_start) / stretch["factor"]

        def moved(seconds: float) -> float:
            if seconds <= region_start:
                return seconds
            if seconds >= old_end:
                return round(seconds + (out.n_samples - n_before) / sample_rate, 4)
            return round(region_start + (seconds - region_start) * stretch["factor"], 4)

        seams = [moved(seconds) for seconds in seams]
        for segment in segments:
            segment["output_start"] = moved(segment["output_start"])
    return out, seams, segments, stretch
