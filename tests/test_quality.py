"""Extension-quality metrics: each measure must be able to fail on a synthetic defect."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from harmonizer_cli.cli import app
from harmonizer_cli.core import quality
from harmonizer_cli.core.audio_io import Audio, load_audio, to_model_view

from conftest import require_music

RATE = 44100
BEAT_SECONDS = 0.5
CUTOFF_HZ = 16000.0


def _lowpass(x: np.ndarray, cutoff_hz: float = CUTOFF_HZ, rate: int = RATE) -> np.ndarray:
    """Brick-wall low-pass (like an mp3 encoder's) plus a decoder-like floor at -130 dB."""
    spectrum = np.fft.rfft(x, axis=0)
    spectrum[np.fft.rfftfreq(x.shape[0], 1.0 / rate) > cutoff_hz] = 0.0
    floor = 3e-7 * np.random.default_rng(99).standard_normal(x.shape)
    return np.fft.irfft(spectrum, n=x.shape[0], axis=0) + floor


def _song(seconds: float, *, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """A seeded 'song' of two sections: a new random chord every 2 s (4 beats of 0.5 s)
    with smooth 10 ms changes and a soft kick on every beat; the second half is louder
    and brighter (more partials). Low-passed at 16 kHz like an mp3. Shape (n,), float64."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    beat = int(BEAT_SECONDS * rate)
    chord = 4 * beat
    n_chords = int(np.ceil(n / chord))
    freqs = 110.0 * 2 ** (rng.integers(0, 24, size=(n_chords, 3)) / 12.0)
    ramp = int(0.01 * rate)
    out = np.zeros(n)
    for k in range(n_chords):
        lo, hi = max(0, k * chord - ramp), min(n, (k + 1) * chord + ramp)
        env = np.ones(hi - lo)
        env[:ramp] = np.linspace(0, 1, ramp)[: env.size]
        env[-ramp:] = np.minimum(env[-ramp:], np.linspace(1, 0, ramp)[-env[-ramp:].size:])
        bright = k * chord >= n // 2
        partials = (1, 2, 3, 4, 5, 6) if bright else (1,)
        tone = sum(np.sin(2 * np.pi * f * p * t[lo:hi] + rng.uniform(0, 2 * np.pi)) / p
                   for f in freqs[k] for p in partials)
        out[lo:hi] += (0.15 if bright else 0.07) * env * tone
    for k in range(int(np.ceil(n / beat))):
        length = min(beat, n - k * beat)
        hit = np.sin(2 * np.pi * 60.0 * np.arange(length) / rate) * np.exp(-np.arange(length) / (0.05 * rate))
        out[k * beat: k * beat + length] += 0.3 * hit  # a soft kick on every beat
    out += 0.003 * rng.standard_normal(n)
    return _lowpass(out, rate=rate)


def _audio(x: np.ndarray, rate: int = RATE) -> Audio:
    return Audio(np.asarray(x, dtype=np.float32)[:, None] if np.ndim(x) == 1 else np.asarray(x, np.float32), rate)


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    return _song(24.0, seed=1)


def _beats(seconds: float) -> np.ndarray:
    return np.arange(1.0, seconds - 1.0, BEAT_SECONDS)


def _bad_splice(x: np.ndarray, *, cuts: list[tuple[float, float]], rate: int = RATE) -> tuple[np.ndarray, list]:
    """Concatenate x[a:b] pieces (seconds) with hard cuts; return the output and the seam times.

    Each cut is moved by up to 5 ms to where the jump between the two sides is largest
    (deliberately not at a zero crossing)."""
    mono = x if x.ndim == 1 else x.mean(axis=1)
    bounds = [[int(a * rate), int(b * rate)] for a, b in cuts]
    for k in range(len(bounds) - 1):
        end, start = bounds[k][1], bounds[k + 1][0]
        shift = int(np.argmax([abs(mono[end + d - 1] - mono[start + d]) for d in range(int(0.005 * rate))]))
        bounds[k][1], bounds[k + 1][0] = end + shift, start + shift
    pieces, seams, total = [], [], 0
    for a, b in bounds:
        piece = x[a:b]
        pieces.append(piece)
        total += piece.shape[0]
        seams.append(total / rate)
    return np.concatenate(pieces), seams[:-1]


# --------------------------------------------------------------------------- seams


def test_codec_cutoff_found_for_lowpassed_noise_and_none_for_full_band(rng):
    noise = rng.standard_normal(RATE * 5)
    cutoff = quality.estimate_codec_cutoff(_lowpass(noise), sample_rate=RATE)
    assert cutoff is not None and abs(cutoff - CUTOFF_HZ) < 700
    assert quality.estimate_codec_cutoff(noise, sample_rate=RATE) is None


def test_hard_splice_raises_crest_novelty_and_broadband_above_beats(song):
    beats = _beats(24.0)
    # off the beat grid, mid-waveform, between the two sections
    cuts = [(0.0, 6.13), (14.37, 18.61), (3.29, 9.0)]
    spliced, seams = _bad_splice(song, cuts=cuts)
    cutoff = quality.estimate_codec_cutoff(song, sample_rate=RATE)
    assert cutoff is not None
    for name, measure in [("crest", quality.seam_crest), ("novelty", quality.seam_novelty)]:
        at_beats = measure(song, sample_rate=RATE, times=beats)
        at_seams = measure(spliced, sample_rate=RATE, times=seams)
        assert np.nanmin(at_seams) > 1.1 * np.nanpercentile(at_beats, 95), name
    at_beats = quality.seam_broadband(song, sample_rate=RATE, times=beats, cutoff_hz=cutoff)
    at_seams = quality.seam_broadband(spliced, sample_rate=RATE, times=seams, cutoff_hz=cutoff)
    assert np.nanmin(at_seams) > 100 * np.nanpercentile(at_beats, 95)


def test_clean_seams_at_beats_score_like_beats(song):
    """Seams that are really ordinary beats (no splice) have ratios near 1."""
    beats = _beats(24.0)
    for measure in (quality.seam_crest, quality.seam_novelty):
        at_beats = measure(song, sample_rate=RATE, times=beats)
        at_some = measure(song, sample_rate=RATE, times=beats[::5])
        assert np.nanpercentile(at_some, 95) <= 1.1 * np.nanpercentile(at_beats, 95)


def test_crossfaded_splice_on_a_beat_is_not_flagged_by_crest_or_broadband(song):
    beats = _beats(24.0)
    fade = int(0.01 * RATE)
    a_end, b_start = int(8.0 * RATE), int(15.0 * RATE)  # both on beats
    head, tail = song[: a_end + fade // 2].copy(), song[b_start - fade // 2:].copy()
    ramp = np.sin(np.linspace(0, np.pi / 2, fade)) ** 2
    mixed = head[-fade:] * (1 - ramp) + tail[:fade] * ramp
    out = np.concatenate([head[:-fade], mixed, tail[fade:]])
    seam = [(a_end + fade // 2 - fade / 2) / RATE]
    cutoff = quality.estimate_codec_cutoff(song, sample_rate=RATE)
    crest_beats = quality.seam_crest(song, sample_rate=RATE, times=beats)
    assert quality.seam_crest(out, sample_rate=RATE, times=seam)[0] <= 1.1 * np.percentile(crest_beats, 95)
    broad_beats = quality.seam_broadband(song, sample_rate=RATE, times=beats, cutoff_hz=cutoff)
    assert quality.seam_broadband(out, sample_rate=RATE, times=seam, cutoff_hz=cutoff)[0] <= 1.1 * np.percentile(
        broad_beats, 95
    )


def test_16_bit_rounding_at_a_crossfade_is_not_read_as_a_burst(song):
    """Written as 16-bit PCM, a crossfade is rounded again where the song's own samples
    are copied exactly; that noise (about -100 dBFS) is no click. With the report's floor
    (60 dB below the song's power, as the whole-output click measure) it does not read
    as a burst, and a hard splice still does."""
    from harmonizer_cli.core.quality.clicks import click_reference

    def pcm16(x):
        return np.floor(np.asarray(x, dtype=np.float64) * 32768.0) / 32768.0

    from scipy.signal import butter, sosfiltfilt

    cutoff = 8000.0  # a codec's steep low-pass (at 6 kHz): 1 kHz above the cut-off, only the rounding noise
    noise = sosfiltfilt(butter(16, 6000.0, fs=RATE, output="sos"), np.random.default_rng(5).standard_normal(24 * RATE))
    song16 = pcm16(0.05 * noise)
    beats = _beats(24.0)
    fade = int(0.1 * RATE)
    a_end, b_start = int(8.0 * RATE), int(15.0 * RATE)
    angle = np.linspace(0, np.pi / 2, fade)  # equal power: the two sides' own rounding noise adds up to one
    mixed = (song16[a_end - fade // 2:a_end + fade // 2] * np.cos(angle)
             + song16[b_start - fade // 2:b_start + fade // 2] * np.sin(angle))
    out = pcm16(np.concatenate([song16[:a_end - fade // 2], mixed, song16[b_start + fade // 2:]]))
    seam = [a_end / RATE]
    floor = click_reference(song16, sample_rate=RATE, cutoff_hz=cutoff)["floor_power"]
    raw_beats = quality.seam_broadband(song16, sample_rate=RATE, times=beats, cutoff_hz=cutoff)
    raw_seam = quality.seam_broadband(out, sample_rate=RATE, times=seam, cutoff_hz=cutoff)[0]
    assert raw_seam > 1.5 * np.nanpercentile(raw_beats, 95)  # (what the floor keeps out)
    at_beats = quality.seam_broadband(song16, sample_rate=RATE, times=beats, cutoff_hz=cutoff, floor_power=floor)
    at_seam = quality.seam_broadband(out, sample_rate=RATE, times=seam, cutoff_hz=cutoff, floor_power=floor)[0]
    assert at_seam <= 1.1 * np.nanpercentile(at_beats, 95)
    spliced, seams = _bad_splice(song16, cuts=[(0.0, 6.13), (14.37, 18.61), (3.29, 9.0)])
    hard = quality.seam_broadband(pcm16(spliced), sample_rate=RATE, times=seams, cutoff_hz=cutoff, floor_power=floor)
    assert np.nanmin(hard) > 10 * np.nanpercentile(at_beats, 95)


def test_detect_seams_finds_hard_cuts_to_the_millisecond(song):
    cuts = [(0.0, 7.3), (15.1, 19.9), (2.2, 12.0)]
    spliced, seams = _bad_splice(song, cuts=cuts)
    found = quality.detect_seams(_audio(song), _audio(spliced))
    assert found.matched_share > 0.9
    assert len(found.times) == len(seams)
    np.testing.assert_allclose(found.times, seams, atol=0.001)


def test_detect_seams_finds_nothing_in_an_unchanged_copy(song):
    found = quality.detect_seams(_audio(song), _audio(song))
    assert len(found.times) == 0


# --------------------------------------------------------------------------- dips, ending


def test_level_dip_detects_a_quiet_gap(song):
    gapped = song.copy()
    gapped[int(10 * RATE): int(12 * RATE)] *= 0.01  # -40 dB for 2 s
    clean = quality.level_dip_db(song, sample_rate=RATE)
    dipped = quality.level_dip_db(gapped, sample_rate=RATE)
    assert clean < 8.0  # the quiet section sits about 5 dB below the median
    assert dipped > clean + 25.0


def test_identical_ending_correlates_and_a_faded_one_does_not(song):
    original = _audio(song)
    longer = _audio(np.concatenate([song[: int(10 * RATE)], song]))
    same = quality.ending_match(original, longer)
    assert same["correlation"] > 0.999 and same["lag_seconds"] == 0.0
    faded = song.copy()
    faded[-int(10 * RATE):] *= np.linspace(1.0, 0.0, int(10 * RATE))
    worse = quality.ending_match(original, _audio(faded))
    assert worse["correlation"] < 0.95


def test_padded_silence_and_cut_tail_are_reported(song):
    original = _audio(song)
    padded = _audio(np.concatenate([song, np.zeros(RATE)]))
    assert quality.trailing_silence_seconds(padded) - quality.trailing_silence_seconds(original) == pytest.approx(1.0, abs=0.01)
    cut = quality.ending_match(original, _audio(song[: -int(0.02 * RATE)]))
    assert cut["lag_seconds"] == pytest.approx(-0.02, abs=0.001)


# --------------------------------------------------------------------------- repetition


def test_tiled_loop_repeats_at_one_lag_and_fresh_material_does_not():
    rate = 22050
    loop = _song(20.0, seed=2, rate=rate)
    tiled = np.tile(loop, 3)
    fresh = _song(60.0, seed=3, rate=rate)
    start = int(round(20.0 / quality.REPETITION_FRAME_SECONDS))
    tile_shares = quality.repetition_shares(quality.repetition_features(tiled.astype(np.float32)), start_frame=start)
    fresh_shares = quality.repetition_shares(quality.repetition_features(fresh.astype(np.float32)), start_frame=start)
    assert tile_shares["past"] > 0.9
    assert tile_shares["modal_lag_frames"] * quality.REPETITION_FRAME_SECONDS == pytest.approx(20.0, abs=0.3)
    assert fresh_shares["past"] < 0.2


def _tiled_segments(song_seconds: float, output_seconds: float) -> list:
    """The plain loop as a segment list: the whole song again and again, the last pass cut."""
    starts = np.arange(0.0, output_seconds, song_seconds)
    return [{"source_start": 0.0, "source_end": float(min(song_seconds, output_seconds - t)), "output_start": float(t)}
            for t in starts]


def _spread_segments(rng: np.random.Generator, song_seconds: float, output_seconds: float, *,
                     shortest: float = 8.0, longest: float = 28.0, grid: float = 0.001) -> list:
    """Segments of random length, each from a random place of the song (reuse spread over all of it)."""
    segments, t = [], 0.0
    while t < output_seconds - 1e-9:
        length = min(round(rng.uniform(shortest, longest) / grid) * grid, output_seconds - t)
        start = round(rng.uniform(0.0, song_seconds - length) / grid) * grid
        segments.append({"source_start": start, "source_end": start + length, "output_start": t})
        t += length
    return segments


def test_segment_repetition_of_the_plain_loop_is_one_past_the_first_pass():
    figures = quality.segment_repetition(_tiled_segments(180.0, 3 * 3600.0), source_seconds=180.0)
    assert figures["past"] == 1.0
    assert figures["modal_lag_seconds"] == pytest.approx(180.0)
    assert figures["share"] == pytest.approx(figures["loop_share"]) == pytest.approx(1 - 180.0 / (3 * 3600.0))
    assert figures["cycle"] == 1.0 and figures["cycle_segments"] == 1
    assert figures["cycle_period_seconds"] == pytest.approx(180.0)


def test_segment_repetition_of_two_long_segments_taken_in_turn_is_a_short_cycle():
    # a 200 s song: its first 20 s, then A = 20-100 s and B = 60-150 s (they share 60-100 s)
    # in turn ten times, then its last 50 s
    head = [{"source_start": 0.0, "source_end": 20.0, "output_start": 0.0}]
    turns = [{"source_start": a, "source_end": b, "output_start": 20.0 + 170.0 * k + (80.0 if b == 150.0 else 0.0)}
             for k in range(10) for a, b in ((20.0, 100.0), (60.0, 150.0))]
    tail = [{"source_start": 150.0, "source_end": 200.0, "output_start": 1720.0}]
    figures = quality.segment_repetition(head + turns + tail, source_seconds=200.0)
    assert figures["modal_lag_seconds"] == pytest.approx(170.0)
    assert figures["past"] == pytest.approx((1720.0 - 200.0) / (1770.0 - 200.0))
    assert figures["cycle_segments"] == 2 and figures["cycle_period_seconds"] == pytest.approx(170.0)
    assert figures["cycle"] == pytest.approx(1700.0 / 1770.0)
    # the shared 60-100 s repeats at other lags too: each frame counts once
    assert figures["share"] <= figures["repeating_fraction"] <= 1.0


def test_segment_repetition_of_reuse_spread_over_the_song_is_low():
    segments = _spread_segments(np.random.default_rng(5), 180.0, 3600.0)
    figures = quality.segment_repetition(segments, source_seconds=180.0)
    assert figures["repeating_fraction"] > 0.9  # everything is played again, ...
    assert figures["past"] < 0.1 and figures["share"] < 0.1  # ... but never at one lag
    assert figures["cycle"] == 0.0 and figures["cycle_segments"] is None
    assert figures["loop_share"] == pytest.approx(1 - 180.0 / 3600.0)


def test_segment_repetition_counts_frames_as_a_frame_by_frame_comparison_does():
    """On a 0.1 s grid the source instant of every frame is known: compare every pair of frames."""
    from scipy.ndimage import maximum_filter1d

    rng = np.random.default_rng(11)
    for _ in range(2):
        segments = _spread_segments(rng, 60.0, 240.0, shortest=3.0, longest=25.0, grid=0.1)
        figures = quality.segment_repetition(segments, source_seconds=60.0)
        n, start, min_lag, tolerance = 2400, 600, 40, 3
        source = np.empty(n, dtype=np.int64)
        for segment in segments:
            first = int(round(segment["output_start"] * 10))
            length = int(round((segment["source_end"] - segment["source_start"]) * 10))
            source[first:first + length] = int(round(segment["source_start"] * 10)) + np.arange(length)
        at_lag = np.zeros((n, n), dtype=bool)  # at_lag[t, lag]: frame t plays what frame t - lag played
        for lag in range(min_lag, n):
            at_lag[lag:, lag] = source[lag:] == source[:-lag]
        near = maximum_filter1d(at_lag.astype(np.uint8), size=2 * tolerance + 1, axis=1).astype(bool)
        assert figures["n_frames"] == n
        assert figures["repeating_fraction"] == pytest.approx(at_lag.any(axis=1).mean())
        assert figures["share"] == pytest.approx(near.sum(axis=0).max() / n)
        assert figures["past"] == pytest.approx(near[start:].sum(axis=0).max() / (n - start))


def test_segment_repetition_without_jumps_or_copies_is_zero():
    once = quality.segment_repetition([{"source_start": 0.0, "source_end": 180.0, "output_start": 0.0}],
                                      source_seconds=180.0)
    assert once["share"] == 0.0 and once["repeating_fraction"] == 0.0 and once["cycle"] == 0.0
    assert once["past"] is None and once["modal_lag_seconds"] is None  # nothing past the song
    shortened = [{"source_start": 0.0, "source_end": 50.0, "output_start": 0.0},
                 {"source_start": 100.0, "source_end": 180.0, "output_start": 50.0}]
    assert quality.segment_repetition(shortened, source_seconds=180.0)["share"] == 0.0
    # the neural engine's generated frames play no source material
    neural = [{"source_start": 0.0, "source_end": 180.0, "output_start": 0.0},
              {"source_start": None, "source_end": None, "output_start": 180.0, "generated": True}]
    figures = quality.segment_repetition(neural, source_seconds=180.0, output_seconds=300.0)
    assert figures["past"] == 0.0 and figures["n_frames"] == 3000


def test_segment_repetition_rejects_what_it_cannot_measure():
    with pytest.raises(ValueError, match="no segments"):
        quality.segment_repetition([], source_seconds=10.0)
    backwards = [{"source_start": 0.0, "source_end": 10.0, "output_start": 10.0},
                 {"source_start": 0.0, "source_end": 10.0, "output_start": 0.0}]
    with pytest.raises(ValueError, match="output order"):
        quality.segment_repetition(backwards, source_seconds=10.0)
    generated_last = [{"source_start": None, "source_end": None, "output_start": 0.0}]
    with pytest.raises(ValueError, match="output_seconds"):
        quality.segment_repetition(generated_last, source_seconds=10.0)


def test_segment_repetition_measures_ten_hours_of_segments():
    segments = _spread_segments(np.random.default_rng(7), 180.0, 10 * 3600.0)
    assert 1500 < len(segments) < 2500
    figures = quality.segment_repetition(segments, source_seconds=180.0)
    assert figures["n_frames"] == 360000 and figures["n_segments"] == len(segments)
    assert 0.0 <= figures["share"] <= figures["repeating_fraction"] <= 1.0
    assert figures["repeating_fraction"] > 0.95 and figures["past"] < 0.1 and figures["cycle"] == 0.0
    assert figures["modal_lag_seconds"] >= 4.0


# --------------------------------------------------------------------------- mood, report


def test_key_of_a_major_profile_is_found():
    chroma = np.roll(np.array([1.0, 0, 0.5, 0, 0.8, 0.6, 0, 0.9, 0, 0.5, 0, 0.3]), 7)  # G major-ish
    name, corr = quality.estimate_key(chroma)
    assert name == "G major" and corr > 0.7


@pytest.fixture(scope="module")
def stereo_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    song = _song(30.0, seed=4)
    stereo = np.stack([song, 0.9 * song], axis=1)
    # from the soft section into the bright one; the last 13 s (the real ending) untouched
    extended, seams = _bad_splice(stereo, cuts=[(0.0, 5.13), (16.31, 30.0)])
    sf.write(folder / "orig.wav", stereo, RATE, subtype="FLOAT")
    sf.write(folder / "ext.wav", extended, RATE, subtype="FLOAT")
    return folder, seams, extended.shape[0] / RATE


def test_report_is_json_able_and_flags_the_bad_splice(stereo_pair):
    folder, seams, seconds = stereo_pair
    original, extended = load_audio(folder / "orig.wav"), load_audio(folder / "ext.wav")
    report = quality.extension_report(original, extended, seams=seams, target_seconds=seconds,
                                      beat_times=_beats(30.0))
    json.dumps(report)
    checks = quality.targets_met(report)
    assert checks["duration"] and checks["format_kept"]
    assert checks["seam_crest"] is False and checks["seam_novelty"] is False and checks["seam_broadband"] is False
    assert checks["ending"] is True  # the splice keeps the real ending
    assert report["seams"]["crest"]["p_value"] < 0.05  # beyond the luck of one seam
    assert len(quality.summary_rows(report, checks)) > 10


def test_evaluate_extension_cli_json_with_extend_style_seams(stereo_pair, tmp_path):
    folder, seams, seconds = stereo_pair
    record = {"input": "x", "output": str(folder / "ext.wav"), "seams": seams, "target_seconds": seconds}
    (tmp_path / "extend.json").write_text(json.dumps(record) + "\n")
    result = CliRunner().invoke(app, ["evaluate", "--extension", str(folder / "orig.wav"), str(folder / "ext.wav"),
                                      "--seams", str(tmp_path / "extend.json"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["seams"]["source"] == "given" and data["seams"]["count"] == 1
    assert data["duration"]["error_seconds"] == pytest.approx(0.0, abs=1e-6)
    assert data["targets_met"]["seam_crest"] is False


def test_evaluate_extension_cli_rejects_bad_seams_file(stereo_pair, tmp_path):
    folder, _, _ = stereo_pair
    (tmp_path / "bad.json").write_text("{not json")
    result = CliRunner().invoke(app, ["evaluate", "--extension", str(folder / "orig.wav"), str(folder / "ext.wav"),
                                      "--seams", str(tmp_path / "bad.json")])
    assert result.exit_code == 2
    assert "bad.json" in result.output


def test_evaluate_without_extension_evaluates_a_model_and_needs_data(tmp_path):
    # without --extension, evaluate scores a model: it needs preprocessed data
    result = CliRunner().invoke(app, ["evaluate", "--data", str(tmp_path / "missing")])
    assert result.exit_code == 4
    assert "manifest.json" in result.stderr


# --------------------------------------------------------------------------- real music


@pytest.mark.music
def test_calibration_on_a_real_song_tile_and_second_half():
    path = next(p for p in require_music() if p.name.startswith("summer-party"))
    audio = load_audio(path)
    view = to_model_view(audio)
    step = quality.REPETITION_FRAME_SECONDS
    own = quality.repetition_shares(quality.repetition_features(view), start_frame=int(view.size / 22050 / 2 / step))
    tile = np.tile(view, 3)[: 300 * 22050]
    tiled = quality.repetition_shares(quality.repetition_features(tile), start_frame=int(np.ceil(view.size / 22050 / step)))
    assert tiled["past"] > 0.9
    assert own["past"] < 0.3
