"""The numpy log-mel representation (features.py)."""

from __future__ import annotations

import numpy as np
import pytest

from harmonizer_cli.core.features import (
    LogMelSpec, frame_size_for, frames_for, logmel_frames, mel_filterbank, render_logmel,
)
from harmonizer_cli.errors import AudioError, ConfigError

SR = 22050


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _sine(freq: float, seconds: float, *, phase: float = 0.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


def test_shapes_and_frame_count(rng):
    audio = rng.standard_normal(SR * 3 + 100).astype(np.float32) * 0.1
    features = frames_for(audio)
    assert features.shape == (4, 256)  # ceil(3 s + 100 samples) frames
    assert features.dtype == np.float32
    assert np.isfinite(features).all()
    waveform = frames_for(audio, representation="waveform")
    assert waveform.shape == (4, SR)
    np.testing.assert_array_equal(waveform.reshape(-1)[: audio.size], audio)
    assert frame_size_for("logmel") == 256 and frame_size_for("waveform") == SR


def test_matches_librosa_melspectrogram(rng):
    librosa = pytest.importorskip("librosa")
    spec = LogMelSpec()
    frame = rng.standard_normal(SR).astype(np.float32) * 0.2
    ours = logmel_frames(frame[None], spec=spec)[0].reshape(spec.n_steps, spec.n_mels)
    window = librosa.filters.get_window("hann", spec.n_fft, fftbins=True)
    mel = librosa.feature.melspectrogram(
        y=frame, sr=SR, n_fft=spec.n_fft, hop_length=spec.hop_length, center=False, power=2.0,
        n_mels=spec.n_mels, htk=True, norm="slaney", fmin=0.0, fmax=SR / 2)  # (n_mels, 40)
    mel = mel / window.sum() ** 2
    pooled = mel.T.reshape(spec.n_steps, -1, spec.n_mels).mean(axis=1)
    np.testing.assert_allclose(ours, np.log(spec.log_floor + pooled), atol=1e-3)


def test_filterbank_unit_area_and_coverage():
    spec = LogMelSpec()
    filters = mel_filterbank(spec)
    assert filters.shape == (64, 1025)
    bin_hz = SR / spec.n_fft
    areas = filters.sum(axis=1) * bin_hz
    np.testing.assert_allclose(areas[8:-1], 1.0, rtol=0.05)  # wide filters integrate to 1
    peaks = filters.argmax(axis=1)
    assert np.all(np.diff(peaks) >= 0)  # centres rise with the band index


def test_phase_invariant_and_loudness_monotonic():
    a = frames_for(_sine(440.0, 2.0, phase=0.0))
    b = frames_for(_sine(440.0, 2.0, phase=1.3))
    np.testing.assert_allclose(a, b, atol=0.05)
    louder = frames_for(_sine(440.0, 2.0, amplitude=0.9))
    band = int(np.argmax(a[0, :64]))
    assert louder[0, band] > a[0, band] + 1.0  # log power rises by ~2*log(1.8)


def test_silence_gives_the_floor_and_tones_their_band():
    spec = LogMelSpec()
    silent = frames_for(np.zeros(SR, np.float32))
    np.testing.assert_allclose(silent, np.log(spec.log_floor), rtol=1e-6)
    low = frames_for(_sine(200.0, 1.0))[0, :64]
    high = frames_for(_sine(4000.0, 1.0))[0, :64]
    assert np.argmax(low) < np.argmax(high)


def test_invalid_input_raises():
    with pytest.raises(AudioError):
        frames_for(np.zeros(0, np.float32))
    with pytest.raises(AudioError):
        frames_for(np.array([0.0, np.nan], np.float32))
    with pytest.raises(ConfigError, match="representation"):
        frames_for(np.zeros(10, np.float32), representation="mfcc")
    with pytest.raises(ConfigError, match="n_steps"):
        LogMelSpec(n_steps=3).validate()
    with pytest.raises(ConfigError):
        logmel_frames(np.zeros((2, 100), np.float32))


def test_render_logmel_returns_audio_of_the_right_length():
    pytest.importorskip("librosa")
    features = frames_for(_sine(440.0, 2.0))
    audio = render_logmel(features, n_iter=4)
    assert audio.shape == (2 * SR,)
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.01
    # the re-analysed audio keeps the tone's band
    again = frames_for(audio)
    assert int(np.argmax(again[0, :64])) == int(np.argmax(features[0, :64]))
