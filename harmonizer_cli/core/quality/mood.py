"""Mood: tempo (librosa's beat tracker), key, integrated loudness and spectral centroid.

librosa and pyloudnorm are imported inside the functions: nothing here is on the fast path.
"""

from __future__ import annotations

import numpy as np

from harmonizer_cli.core.audio_io import MODEL_SAMPLE_RATE, Audio
from harmonizer_cli.core.quality._common import analysis_view

__all__ = ["librosa_beats", "estimate_key", "mood_descriptors"]


_KEY_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Krumhansl-Kessler key profiles (C major, C minor).
_MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def librosa_beats(view: np.ndarray, *, start_bpm: float | None = None) -> tuple[np.ndarray, float]:
    """Beats (s) and tempo (BPM) of a 22050 Hz mono view.

    The tempo is 60 over the least-squares slope of beat time against beat number,
    not librosa's tempo estimate, which moves in steps of one onset frame (about 3 BPM
    at 120 BPM). ``start_bpm`` centres librosa's tempo prior (the original's tempo when
    measuring an output, so both are tracked at the same metrical level).
    """
    import librosa

    tempo, beats = librosa.beat.beat_track(y=view, sr=MODEL_SAMPLE_RATE, hop_length=512, units="time",
                                           start_bpm=120.0 if start_bpm is None else float(start_bpm))
    beats = np.asarray(beats, dtype=float)
    tempo = float(np.atleast_1d(tempo)[0])
    if beats.size >= 8:
        slope = float(np.polyfit(np.arange(beats.size), beats, 1)[0])
        if slope > 0:
            tempo = 60.0 / slope
    return beats, tempo


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

    view = analysis_view(audio) if view is None else view
    if tempo_bpm is None:
        _, tempo_bpm = librosa_beats(view, start_bpm=start_bpm)
    chroma = librosa.feature.chroma_stft(y=view, sr=MODEL_SAMPLE_RATE, n_fft=4096, hop_length=2048, tuning=0.0)
    key, key_corr = estimate_key(chroma.mean(axis=1))
    spectrum = np.abs(librosa.stft(view, n_fft=2048, hop_length=1024)) ** 2
    freqs = librosa.fft_frequencies(sr=MODEL_SAMPLE_RATE, n_fft=2048)
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
