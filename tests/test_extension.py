"""The guided and neural extension engines (harmonizer_cli.core.extend)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TRAIN_DIR, require_music

from harmonizer_cli.core.audio_io import Audio, resample, to_mono
from harmonizer_cli.core.extend import extend_audio
from harmonizer_cli.core.extend.render import Timeline
from harmonizer_cli.core.extend.stretch import MAX_STRETCH, stretch_to_length, wsola
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


def test_crossfades_of_a_full_scale_master_do_not_clip():
    """Decoded mp3s overshoot 0 dBFS a little; a crossfade must not add overs of its own
    (16-bit output clips them into broadband clicks)."""
    from harmonizer_cli.core.extend.render import crossfade

    rate = 44100
    t = np.arange(int(0.02 * rate)) / rate
    # two loud, unrelated passages, both at a crest at the centre: power-keeping gains
    # for weakly correlated passages add them up to about +2 dB there
    centre = t - 0.01
    a = 0.85 * np.cos(2 * np.pi * 110.0 * centre)
    b = 0.85 * np.cos(2 * np.pi * 147.0 * centre)
    a[:10] = 1.06  # an over of the song's own, at the crossfade's start
    seg_a, seg_b = a[:, None].astype(np.float32), b[:, None].astype(np.float32)
    mixed = np.abs(crossfade(seg_a, seg_b, full_scale=True)[:, 0])
    own = np.maximum(np.abs(a), np.abs(b))
    assert np.all((mixed <= 1.0 + 1e-6) | (mixed <= own + 1e-6))  # over 1.0 only where a passage is
    # a float source louder than full scale keeps its own peaks as the limit
    loud = crossfade(4 * seg_a, 4 * seg_b, full_scale=False)
    assert np.max(np.abs(loud)) <= 4 * 1.06 + 1e-5


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


class BiasedPredictor(FakePredictor):
    """Frames that say which second of the song they are (one-hot), and predictions that
    the song always goes on at ``favoured_second``: a model with a strong opinion."""

    name = "biased"
    n_output_frames = 4

    def __init__(self, favoured_second: int) -> None:
        super().__init__()
        self.favoured = favoured_second

    def frame_features(self, mono_22050: np.ndarray) -> np.ndarray:
        n = int(np.ceil(mono_22050.size / 22050))
        self.n = n
        return np.eye(n, dtype=np.float32)

    def predict(self, context: np.ndarray) -> np.ndarray:
        self.calls += 1
        ahead = np.eye(self.n, dtype=np.float32)[self.favoured:self.favoured + self.n_output_frames]
        return np.repeat(3.0 * ahead[None], context.shape[0], axis=0)


def test_predictor_guides_the_choice(song):
    """A model that expects the music to go on at one place pulls the landings there."""
    from harmonizer_cli.core.extend import analyze_song, plan_path
    from harmonizer_cli.core.audio_io import to_model_view
    from harmonizer_cli.core.extend.guidance import TargetCost

    mono = to_model_view(song)
    analysis = analyze_song(mono)
    plain = plan_path(analysis, 60.0, seed=0)
    landings = lambda plan: np.array([analysis.beat_seconds[b] for _, b in plan.jumps])  # noqa: E731
    for favoured in (2, 8):
        guided = plan_path(analysis, 60.0, seed=0, target_cost=TargetCost(BiasedPredictor(favoured), mono))
        assert guided.jumps != plain.jumps
        assert np.mean(np.abs(landings(guided) - favoured)) < np.mean(np.abs(landings(plain) - favoured))
    # and through extend_audio: the model is called, named in the result, the length exact
    predictor = BiasedPredictor(8)
    result = extend_audio(song, target_seconds=41.3, seed=0, predictor=predictor)
    assert predictor.calls > 0 and result.model == "biased"
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
    out = wsola(stereo, start=start, end=end, new_length=new_length, sample_rate=sample_rate)
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
        output, stretch = stretch_to_length(Timeline.of_array(samples), samples.shape[0] + difference,
                                            sample_rate=sample_rate, seams=[20.0], head_keep_seconds=5.0,
                                            tail_keep_seconds=11.0)
        out = output.read(0, output.n_samples)
        assert out.shape[0] == output.n_samples == samples.shape[0] + difference
        assert np.array_equal(np.concatenate(list(output.blocks(block_frames=12345))), out)
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
    from harmonizer_cli.core.extend.render import Piece, align

    rng = np.random.default_rng(9)
    signal = rng.standard_normal((20000, 1)).astype(np.float32)
    piece_a = Piece(signal, signal[:, 0], 0, 8000)
    piece_b = Piece(signal, signal[:, 0], 8000 + 576, 16000)  # B's grid point is 576 samples late
    _, _, x0 = align(piece_a, piece_b, window=1323, reach=1500, search=700)
    assert x0 == -576
    # a refinement with a narrow search keeps the offset it is centred on
    _, _, refined = align(piece_a, piece_b, window=1323, reach=1500, search=150, centre=x0 + 40)
    assert refined == -576


def test_wsola_keeps_the_level_of_noise_like_music():
    # overlapping frames of noise do not add coherently: without a correction the
    # overlap-add loses about 0.1 dB (up to 0.24 dB on the real songs)
    sample_rate = 44100
    noise = (0.1 * np.random.default_rng(0).standard_normal((8 * sample_rate, 2))).astype(np.float32)
    start, end = 2 * sample_rate, 6 * sample_rate
    for factor in (0.97, 1.03):
        out = wsola(noise, start=start, end=end, new_length=int((end - start) * factor), sample_rate=sample_rate)
        change_db = 10 * np.log10(np.mean(out.astype(np.float64) ** 2) / np.mean(noise[start:end].astype(np.float64) ** 2))
        assert abs(change_db) < 0.04


def test_path_levels_predict_the_loudness_a_meter_measures():
    """The planner's loudness, brightness and dip estimate against pyloudnorm and the metrics."""
    import pyloudnorm

    from harmonizer_cli.core.extend import analyze_song
    from harmonizer_cli.core.audio_io import to_model_view
    from harmonizer_cli.core.extend.levels import PathLevels
    from harmonizer_cli.core.quality import level_dip_db

    sample_rate = 22050
    t = np.arange(40 * sample_rate) / sample_rate
    quiet = 0.05 * np.sin(2 * np.pi * 220.0 * t)
    loud = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.1 * np.sin(2 * np.pi * 3000.0 * t)
    mono = np.where((t >= 10) & (t < 30), loud, quiet).astype(np.float32)
    analysis = analyze_song(to_model_view(Audio(mono[:, None], sample_rate)), force_grid=True)
    levels = PathLevels(analysis.levels)
    meter = pyloudnorm.Meter(sample_rate)
    song_lufs = meter.integrated_loudness(mono.astype(np.float64))
    for spans in ([(0.0, 30.0), (10.0, 40.0)],               # the loud middle twice
                  [(0.0, 12.0), (0.0, 40.0)],                # more of the quiet start
                  [(0.0, 20.0), (25.0, 35.0), (15.0, 40.0)]):
        path = np.concatenate([mono[int(a * sample_rate):int(b * sample_rate)] for a, b in spans])
        d_loud, d_bright, d_dip = levels.drift(spans)
        measured = meter.integrated_loudness(path.astype(np.float64)) - song_lufs
        assert abs(d_loud - measured) < 0.15, (spans, d_loud, measured)
        rough_loud, rough_bright = levels.rough_drifts(*spans)  # (gated by the song's blocks, not the path's)
        assert abs(rough_loud - d_loud) < 0.3 and abs(rough_bright - d_bright) < 0.5, (spans, rough_loud, d_loud)
        dip = level_dip_db(path[:, None], sample_rate=sample_rate) - level_dip_db(mono[:, None], sample_rate=sample_rate)
        assert abs(d_dip - dip) < 1.0, (spans, d_dip, dip)


def test_banned_jumps_are_never_taken(song):
    from harmonizer_cli.core.audio_io import to_model_view
    from harmonizer_cli.core.extend import analyze_song, plan_path

    analysis = analyze_song(to_model_view(song))
    first = plan_path(analysis, 60.0, seed=0)
    assert first.jumps
    banned = frozenset(first.jumps)
    second = plan_path(analysis, 60.0, seed=0, banned=banned)
    assert second.jumps and not banned & set(second.jumps)


def test_every_seam_is_audited_against_the_song(song, monkeypatch):
    """A plan whose rendered seam stands out is re-planned without that jump."""
    from harmonizer_cli.core.extend import audit

    planned = []
    real_plan = audit.plan_path

    def spy(*args, **kwargs):
        plan = real_plan(*args, **kwargs)
        planned.append((kwargs.get("banned", frozenset()), list(plan.jumps)))
        return plan

    monkeypatch.setattr(audit, "plan_path", spy)
    # every seam of the first plan reads as exposed: its jumps must be banned next
    real_exposure = audit.seam_exposure

    def exposed_first(samples, mono, *, sample_rate, points):
        values = real_exposure(samples, mono, sample_rate=sample_rate, points=points)
        if len(points) < 100 and len(planned) == 1:  # the first plan's seams (not the song's moments)
            values = values + 1e6
        return values

    monkeypatch.setattr(audit, "seam_exposure", exposed_first)
    result = extend_audio(song, target_seconds=50.0, seed=1)
    assert 2 <= len(planned) <= audit.SEAM_AUDIT_ROUNDS
    first_jumps = set(planned[0][1])
    assert first_jumps <= planned[1][0]              # banned in the second plan
    assert not first_jumps & set(planned[1][1])
    assert result.samples.shape[0] == int(round(50.0 * song.sample_rate))


def test_a_plan_whose_layout_misses_the_length_is_replanned(song, monkeypatch):
    """The seams' groove alignments can add up (hundreds of loops of a short clip) to more
    than the local stretch takes: the audit measures the laid-out length, re-plans for the
    target moved by what was missed, and never keeps a plan the stretch cannot finish."""
    import dataclasses

    from harmonizer_cli.core.extend import audit

    targets, splices = [], []
    real_plan, real_splice = audit.plan_path, audit.splice

    def spy(analysis, target_seconds, **kwargs):
        targets.append(target_seconds)
        return real_plan(analysis, target_seconds, **kwargs)

    def short_first(audio, analysis, plan, target_seconds, **kwargs):
        spliced = real_splice(audio, analysis, plan, target_seconds, **kwargs)
        if not splices:  # the first layout comes out 2 s short of its target
            spliced = dataclasses.replace(spliced, n_target=spliced.n_target + 2 * audio.sample_rate)
        splices.append(spliced)
        return spliced

    monkeypatch.setattr(audit, "plan_path", spy)
    monkeypatch.setattr(audit, "splice", short_first)
    result = extend_audio(song, target_seconds=50.0, seed=1)
    assert len(targets) >= 2
    assert targets[0] == 50.0
    expected = 50.0 + (splices[0].n_target - splices[0].timeline.n_samples) / song.sample_rate
    assert targets[1] == pytest.approx(expected)   # the next plan aims 2 s (and the residual) further
    assert result.samples.shape[0] == int(round(50.0 * song.sample_rate))


def test_a_quiet_intro_among_loud_music_is_charged_as_a_dip():
    from harmonizer_cli.core.extend import analyze_song
    from harmonizer_cli.core.extend.candidates import seam_dip

    rate = 22050
    t = np.arange(50 * rate) / rate
    level = np.where((t < 10) | (t >= 40), 0.01, 0.3)  # quiet intro and outro, loud middle
    mono = (level * np.sin(2 * np.pi * 330.0 * t)).astype(np.float32)
    levels = analyze_song(mono, force_grid=True).levels
    dips = seam_dip(levels, np.array([30.0, 38.0, 35.0]), np.array([2.0, 22.0, 25.0]))
    assert dips[0] > 5.0          # loud music, then the quiet intro again: a restart
    assert dips[1] < 0.5 and dips[2] < 0.5  # loud to loud: nothing new


def test_the_real_ending_is_not_played_mid_way(song):
    """No jump leaves from inside the song's last seconds: those play once, at the end."""
    from harmonizer_cli.core.audio_io import to_model_view
    from harmonizer_cli.core.extend import analyze_song
    from harmonizer_cli.core.extend.plan import tail_seconds

    longer = make_song(seconds=40.0, seed=4)
    result = extend_audio(longer, target_seconds=100.0, seed=0)
    tail_start = longer.duration_seconds - tail_seconds(analyze_song(to_model_view(longer)))
    beat = 0.5  # 120 BPM; a cut may move up to 30 % of a beat after its beat
    for segment in result.segments[:-1]:
        assert segment["source_end"] <= tail_start + 0.3 * beat + 1e-3
    assert result.segments[-1]["source_end"] == pytest.approx(longer.duration_seconds, abs=1e-3)


@pytest.mark.parametrize("factor", [0.97, 1.03])
def test_wsola_makes_no_broadband_clicks_in_a_loud_master(factor):
    """A loud, band-limited master (like a decoded mp3) stretched by 3 %: nothing new above
    its band. A guard that lowered the boost sample by sample followed the waveform and
    made bursts up to 8 dB over the song's worst (the stretch clicks found on unseen music)."""
    from scipy.signal import butter, sosfiltfilt

    from harmonizer_cli.core.quality.clicks import click_report

    sample_rate = 44100
    rng = np.random.default_rng(3)
    t = np.arange(6 * sample_rate) / sample_rate
    lowpass = butter(8, 16000, fs=sample_rate, output="sos")
    dense = np.tanh(sosfiltfilt(lowpass, rng.standard_normal(t.size)))  # a dense, limited master
    chords = sum(np.sin(2 * np.pi * f * t) for f in (110.0, 220.0, 277.2, 329.6))
    music = sosfiltfilt(lowpass, dense + 0.2 * chords)
    music = np.stack([music, 0.9 * music], axis=1)
    music = (0.999 * music / np.max(np.abs(music))).astype(np.float32)
    start, end = 1 * sample_rate, 5 * sample_rate
    out = wsola(music, start=start, end=end, new_length=int((end - start) * factor), sample_rate=sample_rate)
    stretched = np.concatenate([music[:start], out, music[end:]])
    report = click_report(music, stretched, sample_rate=sample_rate, cutoff_hz=16000.0)
    assert report["out_of_band"]["excess_db"] <= 1.0
    assert report["crest"]["ratio"] <= 1.05


def test_the_output_renders_the_same_in_blocks_and_by_range(song):
    """The output is laid out and rendered on demand: any range, and the blocks in order,
    give the same samples as the whole."""
    result = extend_audio(song, target_seconds=52.7, seed=4)
    whole = result.samples
    assert whole.shape == (result.n_samples, 2) == (int(round(52.7 * song.sample_rate)), 2)
    assert np.array_equal(np.concatenate(list(result.output.blocks(block_frames=7777))), whole)
    rng = np.random.default_rng(0)
    for start in rng.integers(0, result.n_samples, 20):
        stop = int(start + rng.integers(1, 3 * song.sample_rate))
        assert np.array_equal(result.output.read(start, stop), whole[start:stop])


@pytest.mark.parametrize("bpm", [120.0, 170.0])
def test_a_looped_clip_loops_by_whole_bars(bpm):
    """A loop is heard at every pass: one that is not whole bars shifts the downbeat (or
    puts the felt beat off) every time. Loops off the bar are taken only as often as the
    exact length needs (the cheapest loop by cost alone is 5, 9 or 15 beats here)."""
    from collections import Counter

    from harmonizer_cli.core.extend.analysis import analyze_song
    from harmonizer_cli.core.extend.candidates import unit_beats
    from harmonizer_cli.core.extend.plan import plan_path

    song = make_song(9.0, bpm=bpm, sample_rate=44100, seed=3)
    analysis = analyze_song(to_mono(resample(song.samples, from_rate=44100, to_rate=22050)))
    plan = plan_path(analysis, 200.0, seed=0)
    lags = Counter(a - b for a, b in plan.jumps)
    whole = sum(n for lag, n in lags.items() if lag % unit_beats(analysis) == 0)
    assert len(plan.jumps) >= 20 and whole >= len(plan.jumps) - 2, lags
    assert abs(plan.residual_seconds) < 0.6


def test_a_short_clip_loops_on_its_own_period():
    """Beats are tracked at the analysis hop (23 ms) and a short clip's tempo is uncertain:
    a loop of grid beats can be tens of ms long or short, and at every seam of a looped
    clip the groove slips (the emotional piano clip: 111 of 113 seams). Loops take the
    length near the grid's at which the clip best matches itself."""
    from harmonizer_cli.core.extend.analysis import analyze_song
    from harmonizer_cli.core.extend.loops import loop_length_fit as _loop_length_fit

    song = make_song(8.0, bpm=93.9, sample_rate=44100, seed=2)
    analysis = analyze_song(to_mono(resample(song.samples, from_rate=44100, to_rate=22050)))
    fit = _loop_length_fit(analysis)
    period = 60.0 / 93.9
    for off in (-0.025, 0.0, 0.025):  # about a frame of the analysis hop either way
        assert abs(fit(4 * period + off) - 4 * period) < 0.006, (off, fit(4 * period + off))
    # on the no-pulse grid (0.5 s here, not the clip's beat) a loop moves up to half a
    # grid unit to where the clip matches itself: whole beats of the clip
    grid_fit = _loop_length_fit(analyze_song(to_mono(resample(song.samples, from_rate=44100, to_rate=22050)),
                                             force_grid=True))
    for grid_length, beats in ((1.5, 2), (2.0, 3), (2.5, 4), (4.0, 6)):
        assert abs(grid_fit(grid_length) - beats * period) < 0.006, (grid_length, grid_fit(grid_length))


@pytest.mark.parametrize("cut", [3.2, 8.1])
def test_a_looped_clip_ends_with_the_whole_clip(cut):
    """A clip cut from a song has its first beat up to a beat after its first sample; its
    last pass still starts at the first sample, so the output's last seconds are the clip
    (before: the last pass started on the first beat, 0.2-0.3 s in, correlation 0.96-0.97)."""
    song = make_song(24.0, bpm=120.0, sample_rate=44100, seed=1)
    clip = Audio(song.samples[int(cut * 44100):int((cut + 7.0) * 44100)].copy(), 44100)
    result = extend_audio(clip, target_seconds=60.0, seed=0)
    assert result.segments[-1]["source_start"] < 0.02
    tail = result.samples[-clip.samples.shape[0]:, 0]
    assert np.corrcoef(tail, clip.samples[:, 0])[0, 1] > 0.995


def test_a_looped_clip_whose_first_beat_comes_late_ends_with_the_whole_clip():
    """A clip whose first tracked beat lies more than a beat in (a quiet lead-in, or
    beats the tracker missed) still ends with all of it (before: its last pass started on
    that beat, and the clip's first second was missing from the output's ending)."""
    song = make_song(24.0, bpm=120.0, sample_rate=44100, seed=1)
    clip = song.samples[int(3.2 * 44100):int(10.2 * 44100)].copy()
    clip[:int(1.3 * 44100)] *= 0.02  # a quiet lead-in of more than two beats
    clip = Audio(clip, 44100)
    from harmonizer_cli.core.extend.analysis import analyze_song

    analysis = analyze_song(to_mono(resample(clip.samples, from_rate=44100, to_rate=22050)))
    assert analysis.beat_seconds[0] > analysis.beat_period_seconds  # (what the test is about)
    result = extend_audio(clip, target_seconds=60.0, seed=0)
    assert result.segments[-1]["source_start"] < 0.02
    tail = result.samples[-clip.samples.shape[0]:, 0]
    assert np.corrcoef(tail, clip.samples[:, 0])[0, 1] > 0.995


@pytest.mark.parametrize("target", [40.0, 50.0])
def test_shortening_keeps_the_songs_loudness(target):
    """Cutting out a song's loud middle leaves its quiet intro and ending: what is cut is
    chosen with the mood of what is left (before: 4-17 LU quieter than the song)."""
    from harmonizer_cli.core.quality.mood import _loudness_lufs

    song = make_song(80.0, bpm=120.0, sample_rate=22050, seed=4)
    t = np.arange(song.samples.shape[0]) / 22050
    quiet_ends = np.where((t < 24.0) | (t > 56.0), 0.15, 1.0).astype(np.float32)
    song = Audio(song.samples * quiet_ends[:, None], 22050)
    result = extend_audio(song, target_seconds=target, seed=0)
    assert result.samples.shape[0] == int(round(target * 22050))
    assert abs(_loudness_lufs(Audio(result.samples, 22050)) - _loudness_lufs(song)) < 3.0


def test_a_model_error_on_the_second_thread_reaches_the_caller(song):
    """The model's costs are found on a second thread while the song is analysed: its error is the call's."""

    class Broken(FakePredictor):
        def frame_features(self, mono_22050: np.ndarray) -> np.ndarray:
            raise ModelError("the model is broken")

    with pytest.raises(ModelError, match="broken"):
        extend_audio(song, target_seconds=50.0, predictor=Broken())


def test_a_loop_that_slips_the_pulse_is_charged_at_every_pass():
    """A loop of whole analysis beats can still slip the felt pulse (a 5:4 figure, beats
    tracked a little off): each loop is sketched over and over from the clip's onset
    envelope and the groove measure read across its seams. Whole pulses cost (almost)
    nothing; a loop a third of a pulse long or short is a stumble at every pass."""
    from harmonizer_cli.core.extend.loops import LOOP_STUMBLE_COST, loop_groove_cost
    from harmonizer_cli.core.quality.groove import find_pulse, onset_envelope

    clip = to_mono(resample(make_song(9.0, bpm=120.0, sample_rate=44100, seed=3).samples,
                            from_rate=44100, to_rate=22050))
    envelope, frame_rate = onset_envelope(clip, sample_rate=22050)
    pulse = find_pulse(envelope, frame_rate)
    assert pulse is not None
    cost = loop_groove_cost(envelope, frame_rate, pulse)
    period = pulse.periods[0]
    departures = np.array([7.0, 7.0, 7.0, 7.0])
    lengths = np.array([8, 4, 8 + 1 / 3, 4 - 1 / 3]) * period
    charged = cost(departures, lengths)
    assert np.all(charged[:2] < 0.5 * LOOP_STUMBLE_COST), charged
    assert np.all(charged[2:] >= LOOP_STUMBLE_COST), charged
    assert loop_groove_cost(envelope, frame_rate, None) is None


def test_two_jump_shortenings_are_every_pair_that_adds_up(monkeypatch):
    """The pairs of forward jumps that cut the right length, found by sorting (not a
    matrix of every pair), in chunks: the same set as the brute force."""
    from harmonizer_cli.core.extend import shorten

    rng = np.random.default_rng(3)
    back1, back2 = -rng.uniform(5.0, 200.0, 700), -rng.uniform(5.0, 200.0, 500)
    need, tolerance = -180.0, 0.8
    left = need - back1[:, None] - back2[None, :]
    want = set(zip(*np.nonzero(np.abs(left) <= tolerance)))
    monkeypatch.setattr(shorten, "PAIR_CHUNK", 97)  # many chunks, rows split across none
    got = [(int(i), int(j)) for rows, cols in shorten._pairs_adding_up(back1, back2, need, tolerance)
           for i, j in zip(rows, cols)]
    assert len(got) == len(set(got)) and set(got) >= want and len(want) > 100
    assert all(abs(left[i, j]) <= tolerance + 1e-5 for i, j in got)


def test_a_long_track_shortened_keeps_its_mood():
    """A real 8-minute track cut to 5: the cheapest seams all cut out one passage; what
    is left must sound like the whole track (before: centroid +52 %, loudness -1.4 LU)."""
    name = "warzone2100-track9"
    from harmonizer_cli.core.audio_io import load_audio
    from harmonizer_cli.core.quality.mood import mood_descriptors

    path = next((p for p in require_music(TRAIN_DIR) if p.stem == name), None)
    if path is None:
        pytest.skip(f"{name} is not in {TRAIN_DIR}")
    song = load_audio(path)
    result = extend_audio(song, target_seconds=300.0, seed=0)
    assert result.n_samples == int(round(300.0 * song.sample_rate))
    before, after = mood_descriptors(song, tempo_bpm=0.0), mood_descriptors(Audio(result.samples, song.sample_rate),
                                                                             tempo_bpm=0.0)
    assert abs(after["loudness_lufs"] - before["loudness_lufs"]) < 0.75
    assert abs(after["centroid_hz"] / before["centroid_hz"] - 1.0) < 0.04


@pytest.mark.parametrize("seconds, extra", [(3.5, 0.3), (5.0, 0.3), (5.0, 0.5)])
def test_a_clip_extended_by_less_than_a_loop_to_its_start_reaches_the_length(seconds, extra):
    """No loop back to a short clip's first beat is shorter than a few beats: a clip
    extended by a fraction of a second (a jingle to fit a 5.3 s slot) ends with its last
    part instead of all of it, the loop going in before that (before: refused, 'cannot
    recompose ... off by 0.5 s')."""
    song = make_song(24.0, bpm=120.0, sample_rate=44100, seed=6)
    clip = Audio(song.samples[int(5.1 * 44100):int((5.1 + seconds) * 44100)].copy(), 44100)
    result = extend_audio(clip, target_seconds=seconds + extra, seed=0)
    assert result.n_samples == int(round((seconds + extra) * 44100))
    assert len(result.seams_seconds) >= 1
    kept = int(0.3 * seconds * 44100) - 441  # the clip's last 30 %, untouched at the end (10 ms crossfade)
    assert np.array_equal(result.samples[-kept:], clip.samples[-kept:])


def test_a_clip_cut_shorter_keeps_its_start_and_its_last_part():
    """A 12 s clip of a few bars cut to 6 s (a jingle for a shorter slot): all of a clip
    is its ending, so no cut kept it; it ends with its last part, at most half the target
    (before: refused for every clip and target)."""
    song = make_song(24.0, bpm=120.0, sample_rate=44100, seed=6)
    clip = Audio(song.samples[int(5.1 * 44100):int(17.1 * 44100)].copy(), 44100)
    result = extend_audio(clip, target_seconds=6.0, seed=0)
    assert result.n_samples == 6 * 44100 and len(result.seams_seconds) >= 1
    assert np.array_equal(result.samples[:44100], clip.samples[:44100])
    kept = int(3.0 * 44100) - 441
    assert np.array_equal(result.samples[-kept:], clip.samples[-kept:])
