"""The guided and neural extension engines (harmonizer_cli.core.extension)."""

from __future__ import annotations

import numpy as np
import pytest

from harmonizer_cli.core.audio_io import Audio
from harmonizer_cli.core.extension import _varispeed, extend_audio
from harmonizer_cli.errors import AudioError, ConfigError, ModelError


def make_song(seconds: float = 24.0, *, bpm: float = 120.0, sample_rate: int = 48000, seed: int = 0) -> Audio:
    """Stereo click track over a four-chord sequence, with a decaying final chord."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    beat = 60.0 / bpm
    chords = [(261.63, 329.63, 392.0), (220.0, 261.63, 329.63), (174.61, 220.0, 261.63), (196.0, 246.94, 293.66)]
    bar_index = (t // (4 * beat)).astype(int) % len(chords)
    tonal = np.zeros_like(t)
    for k, chord in enumerate(chords):
        mask = bar_index == k
        tonal[mask] = sum(np.sin(2 * np.pi * f * t[mask]) for f in chord) / 3
    phase = t % beat
    accent = np.where((t // beat) % 4 == 0, 1.0, 0.6)
    click = accent * np.exp(-phase * 60.0) * rng.standard_normal(t.size) * 0.5
    fade = np.clip((seconds - t) / 3.0, 0.0, 1.0)  # a real ending: the last 3 s fade out
    left = (0.25 * tonal + click) * fade
    right = (0.2 * tonal + 0.8 * click) * fade
    stereo = np.stack([left, right], axis=1)
    return Audio((0.9 * stereo / np.max(np.abs(stereo))).astype(np.float32), sample_rate)


class FakePredictor:
    """A tiny stand-in for FramePredictor: 1 s frames of 4 band energies."""

    name = "fake"
    n_input_frames = 20
    n_output_frames = 10
    frame_seconds = 1.0
    representation = "waveform"

    def __init__(self) -> None:
        self.calls = 0

    def frame_features(self, mono_22050: np.ndarray) -> np.ndarray:
        n = int(np.ceil(mono_22050.size / 22050))
        padded = np.zeros(n * 22050, np.float32)
        padded[: mono_22050.size] = mono_22050
        return padded.reshape(n, 22050)

    def predict(self, context: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.repeat(context[:, -1:, :], self.n_output_frames, axis=1) * 0.5

    def render_frames(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, np.float32).reshape(-1)


@pytest.fixture(scope="module")
def song() -> Audio:
    return make_song()


@pytest.fixture(scope="module")
def extended(song):
    return extend_audio(song, target_seconds=41.3, seed=0)


def test_exact_length_rate_and_channels(song, extended):
    assert extended.sample_rate == 48000
    assert extended.samples.shape[1] == 2
    assert abs(extended.duration_seconds - 41.3) <= 0.010
    assert extended.engine == "guided" and extended.model is None
    assert len(extended.seams_seconds) >= 1


def test_beginning_and_ending_are_the_song(song, extended):
    first_seam = int(extended.seams_seconds[0] * song.sample_rate) - 2000
    if extended.varispeed == 1.0:
        assert np.array_equal(extended.samples[:first_seam], song.samples[:first_seam])
    else:  # a short middle shares the (small) varispeed with the head
        assert abs(extended.varispeed - 1.0) <= 0.02
        played = _varispeed(song.samples[: first_seam + 4800], extended.varispeed, song.sample_rate)
        start, stop = 4800, min(first_seam, 3 * 48000)  # skip the resampler's edge
        assert np.corrcoef(played[start:stop].ravel(), extended.samples[start:stop].ravel())[0, 1] >= 0.99
    tail = 10 * song.sample_rate
    a, b = extended.samples[-tail:].ravel(), song.samples[-tail:].ravel()
    assert np.corrcoef(a, b)[0, 1] >= 0.99
    assert np.array_equal(extended.samples[-5 * song.sample_rate:], song.samples[-5 * song.sample_rate:])


def test_no_sample_beyond_the_original_peak(song, extended):
    assert np.max(np.abs(extended.samples)) <= np.max(np.abs(song.samples)) + 1e-6
    assert np.max(np.abs(extended.samples)) <= 1.0


def test_seams_have_no_step(song, extended):
    rate = song.sample_rate
    for seam in extended.seams_seconds:
        centre = int(seam * rate)
        region = extended.samples[centre - rate // 100: centre + rate // 100]
        # no first difference bigger than the song's own largest
        assert np.max(np.abs(np.diff(region, axis=0))) <= np.max(np.abs(np.diff(song.samples, axis=0))) * 1.01


def test_same_seed_same_output(song, extended):
    again = extend_audio(song, target_seconds=41.3, seed=0)
    assert np.array_equal(again.samples, extended.samples)


def test_shortening_keeps_both_ends(song):
    result = extend_audio(song, target_seconds=15.0, seed=3)
    assert abs(result.duration_seconds - 15.0) <= 0.010
    assert len(result.seams_seconds) >= 1
    rate = song.sample_rate
    assert np.array_equal(result.samples[-5 * rate:], song.samples[-5 * rate:])
    if result.varispeed == 1.0:  # with one seam and no middle the head may be varispeeded
        assert np.array_equal(result.samples[: rate], song.samples[: rate])
    else:
        assert abs(result.varispeed - 1.0) <= 0.02


def test_predictor_guides_the_choice(song):
    predictor = FakePredictor()
    result = extend_audio(song, target_seconds=41.3, seed=0, predictor=predictor)
    assert predictor.calls > 0
    assert result.model == "fake"
    assert abs(result.duration_seconds - 41.3) <= 0.010


def test_neural_engine_appends_predicted_frames(song):
    result = extend_audio(song, target_seconds=31.5, engine="neural", predictor=FakePredictor())
    assert result.engine == "neural"
    assert result.samples.shape == (int(round(31.5 * 48000)), 2)
    assert np.array_equal(result.samples[: song.n_samples], song.samples)


def test_neural_engine_needs_a_model(song):
    with pytest.raises(ModelError, match="no model available"):
        extend_audio(song, target_seconds=40.0, engine="neural")


def test_neural_engine_does_not_shorten(song):
    with pytest.raises(ConfigError, match="only extends"):
        extend_audio(song, target_seconds=10.0, engine="neural", predictor=FakePredictor())


def test_bad_requests(song):
    with pytest.raises(ConfigError):
        extend_audio(song, target_seconds=-1.0)
    with pytest.raises(ConfigError):
        extend_audio(song, target_seconds=30.0, engine="magic")
    with pytest.raises(AudioError, match="silence"):
        extend_audio(Audio(np.zeros((48000 * 10, 2), np.float32), 48000), target_seconds=30.0)


def test_no_pulse_fallback_extends():
    rng = np.random.default_rng(2)
    t = np.arange(22050 * 14) / 22050
    drone = (0.2 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    result = extend_audio(Audio(drone[:, None], 22050), target_seconds=30.0)
    assert result.fallback == "no-pulse"
    assert abs(result.duration_seconds - 30.0) <= 0.010
