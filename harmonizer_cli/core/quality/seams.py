"""Seam measures: how audible a splice point is (sample step, spectral jump, broadband energy).

The engine's seam audit and the extension report use these same functions, so what the
engine avoids is what the benchmark measures.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from harmonizer_cli.core.audio_io import to_mono
from harmonizer_cli.core.features import mel_weights
from harmonizer_cli.core.quality._common import EPS, samples_2d

__all__ = ["estimate_codec_cutoff", "step_crest", "spectral_jump", "seam_exposure", "seam_crest", "seam_novelty",
           "seam_broadband"]

_MEL_CACHE: dict = {}


def local_log_mel(signal: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """40-band log-mel (dB) of each row of ``signal`` [shape=(n, length)] -> (n, 40).

    Hann-windowed, bands from 40 Hz up to 16 kHz (above it lossy sources hold only
    codec noise).
    """
    n_fft = 1 << int(np.ceil(np.log2(signal.shape[1])))
    key = (sample_rate, n_fft)
    if key not in _MEL_CACHE:
        _MEL_CACHE[key] = mel_weights(sample_rate=sample_rate, n_fft=n_fft, n_mels=40, fmin=40.0,
                                      fmax=min(16000.0, sample_rate / 2.0))
    window = np.hanning(signal.shape[1]).astype(np.float32)
    spectrum = np.abs(np.fft.rfft(signal * window, n_fft, axis=1)) ** 2
    return 10.0 * np.log10(spectrum @ _MEL_CACHE[key].T + 1e-10)


def step_crest(signal: np.ndarray, at: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """Largest sample step within +-5 ms of each point over the RMS there [shape=(len(at),)].

    ``signal`` is mono or (n, channels) (largest over channels); ``at`` are sample
    indices at least 5 ms from either end. The RMS is floored at -80 dBFS so that
    near-silence reads 0. A hard splice is a step.
    """
    half = max(1, int(0.005 * sample_rate))
    region = signal[np.asarray(at)[:, None] + np.arange(-half, half + 1)].astype(np.float64)
    if region.ndim == 2:
        region = region[:, :, None]
    step = np.max(np.abs(np.diff(region, axis=1)), axis=1)
    rms = np.sqrt(np.mean(region ** 2, axis=1)) + 1e-4
    return np.max(step / rms, axis=1)


def spectral_jump(before: np.ndarray, after: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """Mean absolute difference (dB) of the 40-band log-mel spectra of paired windows.

    ``before`` and ``after`` are [shape=(n, length)]; levels are floored 80 dB below
    the louder window's loudest band. A splice between unrelated places jumps.
    """
    mel_before = local_log_mel(before, sample_rate=sample_rate)
    mel_after = local_log_mel(after, sample_rate=sample_rate)
    floor = np.maximum(mel_before.max(axis=1), mel_after.max(axis=1))[:, None] - 80.0
    return np.mean(np.abs(np.maximum(mel_before, floor) - np.maximum(mel_after, floor)), axis=1)


def seam_exposure(samples: np.ndarray, mono: np.ndarray, *, sample_rate: int, points: np.ndarray) -> np.ndarray:
    """How exposed a cut at each point is [shape=(n_points, 2)]: crest and novelty.

    The sample step within +-5 ms over the local RMS (``step_crest``, largest over
    channels of ``samples``) and the spectral jump between the 50 ms before and after
    (``spectral_jump`` of ``mono``). NaN where a point is too close to an edge.

    Parameters
    ----------
    samples : np.ndarray [shape=(n_samples, n_channels)]
    mono : np.ndarray [shape=(n_samples,)]
        Its mono mix.
    sample_rate : int
    points : np.ndarray [shape=(n_points,)]
        Seconds.
    """
    length = int(0.05 * sample_rate)
    half = max(1, int(0.005 * sample_rate))
    at = np.round(np.asarray(points, dtype=np.float64) * sample_rate).astype(np.int64)
    values = np.full((at.size, 2), np.nan)
    ok = (at - max(length, half) >= 0) & (at + max(length, half + 1) <= mono.size)
    if not ok.any():
        return values
    at_ok = at[ok]
    values[ok, 0] = step_crest(samples, at_ok, sample_rate=sample_rate)
    idx = np.arange(length)
    values[ok, 1] = spectral_jump(mono[at_ok[:, None] - length + idx], mono[at_ok[:, None] + idx],
                                  sample_rate=sample_rate)
    return values


def estimate_codec_cutoff(
    samples: np.ndarray, *, sample_rate: int, rise_db: float = 25.0, min_band_hz: float = 800.0,
    min_drop_db: float = 60.0,
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
    min_drop_db : float
        The band above the cut-off must lie this far below the music (the 90th
        percentile of the levels under it): mp3s give 86-99 dB; a spectrum that only
        falls off (22 kHz Ogg files of orchestral music: 27-51 dB) has no codec band
        and ``None`` is returned.

    Returns
    -------
    float or None
        Cut-off in Hz, or ``None`` for a full-band source.
    """
    from scipy.signal import welch

    mono = to_mono(samples_2d(samples)).astype(np.float64)
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
    # a codec's band is empty: far below the music (a spectrum that only falls off, as in
    # low-rate Ogg files of orchestral music, is not a cut-off)
    band = (freqs > cutoff + 1000.0) & inner
    if band.any() and np.percentile(level[(freqs > 200.0) & (freqs < cutoff)], 90) - np.median(level[band]) < min_drop_db:
        return None
    return cutoff


def _windows_around(samples: np.ndarray, centre: int, half: int) -> np.ndarray:
    start, stop = max(0, centre - half), min(samples.shape[0], centre + half + 1)
    return samples[start:stop]


def seam_crest(samples: np.ndarray, *, sample_rate: int, times: Sequence[float]) -> np.ndarray:
    """Local sample-step crest at each time: max |first difference| / RMS within +-5 ms.

    The measure the engine's seam audit uses (``step_crest``), at points in seconds.

    Parameters
    ----------
    samples : np.ndarray [shape=(n_samples,) or (n_samples, n_channels)]
    sample_rate : int
    times : sequence of float
        Points in seconds.

    Returns
    -------
    np.ndarray [shape=(len(times),)]
        The largest value over channels (NaN for points within 5 ms of an end or outside).
    """
    samples = samples_2d(samples)
    half = max(1, int(0.005 * sample_rate))
    at = np.round(np.asarray(times, dtype=np.float64).reshape(-1) * sample_rate).astype(np.int64)
    values = np.full(at.size, np.nan)
    ok = (at - half >= 0) & (at + half < samples.shape[0])
    if ok.any():
        values[ok] = step_crest(samples, at[ok], sample_rate=sample_rate)
    return values


def seam_novelty(samples: np.ndarray, *, sample_rate: int, times: Sequence[float]) -> np.ndarray:
    """Spectral novelty across each point: the 40-band log-mel distance of the 50 ms before and after.

    The measure the engine's seam audit uses (``spectral_jump``), on the mono mix.

    Parameters
    ----------
    samples : np.ndarray [shape=(n_samples,) or (n_samples, n_channels)]
    sample_rate : int
    times : sequence of float
        Points in seconds.

    Returns
    -------
    np.ndarray [shape=(len(times),)]
        Mean absolute band difference in dB (NaN where a side is outside the signal).
    """
    mono = to_mono(samples_2d(samples))
    length = int(0.05 * sample_rate)
    at = np.round(np.asarray(times, dtype=np.float64).reshape(-1) * sample_rate).astype(np.int64)
    values = np.full(at.size, np.nan)
    ok = (at - length >= 0) & (at + length <= mono.size)
    if ok.any():
        idx = np.arange(length)
        values[ok] = spectral_jump(mono[at[ok][:, None] - length + idx], mono[at[ok][:, None] + idx],
                                   sample_rate=sample_rate)
    return values


def seam_broadband(
    samples: np.ndarray, *, sample_rate: int, times: Sequence[float], cutoff_hz: float | None,
    half_window_seconds: float = 0.0025, context_seconds: float = 0.25, margin_hz: float = 1000.0,
    floor_power: float = EPS,
) -> np.ndarray:
    """Energy above the codec cut-off at each point, relative to the 250 ms around it.

    The signal near each point is high-passed (8th-order Butterworth, zero phase) at
    ``cutoff_hz + margin_hz`` (1 kHz above the cut-off, clear of the codec's own
    transition band); the value is the mean-square of +-2.5 ms around the
    point over the median mean-square of same-length windows in the +-250 ms around
    (the centre excluded). A power floor (``floor_power``, 1e-12 unless given) keeps
    silent bands at about 1. The report floors it as the whole-output click measure
    does, 60 dB below the original's power (``clicks.click_reference``): a crossfade
    written as 16-bit PCM is re-rounded where the song's own samples are copied
    exactly, and that rounding noise (about -100 dBFS) would otherwise read as a
    2-3x burst at every seam of a 16-bit file.

    Parameters
    ----------
    samples : np.ndarray [shape=(n_samples,) or (n_samples, n_channels)]
    sample_rate : int
    times : sequence of float
    cutoff_hz : float or None
        From ``estimate_codec_cutoff`` of the original; ``None`` gives all NaN.
    floor_power : float
        Added to every window's power (mean square, full scale 1).

    Returns
    -------
    np.ndarray [shape=(len(times),)]
        Power ratio, the largest over channels.
    """
    values = np.full(len(times), np.nan)
    if cutoff_hz is None:
        return values
    from scipy.signal import butter, sosfiltfilt

    samples = samples_2d(samples)
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
        values[k] = float(np.max((energy[local] + floor_power) / (reference + floor_power)))
    return values
