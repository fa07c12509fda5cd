"""The groove measure: does the song's pulse carry on across a seam, or does it stumble?

A crossfade onto the wrong beat is smooth and still a stumble: crest, novelty and
broadband measures cannot hear it. This measure needs no beat tracker. From the
original's onset envelope it finds the song's pulse: the fastest period (0.25-1.5 s)
whose folding is nearly as coherent as the best one, and twice that period (so that a
slip by exactly one pulse is still seen when beats and off-beats differ). Around a
point ``t`` the phase of each pulse level is measured in the 3 s before and the 3 s
after (the angle of the onset envelope's Fourier component at that period, which folds
the envelope onto one period); a seam stumbles where that phase jumps across it by more
than it ever does across the song's own moments. The song's own jitter is the 95th
percentile of the same jump at random points of the original.

``onset_envelope`` and ``phase_jumps`` are numpy only (the engine's seam audit uses
them); the report is ``groove_report``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harmonizer_cli.core.features import mel_weights

__all__ = ["Pulse", "onset_envelope", "find_pulse", "phase_jumps", "groove_report", "GROOVE_WINDOW_SECONDS"]

#: Each side of a point whose phase is compared (seconds), and the gap left around the
#: point itself (a crossfade's own onsets are not the groove).
GROOVE_WINDOW_SECONDS = 3.0
GROOVE_GAP_SECONDS = 0.1
#: Pulse periods considered (seconds): 240 down to 40 BPM.
MIN_PERIOD_SECONDS = 0.25
MAX_PERIOD_SECONDS = 1.5
#: A window whose folding is less coherent than this has no measurable phase.
MIN_CLARITY = 0.12
#: Random points of the original that give its own jitter.
NULL_POINTS = 400
#: A seam stumbles when its phase jump exceeds the song's jitter by this factor, and
#: this many seconds at least (below it nobody hears a slip).
STUMBLE_FACTOR = 1.25
MIN_STUMBLE_SECONDS = 0.03

_MEL: dict = {}


def onset_envelope(mono: np.ndarray, *, sample_rate: int) -> tuple[np.ndarray, float]:
    """Onset strength: half-wave rectified log-mel spectral flux, its slow trend removed.

    About 46 ms frames every 11.6 ms at any sample rate (40 mel bands up to 11 kHz).

    Parameters
    ----------
    mono : np.ndarray [shape=(n_samples,)]
    sample_rate : int

    Returns
    -------
    envelope : np.ndarray [shape=(n_frames,)]
        Non-negative; frame ``k`` is centred at ``k * hop`` samples.
    frame_rate : float
        Frames per second.
    """
    n_fft = 1 << int(round(np.log2(0.046 * sample_rate)))
    hop = n_fft // 4
    key = (sample_rate, n_fft)
    if key not in _MEL:
        _MEL[key] = mel_weights(sample_rate=sample_rate, n_fft=n_fft, n_mels=40, fmin=30.0,
                                fmax=min(11025.0, sample_rate / 2.0))
    mono = np.asarray(mono, dtype=np.float32)
    padded = np.pad(mono, (n_fft // 2, n_fft // 2))
    n_frames = max(0, 1 + (padded.size - n_fft) // hop)
    frame_rate = sample_rate / float(hop)
    if n_frames < 3:
        return np.zeros(max(n_frames, 0)), frame_rate
    windows = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_frames]
    hann = np.hanning(n_fft).astype(np.float32)
    log_mel = np.empty((n_frames, 40), dtype=np.float32)
    for start in range(0, n_frames, 2048):
        spectrum = np.fft.rfft(windows[start:start + 2048] * hann, axis=1)
        power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
        log_mel[start:start + 2048] = np.log10(power @ _MEL[key].T + 1e-10)
    log_mel = np.maximum(log_mel, log_mel.max() - 8.0)  # 80 dB range
    flux = np.concatenate([[0.0], np.maximum(0.0, np.diff(log_mel, axis=0)).mean(axis=1)])
    width = max(3, int(round(0.5 * frame_rate)) | 1)
    trend = np.convolve(flux, np.ones(width) / width, mode="same")
    return np.maximum(0.0, flux - trend), frame_rate


def _fold(envelope: np.ndarray, frame_rate: float, period: float, lo: np.ndarray, hi: np.ndarray):
    """The envelope's Fourier component at ``period`` over frames [lo, hi) of each window.

    Returns the complex sums and the envelope's sums (clarity = |z| / sum)."""
    k = np.arange(envelope.size)
    phasor = envelope * np.exp(-2j * np.pi * k / (period * frame_rate))
    cum_z = np.concatenate([[0.0], np.cumsum(phasor)])
    cum_e = np.concatenate([[0.0], np.cumsum(envelope)])
    return cum_z[hi] - cum_z[lo], cum_e[hi] - cum_e[lo]


@dataclass(frozen=True)
class Pulse:
    """A song's pulse levels and its own phase jitter at each.

    Attributes
    ----------
    periods : tuple of float
        Seconds: the pulse and twice it.
    jitter : tuple of float
        The 95th percentile of the phase jump (seconds) across random points of the
        original at each level (inf where the song has no clear phase at that level).
    clarity : tuple of float
        Median folding coherence of the original's windows at each level.
    """

    periods: tuple
    jitter: tuple
    clarity: tuple

    @property
    def thresholds(self) -> np.ndarray:
        """Phase jump (seconds) beyond which a seam stumbles, at each level."""
        return np.maximum(STUMBLE_FACTOR * np.asarray(self.jitter, dtype=float), MIN_STUMBLE_SECONDS)


def _windows(points: np.ndarray, frame_rate: float, n_frames: int):
    gap = int(round(GROOVE_GAP_SECONDS * frame_rate))
    span = int(round(GROOVE_WINDOW_SECONDS * frame_rate))
    at = np.round(np.asarray(points, dtype=float) * frame_rate).astype(np.int64)
    before = (np.clip(at - gap - span, 0, n_frames), np.clip(at - gap, 0, n_frames))
    after = (np.clip(at + gap, 0, n_frames), np.clip(at + gap + span, 0, n_frames))
    return before, after


def phase_jumps(envelope: np.ndarray, frame_rate: float, points: np.ndarray, periods) -> np.ndarray:
    """Signed phase jump (seconds) of each pulse level across each point [shape=(n_points, n_levels)].

    The phase of the 3 s after the point minus that of the 3 s before, wrapped into
    half a period either way; NaN where either side has no clear phase (folding
    coherence below ``MIN_CLARITY``, or less than half a window of signal).
    """
    points = np.asarray(points, dtype=float).reshape(-1)
    out = np.full((points.size, len(periods)), np.nan)
    if envelope.size < 4 or points.size == 0:
        return out
    (b_lo, b_hi), (a_lo, a_hi) = _windows(points, frame_rate, envelope.size)
    enough = np.minimum(b_hi - b_lo, a_hi - a_lo) >= 0.5 * GROOVE_WINDOW_SECONDS * frame_rate
    for level, period in enumerate(periods):
        z_b, e_b = _fold(envelope, frame_rate, period, b_lo, b_hi)
        z_a, e_a = _fold(envelope, frame_rate, period, a_lo, a_hi)
        clear = enough & (np.abs(z_b) >= MIN_CLARITY * np.maximum(e_b, 1e-12)) & \
            (np.abs(z_a) >= MIN_CLARITY * np.maximum(e_a, 1e-12))
        # the phase of exp(-2 pi i t / P) folds; a later onset gives a more negative angle
        jump = -np.angle(z_a * np.conj(z_b)) / (2.0 * np.pi) * period
        out[:, level] = np.where(clear, jump, np.nan)
    return out


def find_pulse(envelope: np.ndarray, frame_rate: float, *, seed: int = 0) -> Pulse | None:
    """The original's pulse levels and jitter (None without a measurable pulse).

    The candidate periods are the autocorrelation peaks of the envelope between
    ``MIN_PERIOD_SECONDS`` and ``MAX_PERIOD_SECONDS``; each is weighed by how
    coherently 6 s windows of the envelope fold at it (the median over windows). The
    pulse is the fastest candidate within 85 % of the best coherence; the levels are
    the pulse and twice it.
    """
    n = envelope.size
    duration = n / frame_rate
    if duration < 2 * GROOVE_WINDOW_SECONDS + 1.0 or not np.any(envelope > 0):
        return None
    centred = envelope - envelope.mean()
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(centred, size)
    autocorr = np.fft.irfft(spectrum * np.conj(spectrum), size)[:n]
    lo, hi = int(MIN_PERIOD_SECONDS * frame_rate), min(int(MAX_PERIOD_SECONDS * frame_rate), n // 2)
    if hi <= lo + 2:
        return None
    lags = np.arange(lo, hi)
    values = autocorr[lags]
    peaks = lags[1:-1][(values[1:-1] > values[:-2]) & (values[1:-1] >= values[2:]) & (values[1:-1] > 0)]
    if peaks.size == 0:
        return None
    span = int(6.0 * frame_rate)
    starts = np.arange(0, max(1, n - span), max(1, span // 2))
    w_lo, w_hi = starts, np.minimum(starts + span, n)

    def coherence(period: float) -> float:
        z, e = _fold(envelope, frame_rate, period, w_lo, w_hi)
        return float(np.median(np.abs(z) / np.maximum(e, 1e-12)))

    # refine each peak to a sub-frame period with a parabola through its neighbours
    candidates = []
    for lag in peaks:
        a, b, c = autocorr[lag - 1], autocorr[lag], autocorr[lag + 1]
        denom = a - 2 * b + c
        offset = 0.5 * (a - c) / denom if denom < 0 else 0.0
        candidates.append((lag + float(np.clip(offset, -0.5, 0.5))) / frame_rate)
    scored = sorted((coherence(period), period) for period in candidates)
    best = scored[-1][0]
    pulse = min(period for value, period in scored if value >= 0.85 * best)
    periods = (pulse, 2.0 * pulse)
    rng = np.random.default_rng(seed)
    margin = GROOVE_WINDOW_SECONDS + GROOVE_GAP_SECONDS
    points = rng.uniform(margin, duration - margin, size=NULL_POINTS)
    jumps = np.abs(phase_jumps(envelope, frame_rate, points, periods))
    jitter = tuple(float(np.nanpercentile(jumps[:, k], 95)) if np.isfinite(jumps[:, k]).sum() >= 20 else np.inf
                   for k in range(len(periods)))
    clarity = tuple(coherence(period) for period in periods)
    return Pulse(periods=periods, jitter=jitter, clarity=clarity)


def groove_report(original_mono: np.ndarray, output_mono: np.ndarray, *, sample_rate: int,
                  seams) -> dict:
    """The groove measure of every seam of an output, against the original's own jitter.

    Parameters
    ----------
    original_mono, output_mono : np.ndarray [shape=(n_samples,)]
        At the same sample rate.
    sample_rate : int
    seams : sequence of float
        Output times of the seams (seconds).

    Returns
    -------
    dict
        ``pulse_seconds`` (the levels), ``jitter_seconds`` (the song's own, per level),
        ``thresholds_seconds``, ``jumps_seconds`` (per seam and level, None where not
        measurable), ``ratio`` (per seam: the largest jump over its level's threshold,
        None where not measurable), ``measured`` (seams with a measurable phase),
        ``stumbling`` (seams whose ratio exceeds 1), ``stumbling_times`` and
        ``worst_ratio``. Without a pulse in the original every list is empty and
        ``pulse_seconds`` is None.
    """
    env_o, rate = onset_envelope(original_mono, sample_rate=sample_rate)
    pulse = find_pulse(env_o, rate)
    seams = [float(t) for t in seams]
    if pulse is None:
        return {"pulse_seconds": None, "jitter_seconds": None, "thresholds_seconds": None, "jumps_seconds": [],
                "ratio": [], "measured": 0, "stumbling": 0, "stumbling_times": [], "worst_ratio": None}
    env_e, _ = onset_envelope(output_mono, sample_rate=sample_rate)
    jumps = phase_jumps(env_e, rate, np.asarray(seams), pulse.periods)
    ratios = np.abs(jumps) / pulse.thresholds[None, :]
    ratio = np.where(np.isfinite(ratios).any(axis=1), np.nanmax(np.where(np.isfinite(ratios), ratios, -1.0), axis=1),
                     np.nan) if len(seams) else np.zeros(0)
    stumbling = [t for t, r in zip(seams, ratio) if np.isfinite(r) and r > 1.0]
    finite = ratio[np.isfinite(ratio)]
    return {
        "pulse_seconds": [float(p) for p in pulse.periods],
        "jitter_seconds": [float(j) for j in pulse.jitter],
        "thresholds_seconds": [float(t) for t in pulse.thresholds],
        "jumps_seconds": [[None if not np.isfinite(v) else float(v) for v in row] for row in jumps],
        "ratio": [None if not np.isfinite(r) else float(r) for r in ratio],
        "measured": int(finite.size),
        "stumbling": len(stumbling),
        "stumbling_times": stumbling,
        "worst_ratio": float(finite.max()) if finite.size else None,
    }
