"""Extension-quality metrics: does an extended song sound like the song itself, only longer?

Every measure compares an ``extended`` file with its ``original``; they serve the
extension benchmark (``benchmarks/extension_quality.py``) and ``harmonizer evaluate
--extension ORIGINAL EXTENDED``. Nothing here is on the fast path of ``extend``, so
librosa, scipy and pyloudnorm are used freely (imported inside the functions).

Measures (see ``extension_report`` for the JSON layout and ``targets_met`` for the
targets of issue 3):

duration
    Output length, error against the requested length, sample rate and channels kept.
seams
    How detectable each seam (splice point) is, compared with the original's own
    ordinary beats, by three local measures at a point ``t``:

    * ``crest``: the largest absolute first difference of the samples within +-5 ms of
      ``t`` over their RMS (largest over channels). A hard splice at a non-zero
      crossing is a step: a large sample-to-sample jump for the local level.
    * ``novelty``: mean absolute difference (dB) between the 40-band mel spectra of the
      50 ms before and the 50 ms after ``t`` (mono). A splice between unrelated places
      changes the spectrum abruptly.
    * ``broadband``: for lossy sources only, the energy above the codec's cut-off
      frequency (estimated from the original's long-term spectrum; measured from 1 kHz
      above it) in +-2.5 ms around
      ``t``, over its median in the 250 ms around. mp3 content has almost nothing
      above the cut-off; the step of a splice is broadband.

    Each is reported as the 95th percentile over the seams, the 95th percentile over
    the original's beats (``librosa.beat.beat_track``) and their ratio (target <= 1.1).
    An output has a handful of seams and a song a few hundred beats, and the 95th
    percentile of 7 values is nearly their maximum: 7 beats drawn at random exceed the
    beats' own 95th percentile about a third of the time. So beside the ratio,
    ``p_value`` is the share of 1000 random draws of as many beats as there are seams
    whose 95th percentile reaches the seams' (small, say < 0.05: the seams stand out
    beyond chance; large: a ratio above 1.1 may be the luck of a few seams).
    Without seam times (another tool's output), seams are detected blindly:
    ``detect_seams`` aligns the output to the original (log-mel frames, a dynamic
    programme that pays a penalty for every jump), takes the jumps of the alignment
    path, and refines each to the sample where the output stops matching the original
    at the old offset and starts matching it at the new one. Jumps between identical
    material (the output still matches the old place afterwards) are dropped. This
    works for outputs assembled from the original's own samples (loopers, beat-graph
    extenders; ``matched_share`` near 1); for a resynthesis (``matched_share`` low) the
    detected seams mean little.
dips
    The deepest drop of the 1 s level (dB, 0.25 s hop) below its running median over
    +-10 s, away from the first and last 5 s, for output and original (target: output
    <= original + 1 dB). A running median, not the global one: an extension that plays
    the loud sections more often raises the global median and would show a deeper
    "dip" where nothing changed.
repetition
    Chroma + MFCC frames (0.5 s windows every 0.1 s) compared over an 8 s context
    (frame cosine averaged along the diagonal): each frame's best earlier match (at
    least 4 s back) and every match within 0.02 of it; the frame "repeats" when the
    best similarity is at least 0.95 (near-exact repetition). The share of frames at
    the single most common lag (+-0.3 s): ``past_original`` over every frame past the
    original's length (a plain loop ~1) and ``repeating`` over every repeating frame
    of the output (compared with the original's own ``repeating``). Calibrated on the
    12 songs of ../shared/music/songs: a naive tile to 300 s scores a median 1.00 on
    ``past_original`` (lowest 0.83), the songs' second halves (as if past their first
    half) 0.13, the songs themselves 0.62 on ``repeating``. A song that never
    repeats itself (under 5 % of its frames repeat) has no ``repeating`` share of its
    own; its outputs are held to the corpus median, 0.62, instead.
ending
    Correlation of the last 10 s of output and original at the best offset within
    +-50 ms, that offset, and the trailing silence of each (padding or a cut tail).
mood
    Tempo (BPM), key (Krumhansl-Schmuckler on chroma), integrated loudness (LUFS,
    ITU-R BS.1770 via pyloudnorm) and energy-weighted spectral centroid of each, and
    their differences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from harmonizer_cli.core.audio_io import MODEL_SAMPLE_RATE, Audio, resample, to_mono
from harmonizer_cli.errors import AudioError

__all__ = [
    "ANALYSIS_SAMPLE_RATE",
    "TARGETS",
    "OriginalAnalysis",
    "SeamDetection",
    "estimate_codec_cutoff",
    "seam_crest",
    "seam_novelty",
    "seam_broadband",
    "detect_beats",
    "detect_seams",
    "level_dip_db",
    "repetition_features",
    "repetition_shares",
    "ending_match",
    "trailing_silence_seconds",
    "estimate_key",
    "mood_descriptors",
    "analyse_original",
    "extension_report",
    "targets_met",
    "summary_rows",
    "REPETITION_FRAME_SECONDS",
    "MIN_REPEATING_FRACTION",
    "REPEATING_REFERENCE",
]

#: Rate of the 22050 Hz mono view used for beats, features and mood.
ANALYSIS_SAMPLE_RATE = MODEL_SAMPLE_RATE

#: The targets of issue 3 (per file; medians over songs are the benchmark's business).
TARGETS = {
    "duration_error_seconds": 0.01,
    "seam_ratio": 1.1,
    "dip_excess_db": 1.0,
    "repetition_past_original": 0.3,
    "ending_correlation": 0.99,
    "ending_lag_seconds": 0.01,
    "padded_silence_seconds": 0.05,
    "tempo_delta_bpm": 1.0,
    "loudness_delta_lu": 0.75,
    "loudness_median_delta_lu": 0.1,
    "centroid_delta_percent": 4.0,
}

#: Hop of the repetition frames (see ``repetition_features``).
REPETITION_FRAME_SECONDS = 0.1

#: Below this share of repeating frames a song "never repeats itself" and its own
#: ``repeating`` share is undefined; outputs are then held to the corpus median instead.
MIN_REPEATING_FRACTION = 0.05

#: Median ``repeating`` share of the 12 songs in ../shared/music/songs (calibration).
REPEATING_REFERENCE = 0.62

_EPS = 1e-12
_MAX_REPETITION_FRAMES = 6000
_KEY_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Krumhansl-Kessler key profiles (C major, C minor).
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


# --------------------------------------------------------------------------- helpers


def _samples_2d(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float32)
    return samples[:, None] if samples.ndim == 1 else samples


def _analysis_view(audio: Audio) -> np.ndarray:
    """22050 Hz mono float32 (the model's view)."""
    return resample(to_mono(audio.samples), from_rate=audio.sample_rate, to_rate=ANALYSIS_SAMPLE_RATE)


def _p95(values: Sequence[float] | np.ndarray) -> float | None:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.percentile(values, 95)) if values.size else None


def _draw_share_above(values: np.ndarray, n: int, level: float | None, *, draws: int = 1000,
                      seed: int = 0) -> float | None:
    """Share of random draws of ``n`` of ``values`` whose 95th percentile is >= ``level``.

    A p-value for "the seams are no more detectable than ordinary beats": with a few
    seams, their 95th percentile is nearly their maximum, which random beats exceed
    only so often."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0 or level is None or n <= 0:
        return None
    rng = np.random.default_rng(seed)
    size = min(n, values.size)
    picks = np.stack([rng.choice(values, size=size, replace=n > values.size) for _ in range(draws)])
    return float(np.mean(np.percentile(picks, 95, axis=1) >= level))


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None:
        return None
    return float(numerator / max(denominator, _EPS))


def _as_audio(audio: Audio | np.ndarray, sample_rate: int | None) -> Audio:
    if isinstance(audio, Audio):
        return audio
    if sample_rate is None:
        raise AudioError("sample_rate is required with a plain array")
    return Audio(_samples_2d(audio), int(sample_rate))


# --------------------------------------------------------------------------- seams


def estimate_codec_cutoff(
    samples: np.ndarray, *, sample_rate: int, rise_db: float = 25.0, min_band_hz: float = 800.0
) -> float | None:
    """Estimate a lossy codec's low-pass cut-off from the long-term spectrum.

    The floor is the median long-term level (Welch, 4096-point) of the top 10 % of the
    band below Nyquist; the cut-off is the highest frequency whose level (smoothed over
    5 bins) is ``rise_db`` above that floor. The songs in ../shared/music (mp3, 256
    kbit/s) give 17.5-19.5 kHz; a quiet piano with no treble about 14 kHz (the measure
    only needs a band where the original has next to nothing).

    Parameters
    ----------
    samples : np.ndarray [shape=(n_samples,) or (n_samples, n_channels)]
        The original, at its own rate.
    sample_rate : int
        Samples per second.
    rise_db : float
        How far above the floor content must be.
    min_band_hz : float
        If less than this is left between the cut-off and Nyquist, the source is taken
        as full-band and ``None`` is returned.

    Returns
    -------
    float or None
        Cut-off in Hz, or ``None`` for a full-band source.
    """
    from scipy.signal import welch

    mono = to_mono(_samples_2d(samples)).astype(np.float64)
    if mono.size < 4096:
        return None
    freqs, power = welch(mono, fs=sample_rate, nperseg=4096)
    level = 10.0 * np.log10(power + 1e-30)
    level = np.convolve(level, np.ones(5) / 5.0, mode="same")
    nyquist = sample_rate / 2.0
    inner = freqs < 0.99 * nyquist  # the last bins are distorted by the smoothing
    floor = float(np.median(level[(freqs >= 0.9 * nyquist) & inner]))
    above = np.nonzero((level > floor + rise_db) & inner & (freqs > 1000.0))[0]
    if above.size == 0:
        return None
    cutoff = float(freqs[above[-1]])
    if nyquist - cutoff < min_band_hz:
        return None
    return cutoff


def _windows_around(samples: np.ndarray, centre: int, half: int) -> np.ndarray:
    start, stop = max(0, centre - half), min(samples.shape[0], centre + half + 1)
    return samples[start:stop]


def seam_crest(
    samples: np.ndarray, *, sample_rate: int, times: Sequence[float], half_window_seconds: float = 0.005
) -> np.ndarray:
    """Local sample-step crest at each time: max |first difference| / RMS within +-5 ms.

    Parameters
    ----------
    samples : np.ndarray [shape=(n_samples,) or (n_samples, n_channels)]
    sample_rate : int
    times : sequence of float
        Points in seconds.
    half_window_seconds : float
        Half the window (5 ms).

    Returns
    -------
    np.ndarray [shape=(len(times),)]
        The largest value over channels (NaN for points outside the signal).
    """
    samples = _samples_2d(samples)
    half = max(2, int(round(half_window_seconds * sample_rate)))
    values = np.full(len(times), np.nan)
    for k, time in enumerate(times):
        centre = int(round(time * sample_rate))
        if not 0 <= centre < samples.shape[0]:
            continue
        window = _windows_around(samples, centre, half).astype(np.float64)
        if window.shape[0] < 3:
            continue
        step = np.abs(np.diff(window, axis=0)).max(axis=0)
        rms = np.sqrt(np.mean(window**2, axis=0)) + 1e-4  # -80 dBFS floor: silence reads 0
        values[k] = float(np.max(step / rms))
    return values


def seam_novelty(
    samples: np.ndarray, *, sample_rate: int, times: Sequence[float], window_seconds: float = 0.05,
    n_bands: int = 40, range_db: float = 80.0,
) -> np.ndarray:
    """Spectral novelty across each point: mel-band dB distance of the 50 ms before/after.

    Parameters
    ----------
    samples : np.ndarray [shape=(n_samples,) or (n_samples, n_channels)]
        Mixed to mono.
    sample_rate : int
    times : sequence of float
        Points in seconds.
    window_seconds : float
        Length of each side (50 ms).
    n_bands : int
        Mel bands.
    range_db : float
        Levels are floored this far below the louder side's loudest band.

    Returns
    -------
    np.ndarray [shape=(len(times),)]
        Mean absolute band difference in dB (NaN where a side is outside the signal).
    """
    import librosa

    mono = to_mono(_samples_2d(samples)).astype(np.float64)
    length = max(16, int(round(window_seconds * sample_rate)))
    n_fft = int(2 ** np.ceil(np.log2(length)))
    window = np.hanning(length)
    mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_bands, fmin=30.0,
                              fmax=min(16000.0, sample_rate / 2.0))
    values = np.full(len(times), np.nan)
    for k, time in enumerate(times):
        centre = int(round(time * sample_rate))
        if centre - length < 0 or centre + length > mono.size:
            continue
        before = np.abs(np.fft.rfft(mono[centre - length:centre] * window, n_fft)) ** 2
        after = np.abs(np.fft.rfft(mono[centre:centre + length] * window, n_fft)) ** 2
        levels = 10.0 * np.log10(np.stack([mel @ before, mel @ after]) + 1e-20)
        levels = np.maximum(levels, levels.max() - range_db)
        values[k] = float(np.mean(np.abs(levels[0] - levels[1])))
    return values


def seam_broadband(
    samples: np.ndarray, *, sample_rate: int, times: Sequence[float], cutoff_hz: float | None,
    half_window_seconds: float = 0.0025, context_seconds: float = 0.25, margin_hz: float = 1000.0,
) -> np.ndarray:
    """Energy above the codec cut-off at each point, relative to the 250 ms around it.

    The signal near each point is high-passed (8th-order Butterworth, zero phase) at
    ``cutoff_hz + margin_hz`` (1 kHz above the cut-off, clear of the codec's own
    transition band); the value is the mean-square of +-2.5 ms around the
    point over the median mean-square of same-length windows in the +-250 ms around
    (the centre excluded). A power floor of 1e-12 keeps silent bands at about 1.

    Parameters
    ----------
    samples : np.ndarray [shape=(n_samples,) or (n_samples, n_channels)]
    sample_rate : int
    times : sequence of float
    cutoff_hz : float or None
        From ``estimate_codec_cutoff`` of the original; ``None`` gives all NaN.

    Returns
    -------
    np.ndarray [shape=(len(times),)]
        Power ratio, the largest over channels.
    """
    values = np.full(len(times), np.nan)
    if cutoff_hz is None:
        return values
    from scipy.signal import butter, sosfiltfilt

    samples = _samples_2d(samples)
    edge = cutoff_hz + margin_hz
    if edge > 0.97 * sample_rate / 2.0 - 500.0:
        return values  # no usable band above the cut-off
    sos = butter(8, edge, btype="highpass", fs=sample_rate, output="sos")
    half = max(1, int(round(half_window_seconds * sample_rate)))
    context = int(round(context_seconds * sample_rate))
    pad = int(0.02 * sample_rate)
    width = 2 * half + 1
    for k, time in enumerate(times):
        centre = int(round(time * sample_rate))
        start, stop = centre - context - pad, centre + context + pad
        if start < 0 or stop > samples.shape[0]:
            continue
        high = sosfiltfilt(sos, samples[start:stop].astype(np.float64), axis=0)
        power = high**2
        local = centre - start
        kernel = np.ones(width) / width
        energy = np.stack([np.convolve(power[:, c], kernel, mode="same") for c in range(power.shape[1])], axis=1)
        around = np.r_[pad + half: local - 2 * width, local + 2 * width: energy.shape[0] - pad - half]
        around = around[:: max(1, half)]
        reference = np.median(energy[around], axis=0)
        values[k] = float(np.max((energy[local] + _EPS) / (reference + _EPS)))
    return values


def detect_beats(audio: Audio) -> tuple[np.ndarray, float]:
    """Beat times (s) and tempo (BPM) of a recording with ``librosa.beat.beat_track``.

    Returns
    -------
    beat_times : np.ndarray [shape=(n_beats,)]
        Seconds.
    tempo_bpm : float
    """
    return _beats_of_view(_analysis_view(audio))


def _beats_of_view(view: np.ndarray, *, start_bpm: float | None = None) -> tuple[np.ndarray, float]:
    """Beats (s) and tempo (BPM) of a 22050 Hz mono view.

    The tempo is 60 over the least-squares slope of beat time against beat number,
    not librosa's tempo estimate, which moves in steps of one onset frame (about 3 BPM
    at 120 BPM). ``start_bpm`` centres librosa's tempo prior (the original's tempo when
    measuring an output, so both are tracked at the same metrical level).
    """
    import librosa

    tempo, beats = librosa.beat.beat_track(y=view, sr=ANALYSIS_SAMPLE_RATE, hop_length=512, units="time",
                                           start_bpm=120.0 if start_bpm is None else float(start_bpm))
    beats = np.asarray(beats, dtype=float)
    tempo = float(np.atleast_1d(tempo)[0])
    if beats.size >= 8:
        slope = float(np.polyfit(np.arange(beats.size), beats, 1)[0])
        if slope > 0:
            tempo = 60.0 / slope
    return beats, tempo


# --------------------------------------------------------------------------- blind seams


@dataclass
class SeamDetection:
    """Seams found by aligning an output to its original.

    Attributes
    ----------
    times : np.ndarray [shape=(n_seams,)]
        Output times of the seams, seconds.
    source_times : list of (float, float)
        For each seam, the original's time played just before and just after it.
    matched_share : float
        Share of output frames whose alignment similarity is at least 0.9: near 1 for
        an output assembled from the original's own audio, low for a resynthesis (then
        the detected seams mean little).
    """

    times: np.ndarray
    source_times: list = field(default_factory=list)
    matched_share: float = 0.0


def _alignment_features(view: np.ndarray, *, hop: int, context: int, quiet_db: float = -60.0) -> np.ndarray:
    """Stacked, normalised log-mel frames; frames quieter than ``quiet_db`` dBFS all read
    as one "silence" vector (so silence matches silence, and nothing else)."""
    import librosa

    mel = librosa.feature.melspectrogram(y=view, sr=ANALYSIS_SAMPLE_RATE, n_fft=2048, hop_length=hop,
                                         n_mels=48, center=False)
    level = 10.0 * np.log10(mel + 1e-12)
    n_frames = level.shape[1]
    rms = librosa.feature.rms(y=view, frame_length=2048, hop_length=hop, center=False)[0][:n_frames]
    quiet = 20.0 * np.log10(rms + 1e-12) < quiet_db
    level = np.maximum(level, level.max(axis=0, keepdims=True) - 80.0).T  # [n_frames, 48]
    level = level - level.mean(axis=1, keepdims=True)
    level /= np.linalg.norm(level, axis=1, keepdims=True) + 1e-9
    level = np.concatenate([level, np.zeros((n_frames, 1))], axis=1)
    level[quiet] = 0.0
    level[quiet, -1] = 1.0
    stacked = np.concatenate(
        [level[np.minimum(np.arange(n_frames) + k, n_frames - 1)] for k in range(context)], axis=1
    )
    stacked /= np.linalg.norm(stacked, axis=1, keepdims=True) + 1e-9
    return stacked.astype(np.float32)


def _refine_lag(out: np.ndarray, orig: np.ndarray, *, start: int, stop: int, lag: int, search: int) -> int:
    """Sample lag (orig index - out index) that best matches ``out[start:stop]``, near ``lag``."""
    from scipy.signal import correlate

    start, stop = max(0, start), min(out.size, stop)
    seg = out[start:stop].astype(np.float64)
    lo = start + lag - search
    if seg.size < 64 or lo < 0 or lo + seg.size + 2 * search > orig.size or not np.any(seg):
        return lag
    region = orig[lo: lo + seg.size + 2 * search].astype(np.float64)
    scores = correlate(region, seg, mode="valid", method="fft")
    cum = np.concatenate([[0.0], np.cumsum(region**2)])
    energy = cum[seg.size:] - cum[: cum.size - seg.size]
    scores = scores / np.sqrt(np.maximum(energy, 0.0) + 1e-12)
    return int(lo + int(np.argmax(scores)) - start)


def detect_seams(
    original: Audio, extended: Audio, *, hop: int = 1024, context: int = 5, jump_penalty: float = 1.5,
    min_segment_seconds: float = 1.0,
) -> SeamDetection:
    """Find the seams of an output made of pieces of the original, without being told.

    1. Log-mel frames (hop 1024 at 22050 Hz, 46 ms) of both, each stacked with its next
       4 frames and normalised (frames below -60 dBFS all read as "silence"); the cost
       of pairing two frames is ``1 - cosine``.
    2. A dynamic programme over output frames picks, for each, an original frame: going
       on to the next original frame is free, any other move (a jump) costs
       ``jump_penalty``. An output that copies the original gets one path with a jump
       at each splice; identical repeated material causes no spurious jump.
    3. Jumps less than ``min_segment_seconds`` apart (a short detour) make one seam.
       Each seam is refined to the sample: the lags before and after it are refined by
       cross-correlation away from the seam, and the seam is the change point that best
       splits the output into "matches the original at the old lag" and "at the new
       lag". With a crossfade this is its middle.

    Parameters
    ----------
    original, extended : Audio
    hop : int
        Frame hop at 22050 Hz.
    context : int
        Frames stacked.
    jump_penalty : float
        Cost of a jump, in units of per-frame mismatch.
    min_segment_seconds : float
        Jumps closer than this are merged.

    Returns
    -------
    SeamDetection
    """
    orig = _analysis_view(original)
    out = _analysis_view(extended)
    f_orig = _alignment_features(orig, hop=hop, context=context)
    f_out = _alignment_features(out, hop=hop, context=context)
    n_out, n_orig = f_out.shape[0], f_orig.shape[0]
    if n_out < 2 or n_orig < 2:
        return SeamDetection(times=np.zeros(0), matched_share=0.0)
    jumped = np.zeros((n_out, n_orig), dtype=bool)
    best_prev = np.zeros(n_out, dtype=np.int64)
    total = (1.0 - f_orig @ f_out[0]).astype(np.float64)
    stay = np.full(n_orig, np.inf)
    for j in range(1, n_out):
        cost = 1.0 - f_orig @ f_out[j]
        k = int(np.argmin(total))
        best_prev[j] = k
        jump = total[k] + jump_penalty
        stay[1:] = total[:-1]
        jumped[j] = jump < stay
        total = np.minimum(stay, jump) + cost
    path = np.zeros(n_out, dtype=np.int64)
    path[-1] = int(np.argmin(total))
    for j in range(n_out - 1, 0, -1):
        path[j - 1] = best_prev[j] if jumped[j, path[j]] else path[j] - 1
    similarity = np.einsum("ij,ij->i", f_out, f_orig[path])
    matched_share = float(np.mean(similarity >= 0.9))

    jumps = [j for j in range(1, n_out) if path[j] != path[j - 1] + 1]
    min_frames = max(1, int(round(min_segment_seconds * ANALYSIS_SAMPLE_RATE / hop)))
    groups: list[list[int]] = []
    for j in jumps:
        if groups and j - groups[-1][-1] < min_frames:
            groups[-1].append(j)
        else:
            groups.append([j])
    fuzzy = (context + 3) * hop  # the stacked frames blur a seam over this many samples
    span = ANALYSIS_SAMPLE_RATE // 2
    times, sources = [], []
    for group in groups:
        first, last = group[0], group[-1]
        lag_before = int(path[first - 1] - (first - 1)) * hop
        lag_after = int(path[last] - last) * hop
        lo, hi = first * hop - fuzzy, last * hop + fuzzy
        lag_before = _refine_lag(out, orig, start=lo - span, stop=lo, lag=lag_before, search=hop)
        lag_after = _refine_lag(out, orig, start=hi, stop=hi + span, lag=lag_after, search=hop)
        seam = _change_point(out, orig, lo=lo, hi=hi, lag_before=lag_before, lag_after=lag_after)
        if _continues(out, orig, at=seam, lag=lag_before) or _continues(out, orig, at=seam, lag=-lag_after, back=True):
            continue  # the output goes on matching the old place (a jump between identical material)
        times.append(seam / ANALYSIS_SAMPLE_RATE)
        sources.append(((seam + lag_before) / ANALYSIS_SAMPLE_RATE, (seam + lag_after) / ANALYSIS_SAMPLE_RATE))
    return SeamDetection(times=np.asarray(times, dtype=float), source_times=sources, matched_share=matched_share)


def _continues(out: np.ndarray, orig: np.ndarray, *, at: int, lag: int, back: bool = False,
               length: int = ANALYSIS_SAMPLE_RATE // 5, max_residual: float = 0.01) -> bool:
    """Whether ``out`` after ``at`` (before it, with ``back``) still equals ``orig`` at ``lag``."""
    if back:
        lag = -lag
        start, stop = at - length, at
    else:
        start, stop = at, at + length
    if start < 0 or stop > out.size or start + lag < 0 or stop + lag > orig.size:
        return False
    segment = out[start:stop].astype(np.float64)
    energy = float(np.sum(segment**2))
    if energy <= 1e-10:
        return False
    residual = float(np.sum((segment - orig[start + lag: stop + lag]) ** 2))
    return residual / energy < max_residual


def _change_point(out: np.ndarray, orig: np.ndarray, *, lo: int, hi: int, lag_before: int, lag_after: int) -> int:
    """Split point of ``out[lo:hi]`` into "equals orig at lag_before" then "at lag_after"."""
    lo = max(lo, 0, -lag_before, -lag_after)
    hi = min(hi, out.size, orig.size - lag_before, orig.size - lag_after)
    if hi - lo < 4:
        return int(max(lo, 0))
    segment = out[lo:hi].astype(np.float64)
    err_before = (segment - orig[lo + lag_before: hi + lag_before]) ** 2
    err_after = (segment - orig[lo + lag_after: hi + lag_after]) ** 2
    cum_before = np.concatenate([[0.0], np.cumsum(err_before)])
    cum_after = np.concatenate([[0.0], np.cumsum(err_after)])
    split = cum_before + (cum_after[-1] - cum_after)
    return int(lo + int(np.argmin(split)))


# --------------------------------------------------------------------------- level dips


def level_dip_db(
    audio: Audio | np.ndarray, *, sample_rate: int | None = None, window_seconds: float = 1.0,
    hop_seconds: float = 0.25, edge_seconds: float = 5.0, reference_seconds: float | None = 10.0,
) -> float:
    """Deepest drop of the 1 s level below the level around it, in dB, away from the edges.

    The reference is the running median of the 1 s level over +-``reference_seconds``
    (10 s): a dip is a drop below the surrounding music, such as a loop that plays the
    song's fade-out and restarts. (A global median would move whenever an extension
    plays loud and quiet sections in other proportions than the song, with no new
    dip; ``reference_seconds=None`` gives that variant.)

    Parameters
    ----------
    audio : Audio or np.ndarray [shape=(n_samples,) or (n_samples, n_channels)]
    sample_rate : int, optional
        Required with an array.
    window_seconds, hop_seconds : float
        Level window (1 s) and hop (0.25 s).
    edge_seconds : float
        Windows overlapping the first or last 5 s are left out (the intro and the
        outro are the song's own; a dip *inside* is what a loop restart shows).
    reference_seconds : float or None
        Half-width of the running median; None for the global median.

    Returns
    -------
    float
        Largest ``reference - level`` (dB, levels floored at -100 dBFS); 0 when the
        signal is too short.
    """
    from scipy.ndimage import median_filter

    audio = _as_audio(audio, sample_rate)
    mono = to_mono(audio.samples).astype(np.float64)
    rate = audio.sample_rate
    width, hop = int(window_seconds * rate), max(1, int(hop_seconds * rate))
    edge = int(edge_seconds * rate)
    if mono.size < width + 2 * edge:
        edge = max(0, (mono.size - width) // 4)
    cum = np.concatenate([[0.0], np.cumsum(mono**2)])
    starts = np.arange(edge, mono.size - width - edge + 1, hop)
    if starts.size < 2:
        return 0.0
    power = (cum[starts + width] - cum[starts]) / width
    level = 10.0 * np.log10(power + 1e-10)
    if reference_seconds is None:
        return float(np.median(level) - level.min())
    half = max(1, int(round(reference_seconds / hop_seconds)))
    reference = median_filter(level, size=2 * half + 1, mode="nearest")
    return float(np.max(reference - level))


# --------------------------------------------------------------------------- repetition


def repetition_features(
    view: np.ndarray, *, frame_seconds: float = 0.1, window_seconds: float = 0.5
) -> np.ndarray:
    """Chroma + MFCC frames of a 22050 Hz mono signal, for repetition analysis.

    librosa chroma (n_fft 4096) and MFCCs (n_fft 2048) at a 512-sample hop are averaged
    over ``window_seconds`` windows every ``frame_seconds``: long windows make the
    features of an exact copy nearly the same whatever its offset to the frame grid.

    Parameters
    ----------
    view : np.ndarray [shape=(n_samples,)]
        22050 Hz mono.
    frame_seconds : float
        Hop between frames (0.1 s).
    window_seconds : float
        Averaging window (0.5 s).

    Returns
    -------
    np.ndarray [shape=(n_frames, 12 + 19)]
        Per frame: the L2-normalised mean chroma, then the 19 MFCCs (without c0)
        standardised over the signal and scaled to unit norm on average.
    """
    import librosa

    hop = 512
    chroma = librosa.feature.chroma_stft(y=view, sr=ANALYSIS_SAMPLE_RATE, n_fft=4096, hop_length=hop, tuning=0.0)
    mfcc = librosa.feature.mfcc(y=view, sr=ANALYSIS_SAMPLE_RATE, n_mfcc=20, n_fft=2048, hop_length=hop)[1:]
    n = min(chroma.shape[1], mfcc.shape[1])
    both = np.concatenate([chroma[:, :n], mfcc[:, :n]], axis=0).T.astype(np.float64)  # [n, 31]
    if n == 0:
        return np.zeros((0, 31))
    cum = np.concatenate([np.zeros((1, both.shape[1])), np.cumsum(both, axis=0)])
    hop_seconds = hop / ANALYSIS_SAMPLE_RATE
    width = max(1, int(round(window_seconds / hop_seconds)))
    centres = np.arange(0.0, n * hop_seconds, frame_seconds) / hop_seconds
    lo = np.clip(np.round(centres - width / 2).astype(int), 0, n - 1)
    hi = np.clip(lo + width, 1, n)
    frames = (cum[hi] - cum[lo]) / (hi - lo)[:, None]
    chroma_f, mfcc_f = frames[:, :12], frames[:, 12:]
    chroma_f = chroma_f / (np.linalg.norm(chroma_f, axis=1, keepdims=True) + 1e-9)
    mfcc_f = (mfcc_f - mfcc_f.mean(0)) / (mfcc_f.std(0) + 1e-9) / np.sqrt(mfcc_f.shape[1])
    return np.concatenate([chroma_f, mfcc_f], axis=1)


def _earlier_matches(
    features: np.ndarray, *, context: int, min_lag: int, tie: float, tolerance: int, n_chroma: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Best earlier-match similarity per frame, and which lags are (near-)best.

    Returns
    -------
    best : np.ndarray [shape=(n,)]
        Context similarity of each frame's best match at least ``min_lag`` back
        (-inf when there is none).
    at_lag : np.ndarray [shape=(n, n), dtype=bool]
        ``at_lag[t, lag]``: a match within ``tie`` of the best sits within
        ``+-tolerance`` frames of ``lag``.
    """
    from scipy.ndimage import maximum_filter1d

    chroma = features[:, :n_chroma].astype(np.float32)
    timbre = features[:, n_chroma:].astype(np.float32)
    timbre = timbre / (np.linalg.norm(timbre, axis=1, keepdims=True) + 1e-9)
    sim = 0.5 * (chroma @ chroma.T) + 0.5 * (timbre @ timbre.T)  # [n, n], frame cosine
    n = sim.shape[0]
    # context: average along the diagonal over the last `context` frames (t-k, s-k)
    smoothed = sim.copy()
    for k in range(1, min(context, n)):  # fewer frames than the context: use what there is
        smoothed[k:, k:] += sim[: n - k, : n - k]
    counts = np.minimum(np.arange(n) + 1, context).astype(np.float32)
    smoothed /= np.minimum(counts[:, None], counts[None, :])
    # lag-indexed: by_lag[t, lag] = smoothed[t, t - lag], for min_lag <= lag <= t
    rows = np.arange(n)[:, None]
    lags = np.arange(n)[None, :]
    source = rows - lags
    valid = (source >= 0) & (lags >= min_lag)
    by_lag = np.where(valid, np.take_along_axis(smoothed, np.clip(source, 0, n - 1), axis=1), np.float32(-np.inf))
    best = by_lag.max(axis=1)
    near = by_lag >= (best[:, None] - tie)
    near &= np.isfinite(by_lag)
    if tolerance > 0:
        near = maximum_filter1d(near.astype(np.uint8), size=2 * tolerance + 1, axis=1).astype(bool)
    return best.astype(np.float64), near


def repetition_shares(
    features: np.ndarray, *, start_frame: int = 0, frame_seconds: float = 0.1, context_seconds: float = 8.0,
    min_lag_seconds: float = 4.0, threshold: float = 0.95, tolerance_seconds: float = 0.3, tie: float = 0.02,
) -> dict:
    """Share of frames whose best earlier match sits at one single lag.

    For each frame ``t``, its best earlier match is the frame ``s <= t - min_lag`` of
    highest context similarity (frame cosine averaged along the diagonal over the last
    ``context`` frames; chroma and timbre weighted equally). ``t`` *repeats* when that
    similarity is at least ``threshold``. Matches within ``tie`` of the best count as
    best too (an exact copy and a copy-pasted bar are equally good), and a frame sits
    at lag ``L`` when one of its best matches is within ``+-tolerance`` of ``L``. The
    modal lag is the lag at which most frames sit.

    Parameters
    ----------
    features : np.ndarray [shape=(n_frames, n_features)]
        From ``repetition_features`` (``frame_seconds`` frames).
    start_frame : int
        Frames from here on make the ``past`` share (the part past the original's length).
    frame_seconds, context_seconds, min_lag_seconds, tolerance_seconds : float
        Frame length and the context, minimum lag and lag tolerance in seconds.
    threshold : float
        Context similarity at or above which a frame repeats.
    tie : float
        Similarity margin within which matches count as equally best.

    Returns
    -------
    dict
        ``past``: among the frames from ``start_frame`` on, the share that repeat at the
        modal lag of that part (None when there are none); ``repeating``: among all
        repeating frames, the share at the overall modal lag; ``repeating_fraction``:
        the share of frames that repeat at all; ``modal_lag_frames`` and
        ``past_modal_lag_frames``.
    """
    n = features.shape[0]
    context = max(1, int(round(context_seconds / frame_seconds)))
    min_lag = max(1, int(round(min_lag_seconds / frame_seconds)))
    tolerance = int(round(tolerance_seconds / frame_seconds))
    if n <= min_lag:
        return {"past": None if start_frame >= n else 0.0, "repeating": 0.0, "repeating_fraction": 0.0,
                "modal_lag_frames": None, "past_modal_lag_frames": None}
    best, at_lag = _earlier_matches(features, context=context, min_lag=min_lag, tie=tie, tolerance=tolerance)
    repeats = best >= threshold

    def modal(mask: np.ndarray) -> tuple[int | None, int]:
        rows = mask & repeats
        if not rows.any():
            return None, 0
        counts = at_lag[rows].sum(axis=0)
        mode = int(np.argmax(counts))
        return mode, int(counts[mode])

    mode_all, at_mode_all = modal(np.ones(n, dtype=bool))
    n_repeating = int(repeats.sum())
    past_mask = np.arange(n) >= start_frame
    n_past = int(past_mask.sum())
    mode_past, at_mode_past = modal(past_mask)
    return {
        "past": (at_mode_past / n_past) if n_past else None,
        "repeating": (at_mode_all / n_repeating) if n_repeating else 0.0,
        "repeating_fraction": n_repeating / n,
        "modal_lag_frames": mode_all,
        "past_modal_lag_frames": mode_past,
    }


# --------------------------------------------------------------------------- ending


def trailing_silence_seconds(
    audio: Audio | np.ndarray, *, sample_rate: int | None = None, threshold_db: float = -60.0
) -> float:
    """Length of the final run of samples quieter than ``threshold_db`` dBFS (all channels).

    Returns
    -------
    float
        Seconds.
    """
    audio = _as_audio(audio, sample_rate)
    loud = np.nonzero(np.abs(audio.samples).max(axis=1) > 10.0 ** (threshold_db / 20.0))[0]
    last = int(loud[-1]) + 1 if loud.size else 0
    return (audio.n_samples - last) / float(audio.sample_rate)


def ending_match(
    original: Audio, extended: Audio, *, seconds: float = 10.0, max_lag_seconds: float = 0.05,
    at_start: bool = False,
) -> dict:
    """Correlation of the output's last (or first) 10 s with the original's.

    The output segment is searched within +-50 ms of where it should be; the lag says
    how far off the copy sits: positive = the output has that much more after the
    original's ending (padding), negative = its tail is cut.

    Parameters
    ----------
    original, extended : Audio
        Mixed to mono; resampled to the original's rate when the rates differ.
    seconds : float
        Compared length.
    max_lag_seconds : float
        Search range.
    at_start : bool
        Compare the beginnings instead (lag positive = the output starts late).

    Returns
    -------
    dict
        ``correlation`` (Pearson, at the best lag), ``lag_seconds`` and
        ``correlation_at_zero_lag``.
    """
    from scipy.signal import correlate

    rate = original.sample_rate
    a = to_mono(original.samples).astype(np.float64)
    b = resample(to_mono(extended.samples), from_rate=extended.sample_rate, to_rate=rate).astype(np.float64)
    n = int(min(seconds * rate, a.size, b.size))
    m = int(max_lag_seconds * rate)
    if n < 16:
        return {"correlation": None, "lag_seconds": None, "correlation_at_zero_lag": None}
    if at_start:
        a, b = a[::-1], b[::-1]
    ref = a[-n:] - a[-n:].mean()
    m = min(m, b.size - n)
    region = b[b.size - n - m: b.size + m] if m > 0 else b[-n:]
    region = region[: n + 2 * m] if m > 0 else region
    # pad when the output is too short to search forwards (a cut tail)
    missing = n + 2 * m - region.size
    region = np.concatenate([region, np.zeros(max(0, missing))])
    scores = correlate(region, ref, mode="valid", method="fft")
    cum = np.concatenate([[0.0], np.cumsum(region)])
    cum2 = np.concatenate([[0.0], np.cumsum(region**2)])
    sums = cum[n:] - cum[:-n]
    norms = np.sqrt(np.maximum(cum2[n:] - cum2[:-n] - sums**2 / n, 0.0)) * np.linalg.norm(ref)
    corr = scores / np.maximum(norms, 1e-12)
    best = int(np.argmax(corr))
    lag = m - best  # index m: the copy ends exactly at the output's end (reversed: starts)
    return {
        "correlation": float(corr[best]),
        "lag_seconds": lag / float(rate),
        "correlation_at_zero_lag": float(corr[m]) if m < corr.size else None,
    }


# --------------------------------------------------------------------------- mood


def estimate_key(chroma_mean: np.ndarray) -> tuple[str, float]:
    """Key by the Krumhansl-Schmuckler method.

    Parameters
    ----------
    chroma_mean : np.ndarray [shape=(12,)]
        Average chroma, C first.

    Returns
    -------
    name : str
        For example ``"A minor"``.
    correlation : float
        Pearson correlation with the best profile.
    """
    chroma_mean = np.asarray(chroma_mean, dtype=float)
    best_name, best_corr = "unknown", -np.inf
    for mode, profile in (("major", _MAJOR_PROFILE), ("minor", _MINOR_PROFILE)):
        for tonic in range(12):
            corr = float(np.corrcoef(chroma_mean, np.roll(profile, tonic))[0, 1])
            if corr > best_corr:
                best_name, best_corr = f"{_KEY_NAMES[tonic]} {mode}", corr
    return best_name, best_corr


def _loudness_lufs(audio: Audio) -> float | None:
    import pyloudnorm

    if audio.duration_seconds < 0.5:
        return None
    meter = pyloudnorm.Meter(audio.sample_rate)
    samples = audio.samples.astype(np.float64)
    if samples.shape[1] > 5:  # pyloudnorm weighs at most 5 channels: measure a mono downmix
        samples = samples.mean(axis=1, keepdims=True)  # (original and output alike)
    value = float(meter.integrated_loudness(samples if samples.shape[1] > 1 else samples[:, 0]))
    return value if np.isfinite(value) else None


def mood_descriptors(
    audio: Audio, *, view: np.ndarray | None = None, tempo_bpm: float | None = None, start_bpm: float | None = None
) -> dict:
    """Tempo, key, integrated loudness and spectral centroid of a recording.

    Parameters
    ----------
    audio : Audio
    view : np.ndarray [shape=(n_samples,)], optional
        Its 22050 Hz mono view, if already computed.
    tempo_bpm : float, optional
        Its tempo, if already computed.
    start_bpm : float, optional
        Centre of the beat tracker's tempo prior (the original's tempo for an output).

    Returns
    -------
    dict
        ``tempo_bpm``, ``key``, ``key_correlation``, ``loudness_lufs``, ``centroid_hz``
        (spectral centroid averaged over frames, weighted by frame energy).
    """
    import librosa

    view = _analysis_view(audio) if view is None else view
    if tempo_bpm is None:
        _, tempo_bpm = _beats_of_view(view, start_bpm=start_bpm)
    chroma = librosa.feature.chroma_stft(y=view, sr=ANALYSIS_SAMPLE_RATE, n_fft=4096, hop_length=2048, tuning=0.0)
    key, key_corr = estimate_key(chroma.mean(axis=1))
    spectrum = np.abs(librosa.stft(view, n_fft=2048, hop_length=1024)) ** 2
    freqs = librosa.fft_frequencies(sr=ANALYSIS_SAMPLE_RATE, n_fft=2048)
    energy = spectrum.sum(axis=0)
    centroid = (freqs @ spectrum) / np.maximum(energy, 1e-12)
    weighted = float(np.sum(centroid * energy) / max(float(energy.sum()), 1e-12))
    return {
        "tempo_bpm": float(tempo_bpm),
        "key": key,
        "key_correlation": float(key_corr),
        "loudness_lufs": _loudness_lufs(audio),
        "centroid_hz": weighted,
    }


# --------------------------------------------------------------------------- report


@dataclass
class OriginalAnalysis:
    """Everything the report needs from an original, computed once (reuse across outputs).

    Attributes
    ----------
    view : np.ndarray [shape=(n,)]
        22050 Hz mono.
    beat_times : np.ndarray [shape=(n_beats,)]
        Seconds (beats within 0.1 s of either end left out).
    tempo_bpm : float
    cutoff_hz : float or None
        Codec cut-off, None for a full-band source.
    beat_crest, beat_novelty, beat_broadband : np.ndarray [shape=(n_beats,)]
        The seam measures at the original's beats.
    dip_db : float
    repetition : dict
        ``repetition_shares`` of the original itself (``past`` over its second half).
    mood : dict
    """

    view: np.ndarray
    beat_times: np.ndarray
    tempo_bpm: float
    cutoff_hz: float | None
    beat_crest: np.ndarray
    beat_novelty: np.ndarray
    beat_broadband: np.ndarray
    dip_db: float
    repetition: dict
    mood: dict


def analyse_original(original: Audio, *, beat_times: Sequence[float] | None = None) -> OriginalAnalysis:
    """Analyse an original once for ``extension_report``.

    Parameters
    ----------
    original : Audio
    beat_times : sequence of float, optional
        The original's beats in seconds; found with librosa when not given.

    Returns
    -------
    OriginalAnalysis
    """
    view = _analysis_view(original)
    found_beats, tempo = _beats_of_view(view)
    beats = found_beats if beat_times is None else np.asarray(beat_times, dtype=float)
    duration = original.duration_seconds
    beats = beats[(beats > 0.1) & (beats < duration - 0.1)]
    cutoff = estimate_codec_cutoff(original.samples, sample_rate=original.sample_rate)
    samples, rate = original.samples, original.sample_rate
    frame_seconds = max(REPETITION_FRAME_SECONDS, original.duration_seconds / _MAX_REPETITION_FRAMES)
    features = repetition_features(view, frame_seconds=frame_seconds)
    return OriginalAnalysis(
        view=view,
        beat_times=beats,
        tempo_bpm=tempo,
        cutoff_hz=cutoff,
        beat_crest=seam_crest(samples, sample_rate=rate, times=beats),
        beat_novelty=seam_novelty(samples, sample_rate=rate, times=beats),
        beat_broadband=seam_broadband(samples, sample_rate=rate, times=beats, cutoff_hz=cutoff),
        dip_db=level_dip_db(original),
        repetition=repetition_shares(features, start_frame=features.shape[0] // 2, frame_seconds=frame_seconds),
        mood=mood_descriptors(original, view=view, tempo_bpm=tempo),
    )


def extension_report(
    original: Audio,
    extended: Audio,
    *,
    seams: Sequence[float] | None = None,
    target_seconds: float | None = None,
    beat_times: Sequence[float] | None = None,
    analysis: OriginalAnalysis | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Every extension-quality measure of ``extended`` against ``original``, JSON-able.

    Parameters
    ----------
    original : Audio
        The song as it was.
    extended : Audio
        The extended (or shortened) song.
    seams : sequence of float, optional
        Output times of the seams (``harmonizer extend --json`` gives them). When not
        given, ``detect_seams`` finds them by aligning the output to the original.
    target_seconds : float, optional
        The requested length, for the duration error.
    beat_times : sequence of float, optional
        The original's beats (seconds); librosa's beat tracker otherwise.
    analysis : OriginalAnalysis, optional
        ``analyse_original(original)`` computed earlier (the benchmark reuses it).
    on_progress : callable(done, total), optional
        Called after each of the steps.

    Returns
    -------
    dict
        Plain numbers, strings, lists and None::

            duration: original_seconds, output_seconds, target_seconds, error_seconds,
                      sample_rate_kept, channels_kept, ...
            seams:    source ("given" | "detected"), times, count, matched_share,
                      codec_cutoff_hz, n_beats, and for each of crest, novelty,
                      broadband: {seams_p95, beats_p95, ratio, p_value, values}
            dips:     original_db, output_db, excess_db
            repetition: past_original, repeating, original_repeating,
                        original_second_half, repeating_fraction
            ending:   correlation, lag_seconds, correlation_at_zero_lag,
                      trailing_silence_original, trailing_silence_output,
                      padded_silence_seconds, start_correlation, start_lag_seconds
            mood:     original {...}, output {...}, tempo_delta_bpm (after folding
                      a beat tracker's octave error, flagged by tempo_octave_factor
                      2 or 0.5), key_same, loudness_delta_lu, centroid_delta_percent

    Examples
    --------
    >>> song, longer = load_audio("song.mp3"), load_audio("song.extended.wav")  # doctest: +SKIP
    >>> report = extension_report(song, longer, seams=[61.2, 140.9], target_seconds=300)  # doctest: +SKIP
    >>> targets_met(report)["seam_crest"]  # doctest: +SKIP
    True
    """
    steps = 6
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, steps)

    if analysis is None:
        analysis = analyse_original(original, beat_times=beat_times)
    step()
    out_view = _analysis_view(extended)
    rate, out_rate = original.sample_rate, extended.sample_rate

    duration = {
        "original_seconds": original.duration_seconds,
        "output_seconds": extended.duration_seconds,
        "target_seconds": None if target_seconds is None else float(target_seconds),
        "error_seconds": None if target_seconds is None else abs(extended.duration_seconds - float(target_seconds)),
        "original_sample_rate": rate,
        "output_sample_rate": out_rate,
        "sample_rate_kept": rate == out_rate,
        "original_channels": original.n_channels,
        "output_channels": extended.n_channels,
        "channels_kept": original.n_channels == extended.n_channels,
    }

    matched_share = None
    if seams is None:
        detection = detect_seams(original, extended)
        seam_times = detection.times
        matched_share = detection.matched_share
        source = "detected"
    else:
        seam_times = np.asarray(list(seams), dtype=float)
        source = "given"
    step()
    seam_report: dict = {
        "source": source,
        "times": [float(t) for t in seam_times],
        "count": int(len(seam_times)),
        "matched_share": matched_share,
        "codec_cutoff_hz": analysis.cutoff_hz,
        "n_beats": int(len(analysis.beat_times)),
    }
    measured = {
        "crest": (seam_crest(extended.samples, sample_rate=out_rate, times=seam_times), analysis.beat_crest),
        "novelty": (seam_novelty(extended.samples, sample_rate=out_rate, times=seam_times), analysis.beat_novelty),
        "broadband": (
            seam_broadband(extended.samples, sample_rate=out_rate, times=seam_times, cutoff_hz=analysis.cutoff_hz),
            analysis.beat_broadband,
        ),
    }
    for name, (at_seams, at_beats) in measured.items():
        n_measured = int(np.sum(np.isfinite(at_seams)))
        seams_p95, beats_p95 = _p95(at_seams), _p95(at_beats)
        seam_report[name] = {
            "seams_p95": seams_p95,
            "beats_p95": beats_p95,
            "ratio": _ratio(seams_p95, beats_p95),
            "p_value": _draw_share_above(at_beats, n_measured, seams_p95),
            "values": [None if not np.isfinite(v) else float(v) for v in at_seams],
        }
    step()

    dips = {"original_db": analysis.dip_db, "output_db": level_dip_db(extended)}
    dips["excess_db"] = dips["output_db"] - dips["original_db"]

    # [n, n] matrices: beyond 10 minutes the hop grows so that n stays <= 6000 (memory)
    frame_seconds = max(REPETITION_FRAME_SECONDS, extended.duration_seconds / _MAX_REPETITION_FRAMES)
    features = repetition_features(out_view, frame_seconds=frame_seconds)
    start = int(np.ceil(original.duration_seconds / frame_seconds))
    shares = repetition_shares(features, start_frame=start, frame_seconds=frame_seconds)
    repetition = {
        "past_original": shares["past"],
        "repeating": shares["repeating"],
        "repeating_fraction": shares["repeating_fraction"],
        "modal_lag_seconds": None if shares["modal_lag_frames"] is None else shares["modal_lag_frames"] * frame_seconds,
        "original_repeating": analysis.repetition["repeating"],
        "original_repeating_fraction": analysis.repetition["repeating_fraction"],
        "original_second_half": analysis.repetition["past"],
    }
    step()

    end = ending_match(original, extended)
    begin = ending_match(original, extended, at_start=True)
    silence_original = trailing_silence_seconds(original)
    silence_output = trailing_silence_seconds(extended)
    ending = {
        "correlation": end["correlation"],
        "lag_seconds": end["lag_seconds"],
        "correlation_at_zero_lag": end["correlation_at_zero_lag"],
        "trailing_silence_original": silence_original,
        "trailing_silence_output": silence_output,
        "padded_silence_seconds": silence_output - silence_original,
        "start_correlation": begin["correlation"],
        "start_lag_seconds": begin["lag_seconds"],
    }
    step()

    mood_orig = analysis.mood
    mood_out = mood_descriptors(extended, view=out_view, start_bpm=mood_orig["tempo_bpm"])
    lufs_o, lufs_e = mood_orig["loudness_lufs"], mood_out["loudness_lufs"]
    tempo_out, tempo_orig = mood_out["tempo_bpm"], mood_orig["tempo_bpm"]
    octave = None
    for factor in (2.0, 0.5):  # the tracker locked onto another metrical level
        if abs(tempo_out / max(tempo_orig, 1e-9) / factor - 1.0) < 0.04:
            octave, tempo_out = factor, tempo_out / factor
    mood = {
        "original": mood_orig,
        "output": mood_out,
        "tempo_delta_bpm": tempo_out - tempo_orig,
        "tempo_octave_factor": octave,
        "key_same": mood_out["key"] == mood_orig["key"],
        "loudness_delta_lu": None if lufs_o is None or lufs_e is None else lufs_e - lufs_o,
        "centroid_delta_percent": 100.0 * (mood_out["centroid_hz"] - mood_orig["centroid_hz"])
        / max(mood_orig["centroid_hz"], 1e-9),
    }
    step()
    return {
        "duration": duration,
        "seams": seam_report,
        "dips": dips,
        "repetition": repetition,
        "ending": ending,
        "mood": mood,
    }


def targets_met(report: dict, *, full: bool | None = None) -> dict:
    """Check one report against the per-file targets of issue 3.

    Parameters
    ----------
    report : dict
        From ``extension_report``.
    full : bool, optional
        Check every target (the 300 s case: repetition and mood too); otherwise only
        duration, seams, dips and ending (the shortening case). Default: full when the
        output is longer than the original.

    Returns
    -------
    dict
        Target name -> True (met), False (missed) or None (not applicable: no seams, no
        codec cut-off, no target length). Names: ``duration``, ``format_kept``,
        ``seam_crest``, ``seam_novelty``, ``seam_broadband``, ``dips``, ``ending``,
        and when ``full``: ``repetition_past``, ``repetition_repeating`` (against the
        original's own share, or ``REPEATING_REFERENCE`` when fewer than
        ``MIN_REPEATING_FRACTION`` of the original's frames repeat at all), ``tempo``,
        ``loudness``, ``centroid``.
    """
    t = TARGETS
    d, s, e = report["duration"], report["seams"], report["ending"]
    if full is None:
        full = d["output_seconds"] > d["original_seconds"] + 1.0

    def at_most(value: float | None, limit: float) -> bool | None:
        return None if value is None else bool(value <= limit)

    checks: dict = {
        "duration": at_most(d["error_seconds"], t["duration_error_seconds"]),
        "format_kept": bool(d["sample_rate_kept"] and d["channels_kept"]),
    }
    for name in ("crest", "novelty", "broadband"):
        checks[f"seam_{name}"] = None if s["count"] == 0 else at_most(s[name]["ratio"], t["seam_ratio"])
    checks["dips"] = at_most(report["dips"]["excess_db"], t["dip_excess_db"])
    corr = e["correlation"]
    checks["ending"] = None if corr is None else bool(
        corr >= t["ending_correlation"]
        and abs(e["lag_seconds"]) <= t["ending_lag_seconds"]
        and e["padded_silence_seconds"] <= t["padded_silence_seconds"]
    )
    if full:
        r, m = report["repetition"], report["mood"]
        checks["repetition_past"] = at_most(r["past_original"], t["repetition_past_original"])
        own = r["original_repeating"]
        if r.get("original_repeating_fraction", 1.0) < MIN_REPEATING_FRACTION:
            own = REPEATING_REFERENCE  # the song never repeats itself: hold to the corpus median
        checks["repetition_repeating"] = None if own is None else bool(r["repeating"] <= own + 1e-9)
        checks["tempo"] = bool(abs(m["tempo_delta_bpm"]) <= t["tempo_delta_bpm"])
        loud = m["loudness_delta_lu"]
        checks["loudness"] = None if loud is None else bool(abs(loud) <= t["loudness_delta_lu"])
        checks["centroid"] = bool(abs(m["centroid_delta_percent"]) <= t["centroid_delta_percent"])
    return checks


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def summary_rows(report: dict, checks: dict | None = None) -> list[tuple[str, str, str, str, bool | None]]:
    """The report as table rows: (measure, output, original or reference, target, met).

    Used by ``harmonizer evaluate --extension`` and the benchmark. ``met`` comes from
    ``targets_met`` (None where the target does not apply).

    Parameters
    ----------
    report : dict
        From ``extension_report``.
    checks : dict, optional
        From ``targets_met(report)``; computed when not given.

    Returns
    -------
    list of tuple (str, str, str, str, bool or None)
    """
    checks = targets_met(report) if checks is None else checks
    d, s, dips, r, e, m = (report[k] for k in ("duration", "seams", "dips", "repetition", "ending", "mood"))
    t = TARGETS
    rows = [
        ("duration (s)", _fmt(d["output_seconds"], ".3f"),
         f"target {_fmt(d['target_seconds'], '.3f')}, error {_fmt(d['error_seconds'], '.4f')}",
         f"<= {t['duration_error_seconds']}", checks.get("duration")),
        ("sample rate / channels", f"{d['output_sample_rate']} Hz / {d['output_channels']}",
         f"{d['original_sample_rate']} Hz / {d['original_channels']}", "kept", checks.get("format_kept")),
        ("seams", f"{s['count']} ({s['source']})",
         f"{s['n_beats']} beats; cut-off {_fmt(s['codec_cutoff_hz'], '.0f')} Hz", "", None),
    ]
    for name in ("crest", "novelty", "broadband"):
        part = s[name]
        rows.append((f"seam {name} p95 (ratio, p)",
                     f"{_fmt(part['seams_p95'])} ({_fmt(part['ratio'])}, {_fmt(part['p_value'], '.3f')})",
                     f"beats {_fmt(part['beats_p95'])}", f"ratio <= {t['seam_ratio']}", checks.get(f"seam_{name}")))
    rows.append(("deepest level dip (dB)", _fmt(dips["output_db"], ".1f"), _fmt(dips["original_db"], ".1f"),
                 f"<= original + {t['dip_excess_db']:g}", checks.get("dips")))
    rows.append(("repetition past original", _fmt(r["past_original"]),
                 f"song's 2nd half {_fmt(r['original_second_half'])}", f"<= {t['repetition_past_original']}",
                 checks.get("repetition_past")))
    rows.append(("repetition of repeats", _fmt(r["repeating"]), _fmt(r["original_repeating"]),
                 "<= original", checks.get("repetition_repeating")))
    rows.append(("ending corr (lag s, pad s)",
                 f"{_fmt(e['correlation'], '.4f')} ({_fmt(e['lag_seconds'], '.3f')}, "
                 f"{_fmt(e['padded_silence_seconds'], '.3f')})",
                 f"start corr {_fmt(e['start_correlation'], '.4f')}", f">= {t['ending_correlation']}",
                 checks.get("ending")))
    mo, mi = m["output"], m["original"]
    rows.append(("tempo (BPM)", _fmt(mo["tempo_bpm"], ".1f"), _fmt(mi["tempo_bpm"], ".1f"),
                 f"+-{t['tempo_delta_bpm']:g}", checks.get("tempo")))
    rows.append(("key", mo["key"], mi["key"], "same", None if "tempo" not in checks else m["key_same"]))
    rows.append(("loudness (LUFS)", _fmt(mo["loudness_lufs"]), _fmt(mi["loudness_lufs"]),
                 f"+-{t['loudness_delta_lu']:g} LU", checks.get("loudness")))
    rows.append(("spectral centroid (Hz)", _fmt(mo["centroid_hz"], ".0f"),
                 f"{_fmt(mi['centroid_hz'], '.0f')} ({_fmt(m['centroid_delta_percent'], '+.1f')} %)",
                 f"+-{t['centroid_delta_percent']:g} %", checks.get("centroid")))
    return rows
