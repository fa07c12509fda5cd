"""Beat, bar and per-beat feature analysis of a song, in numpy only.

The extension engine needs to know where the beats are, which beat starts a bar,
and what each beat sounds like (harmony, timbre, loudness), so that it can jump
between beats whose musical context matches. Everything here works on the
22050 Hz mono view of the audio and is written in plain numpy (no librosa beat
tracker, no numba, no TensorFlow) so that ``harmonizer extend`` starts fast:

1. STFT (numpy ``rfft`` of Hann-windowed frames, 2048 samples, hop 512),
2. a mel filterbank (64 bands) and a chroma filterbank (12 pitch classes),
3. onset strength: half-wave rectified log-mel spectral flux,
4. tempo: several hypotheses (autocorrelation peaks, and twice, half, 3/2 and 2/3
   of the strongest) weighed by how coherently the onset strength folds at each
   period, times a broad prior around 120 BPM,
5. beats: dynamic programming (Ellis 2007),
6. meter (4 or 3 beats a bar) from the beat-synchronous self-similarity, and the
   bar phase that maximises harmonic change and onset strength at bar starts,
7. per-beat chroma (L2-normalised), timbre (DCT of log-mel, 20 coefficients,
   the 0th dropped) and loudness (RMS in dB).

Music without a detectable pulse, or with fewer than 8 beats, gets a fixed grid
(``fallback="no-pulse"``): 0.5 s, finer for short clips (16 points at least).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from harmonizer_cli.core.audio_io import MODEL_SAMPLE_RATE
from harmonizer_cli.core.decoded import centred_windows, is_on_disk, peak_of
from harmonizer_cli.core.features import hz_to_mel, mel_to_hz, mel_weights
from harmonizer_cli.errors import AudioError

__all__ = ["FrameLevels", "SongAnalysis", "k_weighting_gain", "analyze_song", "MIN_ANALYSIS_SECONDS", "MIN_BEATS"]

ANALYSIS_SAMPLE_RATE = MODEL_SAMPLE_RATE  # the model view: analysis runs on it
N_FFT = 2048
HOP = 512
N_MELS = 64
N_TIMBRE = 20
#: Shorter input cannot be analysed (AudioError).
MIN_ANALYSIS_SECONDS = 2.0
#: Fewer tracked beats than this: the song is cut on the no-pulse grid instead.
MIN_BEATS = 8
#: Below this pulse strength (folding coherence at the pulse over the song's median
#: across tempi) there is no pulse to track: a short chord 1.3, the ambient guitar
#: piece of ../shared/music/songs 1.45, drums 3 and more.
PULSE_MIN_STRENGTH = 1.35
#: ... nor where it folds less coherently than this at its best over 8 s windows (noise:
#: about 0.1; more over the shorter windows of a clip, by the square root of their length).
PULSE_MIN_COHERENCE = 0.15
#: Onsets this far either side of a beat describe where in the beat they fall.
RHYTHM_CONTEXT_SECONDS = 2.0
#: Grid used when no pulse is found, seconds per unit.
NO_PULSE_GRID_SECONDS = 0.5
#: ... made finer for short clips, so that they have at least this many grid points.
MIN_GRID_POINTS = 16
# Peak level below which a file counts as digital silence.
_SILENCE_PEAK = 10 ** (-80 / 20)


@dataclass(frozen=True)
class FrameLevels:
    """Frame-level energy of the analysis STFT (``frame_rate`` frames a second).

    Enough to predict the level, integrated loudness and brightness of any
    recombination of the song's frames without rendering it (the planner judges
    whole paths with it).

    Attributes
    ----------
    frame_rate : float
        Frames a second (22050 / 512).
    power : np.ndarray [shape=(n_frames,)]
        Mean squared sample value of the middle half of each frame.
    k_power : np.ndarray [shape=(n_frames,)]
        Spectral energy weighted by the ITU-R BS.1770 K-weighting filter (loudness).
    energy : np.ndarray [shape=(n_frames,)]
        Spectral energy (sum of the squared STFT magnitudes).
    centroid_num : np.ndarray [shape=(n_frames,)]
        Frequency-weighted spectral energy (Hz): ``centroid_num / energy`` is the
        frame's spectral centroid.
    """

    frame_rate: float
    power: np.ndarray
    k_power: np.ndarray
    energy: np.ndarray
    centroid_num: np.ndarray


@dataclass(frozen=True)
class SongAnalysis:
    """Beats, bars and per-beat features of one song.

    Attributes
    ----------
    duration_seconds : float
        Length of the analysed audio.
    beat_seconds : np.ndarray [shape=(n_beats,)]
        Beat start times in seconds, increasing. Beat ``k`` spans
        ``beat_seconds[k]`` to ``beat_seconds[k + 1]`` (the last one to the
        last beat plus one period, clipped to the duration).
    tempo_bpm : float
        Tempo of the beat grid.
    beats_per_bar : int
        3 or 4.
    downbeat_phase : int
        Index (mod ``beats_per_bar``) of the beats that start a bar.
    chroma : np.ndarray [shape=(n_beats, 12)]
        Per-beat pitch-class profile, L2-normalised.
    timbre : np.ndarray [shape=(n_beats, 20)]
        Per-beat mean of the DCT of the log-mel spectrum (coefficients 1..20).
    loudness_db : np.ndarray [shape=(n_beats,)]
        Per-beat RMS level in dB full scale.
    pulse_strength : float
        Folding coherence of the onset envelope at the beat period over its median across
        tempi (1 = no pulse).
    centroid_hz : np.ndarray [shape=(n_beats,)]
        Per-beat spectral centroid (of the mel spectrum), Hz.
    mel_before_db, mel_after_db : np.ndarray [shape=(n_beats, n_offsets, 64)]
        Log-mel spectrum (dB) just before and just after candidate cut points
        near each beat (every other analysis frame from half a beat before the
        beat to a quarter beat after): what a listener hears on either side of a
        cut there.
    fallback : str or None
        ``"no-pulse"`` when the beats are a fixed grid, else None.
    levels : FrameLevels or None
        Frame-level energies (loudness and brightness of recombinations).
    rhythm : np.ndarray [shape=(n_beats, 3), dtype=complex64] or None
        Where the onsets fall around each beat: per band (below 250 Hz, to 2.5 kHz,
        above), the onset strength of the 2 s either side folded onto the beat period,
        at the phase of the beat itself (``_rhythm_features``). Two beats whose values
        have the same angle have their onsets at the same place in the beat. None on
        the no-pulse grid.
    rhythm_clarity : np.ndarray [shape=(n_beats,)] or None
        How coherently those onsets fold (0: no pulse around the beat).
    onset : np.ndarray [shape=(n_frames,)] or None
        Onset strength per analysis frame (``HOP`` samples at 22050 Hz): how well the
        song matches itself a loop's length later (``loops``).
    """

    duration_seconds: float
    beat_seconds: np.ndarray
    tempo_bpm: float
    beats_per_bar: int
    downbeat_phase: int
    chroma: np.ndarray
    timbre: np.ndarray
    loudness_db: np.ndarray
    pulse_strength: float
    fallback: Optional[str] = None
    centroid_hz: Optional[np.ndarray] = None
    mel_before_db: Optional[np.ndarray] = None
    mel_after_db: Optional[np.ndarray] = None
    levels: Optional[FrameLevels] = None
    rhythm: Optional[np.ndarray] = None
    rhythm_clarity: Optional[np.ndarray] = None
    onset: Optional[np.ndarray] = None

    @property
    def n_beats(self) -> int:
        return int(self.beat_seconds.shape[0])

    @property
    def beat_period_seconds(self) -> float:
        return 60.0 / self.tempo_bpm

    def beat_ends(self) -> np.ndarray:
        """End time of each beat in seconds [shape=(n_beats,)]."""
        ends = np.empty_like(self.beat_seconds)
        ends[:-1] = self.beat_seconds[1:]
        ends[-1] = min(self.beat_seconds[-1] + self.beat_period_seconds, self.duration_seconds)
        return ends


# ---------------------------------------------------------------------------
# Spectral front end
# ---------------------------------------------------------------------------

def mel_filterbank(*, sample_rate: int = ANALYSIS_SAMPLE_RATE, n_fft: int = N_FFT,
                   n_mels: int = N_MELS, fmin: float = 30.0, fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters, area-normalised (``features.mel_weights``), up to Nyquist by default.

    Returns
    -------
    np.ndarray [shape=(n_mels, n_fft // 2 + 1), dtype=float32]
    """
    return mel_weights(sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin,
                       fmax=fmax or sample_rate / 2.0)


def chroma_filterbank(*, sample_rate: int = ANALYSIS_SAMPLE_RATE, n_fft: int = N_FFT,
                      fmin: float = 80.0, fmax: float = 5000.0) -> np.ndarray:
    """Gaussian pitch-class weights for each STFT bin.

    Returns
    -------
    np.ndarray [shape=(12, n_fft // 2 + 1), dtype=float32]
        Row 0 is C.
    """
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    weights = np.zeros((12, freqs.size))
    valid = (freqs >= fmin) & (freqs <= fmax)
    midi = 69.0 + 12.0 * np.log2(np.maximum(freqs[valid], 1e-9) / 440.0)
    for pitch_class in range(12):
        distance = (midi - pitch_class + 6.0) % 12.0 - 6.0  # semitones to nearest pc
        weights[pitch_class, valid] = np.exp(-0.5 * (distance / 0.5) ** 2)
    return weights.astype(np.float32)


def _dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II basis [shape=(n_out, n_in)]."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2.0 * n_in)) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    return basis.astype(np.float32)


# ITU-R BS.1770 K-weighting at 48 kHz: a high shelf (+4 dB above about 1.5 kHz)
# then the RLB high-pass (about 38 Hz), as (b, a) biquads.
_K_WEIGHTING_48K = (
    ((1.53512485958697, -2.69169618940638, 1.19839281085285), (1.0, -1.69065929318241, 0.73248077421585)),
    ((1.0, -2.0, 1.0), (1.0, -1.99004745483398, 0.99007225036621)),
)


def k_weighting_gain(freqs: np.ndarray) -> np.ndarray:
    """Squared magnitude response of the BS.1770 K-weighting filter at ``freqs`` (Hz).

    Evaluated from the standard's 48 kHz biquads, which is exact for every
    frequency up to 24 kHz (the analysis view stops at 11025 Hz).
    """
    z = np.exp(-1j * 2.0 * np.pi * np.asarray(freqs, dtype=np.float64) / 48000.0)
    gain = np.ones(z.shape)
    for b, a in _K_WEIGHTING_48K:
        gain *= np.abs((b[0] + b[1] * z + b[2] * z * z) / (a[0] + a[1] * z + a[2] * z * z)) ** 2
    return gain


def _spectral_frames(mono: np.ndarray, *, block: int = 1024) -> tuple[np.ndarray, np.ndarray, FrameLevels]:
    """Mel power, chroma energy and frame levels of the centred STFT.

    Returns
    -------
    mel : np.ndarray [shape=(n_frames, N_MELS)]
    chroma : np.ndarray [shape=(n_frames, 12)]
    levels : FrameLevels
        Per-frame power, K-weighted energy, energy and centroid numerator.
    """
    if is_on_disk(mono):  # a long song's view, read from its file a block of frames at a time
        n_frames = 1 + (mono.size + 2 * (N_FFT // 2) - N_FFT) // HOP
    else:
        padded = np.pad(mono.astype(np.float32), (N_FFT // 2, N_FFT // 2))
        n_frames = 1 + (padded.size - N_FFT) // HOP
        windows = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames]
    hann = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    mel_fb = mel_filterbank()
    chroma_fb = chroma_filterbank()
    mel = np.empty((n_frames, N_MELS), dtype=np.float32)
    chroma = np.empty((n_frames, 12), dtype=np.float32)
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / ANALYSIS_SAMPLE_RATE)
    # columns: K-weighted energy, energy, frequency-weighted energy
    level_weights = np.stack([k_weighting_gain(freqs), np.ones_like(freqs), freqs], axis=1).astype(np.float32)
    power = np.empty(n_frames, dtype=np.float32)
    sums = np.empty((n_frames, 3), dtype=np.float64)
    for start in range(0, n_frames, block):
        if is_on_disk(mono):
            chunk = centred_windows(mono, N_FFT, HOP, start, min(block, n_frames - start))
        else:
            chunk = windows[start:start + block]
        power[start:start + block] = np.mean(chunk[:, N_FFT // 4: 3 * N_FFT // 4] ** 2, axis=1)
        spectrum = np.fft.rfft(chunk * hann, axis=1)
        magnitude_sq = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
        mel[start:start + block] = magnitude_sq @ mel_fb.T
        chroma[start:start + block] = np.sqrt(magnitude_sq) @ chroma_fb.T
        sums[start:start + block] = magnitude_sq @ level_weights
    levels = FrameLevels(frame_rate=ANALYSIS_SAMPLE_RATE / HOP, power=power, k_power=sums[:, 0],
                         energy=sums[:, 1], centroid_num=sums[:, 2])
    return mel, chroma, levels


# ---------------------------------------------------------------------------
# Onsets, tempo, beats
# ---------------------------------------------------------------------------

def _onset_strength(log_mel: np.ndarray) -> np.ndarray:
    """Half-wave rectified spectral flux of log-mel, mean over bands, normalised."""
    flux = np.maximum(0.0, np.diff(log_mel, axis=0)).mean(axis=1)
    flux = np.concatenate([[0.0], flux])
    # remove the slowly varying part (a ~1 s moving average)
    width = 43
    kernel = np.ones(width) / width
    flux = np.maximum(0.0, flux - np.convolve(flux, kernel, mode="same"))
    scale = flux.std()
    return (flux / scale) if scale > 0 else flux


def _fold_coherence(onset: np.ndarray, periods, *, frame_rate: float,
                    window_seconds: float = 8.0) -> np.ndarray:
    """How coherently the onset envelope folds at each of ``periods`` (frames)
    [shape=(len(periods),)]: the median over 8 s windows (half overlapping; a third
    of a song shorter than 24 s, 2 s at least) of ``|sum o e^(-2 pi i t / period)| / sum o``.

    1 for a pulse train at that period (or at a divisor of it), about 0.1 for noise;
    a 3:2 or 2:3 error of the period folds the beats onto three phases and cancels.
    """
    periods = np.atleast_1d(np.asarray(periods, dtype=np.float64))
    n = onset.size
    window_seconds = min(window_seconds, max(2.0, n / frame_rate / 3.0))
    span = max(8, int(window_seconds * frame_rate))
    starts = np.arange(0, max(1, n - span + 1), max(1, span // 2))
    stops = np.minimum(starts + span, n)
    cum_e = np.concatenate([[0.0], np.cumsum(onset)])
    energy = np.maximum(cum_e[stops] - cum_e[starts], 1e-12)
    turns = -2j * np.pi * np.arange(n)
    coherence = np.empty(periods.size)
    rows = max(1, (1 << 20) // max(n, 1))  # periods folded at once (16 MB of phasors)
    for first in range(0, periods.size, rows):
        phasor = onset * np.exp(turns / periods[first:first + rows, None])
        cum_z = np.concatenate([np.zeros((phasor.shape[0], 1)), np.cumsum(phasor, axis=1)], axis=1)
        coherence[first:first + rows] = np.median(np.abs(cum_z[:, stops] - cum_z[:, starts]) / energy, axis=1)
    return coherence


def _estimate_period(onset: np.ndarray, *, frame_rate: float) -> tuple[float, float]:
    """Beat period in frames (fractional) and the pulse strength, from several hypotheses.

    The first autocorrelation peak of an onset envelope is often a rhythmic figure,
    not the beat, and 2:1 and 3:2 confusions are common. So the candidates are the
    autocorrelation peaks between 40 and 240 BPM and, for the strongest, twice, half,
    three halves and two thirds of them; each is weighed by how coherently the envelope folds at it and at half of it
    (``_fold_coherence``: a wrong 3:2 or 5:4 period cancels) times a broad tempo prior
    (log-normal around 120 BPM, one octave), and the winner is
    refined to the period that folds most coherently within +-3 %. The strength is
    that folding over the song's median across periods from 40 to 240 BPM (a song
    folds better at its pulse than anywhere else: 1 means no pulse;
    ``PULSE_MIN_STRENGTH`` decides whether there is one), 0 where neither the period
    nor half of it folds with a coherence of ``PULSE_MIN_COHERENCE``.
    """
    n = onset.size
    onset = np.maximum(onset, 0.0)
    centred = onset - onset.mean()
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(centred, size)
    autocorr = np.fft.irfft(spectrum * np.conj(spectrum), size)[:n]
    if autocorr[0] <= 0:
        return frame_rate * 0.5, 0.0
    autocorr = autocorr / autocorr[0]
    autocorr /= np.maximum(1.0 - np.arange(n) / n, 0.25)  # unbias
    min_lag = int(np.floor(frame_rate * 60.0 / 240.0))
    max_lag = min(int(np.ceil(frame_rate * 60.0 / 40.0)), n // 3)
    if max_lag <= min_lag + 2:
        return frame_rate * 0.5, 0.0
    lags = np.arange(min_lag + 1, max_lag - 1)
    values = autocorr[lags]
    peaks = lags[(values > autocorr[lags - 1]) & (values >= autocorr[lags + 1]) & (values > 0)]
    if peaks.size == 0:
        return frame_rate * 0.5, 0.0
    peaks = peaks[np.argsort(autocorr[peaks])[::-1][:8]]
    candidates = set()
    for rank, lag in enumerate(peaks):
        a, b, c = autocorr[lag - 1], autocorr[lag], autocorr[lag + 1]
        denom = a - 2 * b + c
        refined = lag + (float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5)) if denom < 0 else 0.0)
        candidates.add(refined)
        if rank < 3:
            candidates.update(refined * factor for factor in (2.0, 0.5, 1.5, 2.0 / 3.0))
    candidates = [lag for lag in candidates if min_lag <= lag <= max_lag]
    grid = frame_rate * 60.0 / np.geomspace(40.0, 240.0, 48)  # (the song's folding across tempi)

    def folds(lags, window_seconds: float = 8.0) -> np.ndarray:
        # a pulse folds at its period and at half of it (its onsets are sharp, or it is
        # subdivided); a period 3:2 or 5:4 off folds at neither
        lags = np.asarray(lags, dtype=np.float64)
        both = _fold_coherence(onset, np.concatenate([lags, lags / 2.0]), frame_rate=frame_rate,
                               window_seconds=window_seconds)
        return both[:lags.size] + both[lags.size:]

    prior = [np.exp(-0.5 * np.log2(60.0 * frame_rate / lag / 120.0) ** 2) for lag in candidates]
    best = candidates[int(np.argmax(folds(candidates) * np.array(prior)))]
    fine = best * (1.0 + np.linspace(-0.03, 0.03, 41))
    period = float(fine[int(np.argmax(folds(fine, window_seconds=16.0)))])
    # noise folds at about 0.1 over 8 s windows, more over the shorter windows of a clip
    window = min(8.0, max(2.0, n / frame_rate / 3.0))
    if np.max(_fold_coherence(onset, [period, period / 2.0], frame_rate=frame_rate)) < (
            PULSE_MIN_COHERENCE * np.sqrt(8.0 / window)):
        return period, 0.0
    return period, float(folds([period])[0]) / max(float(np.median(folds(grid))), 1e-9)


def _track_beats(onset: np.ndarray, period: float, *, tightness: float = 100.0) -> np.ndarray:
    """Beat frames by dynamic programming (Ellis 2007)."""
    n = onset.size
    half = int(np.ceil(period))
    offsets = np.arange(-half, half + 1)
    window = np.exp(-0.5 * (offsets * 32.0 / period) ** 2)
    local = np.convolve(onset, window, mode="same")
    cumulative = np.zeros(n)
    backlink = -np.ones(n, dtype=np.int64)
    lo_off, hi_off = int(round(2 * period)), max(1, int(round(period / 2)))
    prev_offsets = np.arange(-lo_off, -hi_off + 1)
    penalty = -tightness * np.log(-prev_offsets / period) ** 2
    for t in range(n):
        first = t - lo_off
        if t - hi_off < 0:
            cumulative[t] = local[t]
            continue
        start = max(0, first)
        candidates = cumulative[start:t - hi_off + 1] + penalty[start - first:]
        best = int(np.argmax(candidates))
        if candidates[best] > 0:
            cumulative[t] = local[t] + candidates[best]
            backlink[t] = start + best
        else:
            cumulative[t] = local[t]
    # last beat: the best local maximum of the cumulative score near the end
    maxima = np.flatnonzero((cumulative[1:-1] >= cumulative[:-2]) & (cumulative[1:-1] > cumulative[2:])) + 1
    if maxima.size == 0:
        return np.zeros(0, dtype=np.int64)
    threshold = 0.5 * np.median(cumulative[maxima])
    last = int(maxima[cumulative[maxima] >= threshold][-1])
    beats = [last]
    while backlink[beats[-1]] >= 0:
        beats.append(int(backlink[beats[-1]]))
    beats = np.array(beats[::-1], dtype=np.int64)
    # trim weak leading/trailing beats (silence before and after the music)
    strength = local[beats]
    threshold = 0.5 * np.sqrt(np.mean(strength ** 2))
    keep = np.flatnonzero(strength >= threshold)
    if keep.size:
        beats = beats[keep[0]:keep[-1] + 1]
    return beats


def _rhythm_features(log_mel: np.ndarray, beat_seconds: np.ndarray, *, period_seconds: float,
                     frame_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Per beat and band, the onsets of the 2 s around it folded onto the beat period.

    The onset strength (log-mel flux) in three bands (below 250 Hz, to 2.5 kHz, above)
    is summed as ``o(t) exp(-2 pi i (t - t_k) / P)`` over ``t_k +- RHYTHM_CONTEXT_SECONDS``:
    its angle says where in the beat the onsets around beat ``k`` fall, measured from
    the beat itself. Returns the values [shape=(n_beats, 3), complex64] and their
    clarity (|sum| over sum of the onset strength, over the bands) [shape=(n_beats,)].
    """
    centres = mel_to_hz(np.linspace(hz_to_mel(30.0), hz_to_mel(ANALYSIS_SAMPLE_RATE / 2.0), N_MELS + 2))[1:-1]
    groups = np.digitize(centres, [250.0, 2500.0])
    rise = np.maximum(0.0, np.diff(log_mel, axis=0))
    n = log_mel.shape[0]
    period = period_seconds * frame_rate
    phasor = np.exp(-2j * np.pi * np.arange(n) / period)
    half = int(round(RHYTHM_CONTEXT_SECONDS * frame_rate))
    centre = beat_seconds * frame_rate
    lo = np.clip(np.round(centre).astype(np.int64) - half, 0, n)
    hi = np.clip(np.round(centre).astype(np.int64) + half, 0, n)
    values = np.zeros((beat_seconds.size, 3), dtype=np.complex128)
    strength = np.zeros(beat_seconds.size)
    total = np.zeros(beat_seconds.size)
    for group in range(3):
        flux = np.concatenate([[0.0], rise[:, groups == group].mean(axis=1)])
        flux = np.maximum(0.0, flux - np.convolve(flux, np.ones(43) / 43, mode="same"))
        cum_z = np.concatenate([[0.0], np.cumsum(flux * phasor)])
        cum_e = np.concatenate([[0.0], np.cumsum(flux)])
        values[:, group] = (cum_z[hi] - cum_z[lo]) * np.exp(2j * np.pi * centre / period)
        strength += np.abs(values[:, group])
        total += cum_e[hi] - cum_e[lo]
    return values.astype(np.complex64), (strength / np.maximum(total, 1e-12)).astype(np.float32)


def _beat_sync(values: np.ndarray, frame_bounds: np.ndarray) -> np.ndarray:
    """Mean of frame values over each [frame_bounds[k], frame_bounds[k+1]) (at least one frame)."""
    cumulative = np.concatenate([np.zeros((1,) + values.shape[1:]), np.cumsum(values, axis=0, dtype=np.float64)])
    starts = np.clip(frame_bounds[:-1], 0, values.shape[0] - 1)
    stops = np.clip(np.maximum(frame_bounds[1:], starts + 1), 1, values.shape[0])
    counts = (stops - starts).reshape((-1,) + (1,) * (values.ndim - 1))
    return (cumulative[stops] - cumulative[starts]) / counts


def _meter_and_phase(chroma: np.ndarray, timbre: np.ndarray, onset_at_beat: np.ndarray,
                     loudness: np.ndarray) -> tuple[int, int]:
    """Beats per bar (4 or 3) and the downbeat phase.

    Bar starts are where harmony changes and accents fall: for each meter the
    phase with the largest mean of (chroma change + onset + loudness), each
    standardised, wins; 3 is chosen only when its phase contrast clearly beats 4's.
    """
    n = chroma.shape[0]
    change = np.zeros(n)
    change[1:] = 1.0 - np.sum(chroma[1:] * chroma[:-1], axis=1)

    def standard(values: np.ndarray) -> np.ndarray:
        return (values - values.mean()) / (values.std() + 1e-9)

    score = standard(change) + 0.5 * standard(onset_at_beat) + 0.5 * standard(loudness)
    best = {}
    for meter in (4, 3):
        means = [float(np.mean(score[phase::meter])) for phase in range(meter)]
        best[meter] = (max(means) - float(np.mean(means)), int(np.argmax(means)))
    beats_per_bar = 3 if best[3][0] > 1.25 * best[4][0] + 0.05 else 4
    return beats_per_bar, best[beats_per_bar][1]


def analyze_song(mono: np.ndarray, *, sample_rate: int = ANALYSIS_SAMPLE_RATE,
                 path: str | None = None, force_grid: bool = False) -> SongAnalysis:
    """Beats, bars and per-beat features of a 22050 Hz mono signal.

    Parameters
    ----------
    mono : np.ndarray [shape=(n_samples,)], or a DecodedFile
        The model view of the song (``audio_io.to_model_view``), 22050 Hz mono (a long
        song's, kept on disk, is read a block of frames at a time: the same result).
    sample_rate : int
        Must be 22050 (the filterbanks are designed for it).
    path : str, optional
        Named in error messages.
    force_grid : bool
        Skip beat tracking and use the fixed no-pulse grid.

    Returns
    -------
    SongAnalysis

    Raises
    ------
    AudioError
        Shorter than 2 s (``MIN_ANALYSIS_SECONDS``) or digital silence.

    Examples
    --------
    >>> t = np.arange(22050 * 10) / 22050
    >>> clicks = (np.sin(2 * np.pi * 1000 * t) * (t % 0.5 < 0.02)).astype(np.float32)
    >>> round(analyze_song(clicks).tempo_bpm)  # doctest: +SKIP
    120
    """
    if sample_rate != ANALYSIS_SAMPLE_RATE:
        raise ValueError(f"analysis needs {ANALYSIS_SAMPLE_RATE} Hz audio, got {sample_rate}")
    if not is_on_disk(mono):  # (a long song's view is read from its file, a block at a time)
        mono = np.asarray(mono, dtype=np.float32)
    duration = mono.size / float(sample_rate)
    if duration < MIN_ANALYSIS_SECONDS:
        raise AudioError(f"too short to extend ({duration:.1f} s; at least {MIN_ANALYSIS_SECONDS:g} s needed)",
                         path=path)
    if peak_of(mono) < _SILENCE_PEAK:
        raise AudioError("is digital silence: nothing to extend", path=path)

    mel, chroma_frames, levels = _spectral_frames(mono)
    power = levels.power
    frame_rate = sample_rate / HOP
    log_mel = np.log10(mel + 1e-10)
    log_mel = np.maximum(log_mel, log_mel.max() - 8.0)  # 80 dB range
    onset = _onset_strength(log_mel)
    period, strength = _estimate_period(onset, frame_rate=frame_rate)

    fallback = None
    beats = np.zeros(0, dtype=np.int64)
    if not force_grid and strength >= PULSE_MIN_STRENGTH:
        beats = _track_beats(onset, period)
    if beats.size >= 2:
        intervals = np.diff(beats)
        regular = np.median(np.abs(intervals - np.median(intervals))) <= 0.1 * period + 1
    else:
        regular = False
    n_frames = mel.shape[0]
    if beats.size < MIN_BEATS or not regular:
        fallback = "no-pulse"
        force_grid = True
        grid = min(NO_PULSE_GRID_SECONDS, duration / MIN_GRID_POINTS)
        beat_seconds = np.arange(0.0, duration - grid / 2, grid)
        tempo = 60.0 / grid
    else:
        # beat times: frame centres (the STFT is centred, so frame k is at k * HOP)
        beat_seconds = beats * HOP / float(sample_rate)
        tempo = 60.0 * frame_rate / period
    if beat_seconds.size < MIN_BEATS:
        raise AudioError(f"too short to extend (only {beat_seconds.size} beats found)", path=path)

    beat_frames = np.round(beat_seconds * frame_rate).astype(np.int64)
    period_frames = int(round(60.0 / tempo * frame_rate))
    bounds = np.concatenate([beat_frames, [min(beat_frames[-1] + period_frames, n_frames)]])
    chroma = _beat_sync(chroma_frames, bounds)
    chroma /= np.linalg.norm(chroma, axis=1, keepdims=True) + 1e-9
    timbre_frames = log_mel @ _dct_matrix(N_MELS, N_TIMBRE + 1).T
    timbre = _beat_sync(timbre_frames[:, 1:], bounds)
    loudness = 10.0 * np.log10(_beat_sync(power, bounds) + 1e-10)
    mel_centres = mel_to_hz(np.linspace(hz_to_mel(30.0), hz_to_mel(sample_rate / 2.0), N_MELS + 2))[1:-1]
    mel_energy = _beat_sync(mel, bounds)
    centroid = (mel_energy @ mel_centres) / (mel_energy.sum(axis=1) + 1e-12)
    onset_at_beat = onset[np.clip(beat_frames, 0, n_frames - 1)]
    beats_per_bar, phase = _meter_and_phase(chroma, timbre, onset_at_beat, loudness)
    if force_grid:
        beats_per_bar, phase = 4, 0
    # spectra on either side of candidate cut points: every other frame from half a
    # beat before each beat to a quarter beat after
    offsets = np.arange(-max(1, period_frames // 2), max(1, period_frames // 4) + 1, 2)
    log_mel_db = 10.0 * log_mel
    at = beat_frames[:, None] + offsets[None, :]
    before = log_mel_db[np.clip(at - 2, 0, n_frames - 1)]
    after = log_mel_db[np.clip(at + 2, 0, n_frames - 1)]
    rhythm = clarity = None
    if not force_grid:
        rhythm, clarity = _rhythm_features(log_mel, beat_seconds, period_seconds=60.0 / tempo, frame_rate=frame_rate)
    return SongAnalysis(
        duration_seconds=duration,
        beat_seconds=beat_seconds.astype(np.float64),
        tempo_bpm=float(tempo),
        beats_per_bar=beats_per_bar,
        downbeat_phase=phase,
        chroma=chroma.astype(np.float32),
        timbre=timbre.astype(np.float32),
        loudness_db=loudness.astype(np.float32),
        pulse_strength=float(strength),
        fallback=fallback,
        centroid_hz=centroid.astype(np.float32),
        mel_before_db=before.astype(np.float32),
        mel_after_db=after.astype(np.float32),
        levels=levels,
        rhythm=rhythm,
        rhythm_clarity=clarity,
        onset=onset.astype(np.float32),
    )
