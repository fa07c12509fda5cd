"""The guided and neural extension engines (harmonizer_cli.core.extension)."""

from __future__ import annotations

import numpy as np
import pytest

from harmonizer_cli.core.audio_io import Audio
from harmonizer_cli.core.extension import MAX_STRETCH, _stretch_to_length, _wsola, extend_audio
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
    head = first_seam
    if extended.stretch is not None:  # a stretched region never starts in the first seconds
        assert extended.stretch["region_seconds"][0] >= min(5.0, 0.25 * 41.3) - 1e-3
        head = min(head, int(extended.stretch["region_seconds"][0] * song.sample_rate))
    assert np.array_equal(extended.samples[:head], song.samples[:head])
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
    assert np.array_equal(result.samples[: rate], song.samples[: rate])  # no varispeed of the head
    if result.stretch is not None:
        assert abs(result.stretch["factor"] - 1.0) <= MAX_STRETCH


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


def _peak_hz(signal: np.ndarray, sample_rate: int) -> float:
    """Frequency of the FFT peak (parabolic interpolation), Hann window."""
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(signal.size)))
    k = int(np.argmax(spectrum[1:-1])) + 1
    a, b, c = np.log(spectrum[k - 1: k + 2] + 1e-30)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sample_rate / signal.size


@pytest.mark.parametrize("factor", [0.97, 1.012, 1.03])
def test_wsola_keeps_pitch_and_length(factor):
    sample_rate = 44100
    t = np.arange(8 * sample_rate) / sample_rate
    tone = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    stereo = np.stack([tone, 0.5 * tone], axis=1).astype(np.float32)
    start, end = 2 * sample_rate, 6 * sample_rate
    new_length = int(round((end - start) * factor))
    out = _wsola(stereo, start=start, end=end, new_length=new_length, sample_rate=sample_rate)
    assert out.shape == (new_length, 2)
    # pitch kept (a varispeed by `factor` would move it by 1.2-3 %)
    middle = out[sample_rate // 4: -sample_rate // 4, 0]
    assert abs(_peak_hz(middle, sample_rate) / 440.0 - 1.0) <= 0.001
    # same offsets for every channel: the channels keep their ratio
    assert np.allclose(out[:, 1], 0.5 * out[:, 0], atol=1e-5)
    # joins the untouched audio without a step: first and last 20 ms equal the input
    edge = int(0.02 * sample_rate)
    assert np.allclose(out[:edge], stereo[start:start + edge], atol=1e-5)
    assert np.allclose(out[-edge:], stereo[end - edge:end], atol=1e-5)
    assert np.max(np.abs(out)) <= np.max(np.abs(stereo)) + 1e-6


def test_stretch_to_length_is_exact_local_and_bounded():
    sample_rate = 22050
    rng = np.random.default_rng(5)
    t = np.arange(40 * sample_rate) / sample_rate
    tone = 0.3 * np.sin(2 * np.pi * 330.0 * t) + 0.01 * rng.standard_normal(t.size)
    samples = tone[:, None].astype(np.float32)
    for difference in (-5000, 1, 3000):
        out, stretch = _stretch_to_length(samples, samples.shape[0] + difference, sample_rate=sample_rate,
                                          seams=[20.0], head_keep_seconds=5.0, tail_keep_seconds=11.0)
        assert out.shape[0] == samples.shape[0] + difference
        assert abs(stretch["factor"] - 1.0) <= MAX_STRETCH
        start, end = stretch["region_seconds"]
        assert start >= 5.0 and end <= out.shape[0] / sample_rate - 11.0
        assert not start - 0.2 < 20.0 < end + 0.2  # away from the seam
        # outside the region the audio is untouched
        first = int(round(start * sample_rate))
        assert np.array_equal(out[:first], samples[:first])
        assert np.array_equal(out[-11 * sample_rate:], samples[-11 * sample_rate:])
        region = out[first: int(round(end * sample_rate)), 0]
        assert abs(_peak_hz(region, sample_rate) / 330.0 - 1.0) <= 0.001


def test_long_extension_keeps_pitch_and_exact_length():
    song = make_song(seconds=20.0, sample_rate=44100, seed=1)
    result = extend_audio(song, target_seconds=47.77, seed=2)
    assert result.samples.shape[0] == int(round(47.77 * 44100))
    if result.stretch is not None:
        assert abs(result.stretch["factor"] - 1.0) <= MAX_STRETCH
    assert np.array_equal(result.samples[-5 * 44100:], song.samples[-5 * 44100:])


def test_realignment_searches_around_the_groove_offset():
    from harmonizer_cli.core.extension import _align, _Piece

    rng = np.random.default_rng(9)
    signal = rng.standard_normal((20000, 1)).astype(np.float32)
    piece_a = _Piece(signal, signal[:, 0], 0, 8000)
    piece_b = _Piece(signal, signal[:, 0], 8000 + 576, 16000)  # B's grid point is 576 samples late
    _, _, x0 = _align(piece_a, piece_b, window=1323, reach=1500, search=700)
    assert x0 == -576
    # a refinement with a narrow search keeps the offset it is centred on
    _, _, refined = _align(piece_a, piece_b, window=1323, reach=1500, search=150, centre=x0 + 40)
    assert refined == -576
