"""`harmonizer extend` end to end through the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from harmonizer_cli.cli import app

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import require_music  # noqa: E402
from test_extension import make_song  # noqa: E402

runner = CliRunner()


@pytest.fixture
def song_wav(tmp_path: Path) -> Path:
    song = make_song()
    path = tmp_path / "song.wav"
    sf.write(path, song.samples, song.sample_rate, subtype="FLOAT")
    return path


def invoke(*args: str):
    return runner.invoke(app, ["extend", *args])


def test_one_file_default_name_and_json(song_wav):
    result = invoke(str(song_wav), "--seconds", "40", "--json", "--no-model")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    output = song_wav.with_name("song.extended.wav")
    assert record["output"] == str(output) and output.exists()
    for key in ("input", "input_seconds", "output_seconds", "target_seconds", "sample_rate", "channels",
                "seams", "segments", "engine", "model", "fallback", "timings"):
        assert key in record
    info = sf.info(output)
    assert info.samplerate == 48000 and info.channels == 2
    assert abs(info.frames / info.samplerate - 40.0) <= 0.010
    assert record["engine"] == "guided" and record["model"] is None
    # the exact length comes from a local pitch-preserving stretch, never a varispeed
    assert "varispeed" not in record
    if record["stretch"] is not None:
        assert abs(record["stretch"]["factor"] - 1.0) <= 0.03
        start, end = record["stretch"]["region_seconds"]
        assert 0.0 < start < end < 40.0


def test_folder_with_out_dir_and_duration(song_wav, tmp_path):
    sf.write(tmp_path / "other.flac", make_song(seed=1).samples, 48000)
    out_dir = tmp_path / "new" / "out"
    result = invoke(str(tmp_path), "--duration", "0:35", "--out-dir", str(out_dir), "--no-model")
    assert result.exit_code == 0, result.output
    # default names are <stem>.extended.wav whatever the input container (the issue: "else wav")
    assert sorted(p.name for p in out_dir.iterdir()) == ["other.extended.wav", "song.extended.wav"]


def test_same_seed_is_bit_identical(song_wav, tmp_path):
    for name in ("a.wav", "b.wav"):
        assert invoke(str(song_wav), "-s", "38", "-o", str(tmp_path / name), "--seed", "5",
                      "--no-model").exit_code == 0
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_shortening_and_refusing_to_overwrite(song_wav, tmp_path):
    out = tmp_path / "short.wav"
    assert invoke(str(song_wav), "-s", "15", "-o", str(out), "--no-model").exit_code == 0
    assert abs(sf.info(out).frames / 48000 - 15.0) <= 0.010
    again = invoke(str(song_wav), "-s", "15", "-o", str(out), "--no-model")
    assert again.exit_code == 6
    assert invoke(str(song_wav), "-s", "15", "-o", str(out), "--no-model", "--force").exit_code == 0


def test_exactly_one_duration_option(song_wav):
    assert invoke(str(song_wav), "--no-model").exit_code == 2
    assert invoke(str(song_wav), "-s", "30", "-m", "1", "--no-model").exit_code == 2
    assert invoke(str(song_wav), "--duration", "1:75", "--no-model").exit_code == 2


def _parsed_targets(monkeypatch, song_wav, *args: str) -> list:
    """The target seconds ``extend`` would run its jobs with (the jobs themselves are not run)."""
    import harmonizer_cli.commands.extend as extend_command

    seen: list = []
    monkeypatch.setattr(extend_command, "run_jobs", lambda jobs, **_: seen.extend(j.target_seconds for j in jobs)
                        or len(jobs))
    result = invoke(str(song_wav), *args, "--no-model")
    assert result.exit_code == 0, result.output
    return seen


def test_hours_option(monkeypatch, song_wav):
    assert _parsed_targets(monkeypatch, song_wav, "--hours", "0.5") == [1800.0]
    assert _parsed_targets(monkeypatch, song_wav, "--hours", "0.5") == _parsed_targets(
        monkeypatch, song_wav, "--minutes", "30")
    assert _parsed_targets(monkeypatch, song_wav, "--hours", "24") == [86400.0]


@pytest.mark.parametrize("other", [["--minutes", "30"], ["--seconds", "1800"], ["--duration", "30:00"]])
def test_hours_with_another_length_is_a_usage_error(song_wav, other):
    result = invoke(str(song_wav), "--hours", "0.5", *other, "--no-model")
    assert result.exit_code == 2
    assert "give exactly one of --hours, --minutes, --seconds, --duration or --video" in result.stderr


@pytest.mark.parametrize("hours", ["0", "-1", "24.01"])
def test_hours_out_of_range_is_a_usage_error(song_wav, hours):
    result = invoke(str(song_wav), "--hours", hours, "--no-model")
    assert result.exit_code == 2 and "at most 24 hours" in result.stderr


def test_batch_with_a_bad_file_goes_on(song_wav, tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio at all")
    out_dir = tmp_path / "out"
    result = invoke(str(song_wav), str(bad), "-s", "30", "--out-dir", str(out_dir), "--no-model", "--json")
    assert result.exit_code == 7
    assert (out_dir / "song.extended.wav").exists()
    assert "broken.wav" in result.stderr


def test_single_bad_file_keeps_its_exit_code(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio at all")
    assert invoke(str(bad), "-s", "30", "--no-model").exit_code == 3


def test_a_length_the_song_cannot_reach_names_the_file(song_wav, tmp_path):
    """A 24 s song cut to 1 s cannot keep its beginning and real ending: one line that
    names the file (before: the local stretch's message named none), exit 3, no output."""
    out = tmp_path / "short.wav"
    result = invoke(str(song_wav), "-s", "1", "-o", str(out))
    assert result.exit_code == 3
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert result.stderr.startswith(f"error: {song_wav}: cannot recompose to 1.00 s")
    assert not out.exists()


def test_neural_without_model_is_a_model_error(song_wav, tmp_path):
    result = invoke(str(song_wav), "-s", "40", "--engine", "neural", "--model", str(tmp_path / "none"),
                    "-o", str(tmp_path / "n.wav"))
    assert result.exit_code == 5


def _crest(x: np.ndarray, centre: int, half: int) -> float:
    region = x[max(0, centre - half): centre + half]
    return float(np.max(np.abs(np.diff(region))) / (np.sqrt(np.mean(region ** 2)) + 1e-9))


def _top_lag_share(x: np.ndarray, rate: int, start_seconds: float) -> float:
    """Share of 0.5 s frames past ``start_seconds`` whose best earlier match is at the most common lag."""
    hop = rate // 2
    frames = x[: x.size // hop * hop].reshape(-1, hop)
    spectra = np.log(np.abs(np.fft.rfft(frames * np.hanning(hop), axis=1))[:, 20:2000:10] + 1e-6)
    spectra -= spectra.mean(axis=1, keepdims=True)
    spectra /= np.linalg.norm(spectra, axis=1, keepdims=True) + 1e-9
    lags = []
    for k in range(int(start_seconds * 2), frames.shape[0]):
        similarity = spectra[: k - 4] @ spectra[k]
        lags.append(k - int(np.argmax(similarity)))
    values, counts = np.unique(np.array(lags), return_counts=True)
    # merge neighbouring lags (frame quantisation)
    best = max(counts[np.abs(values - v) <= 1].sum() for v in values)
    return best / len(lags)


@pytest.mark.music
def test_real_song_seams_and_variety(tmp_path):
    songs = require_music()
    source = next((p for p in songs if "funk" in p.name), songs[0])
    out = tmp_path / "real.wav"
    result = invoke(str(source), "-s", "150", "-o", str(out), "--json", "--no-model")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    samples, rate = sf.read(out, dtype="float32")
    original, _ = sf.read(source, dtype="float32")
    assert abs(samples.shape[0] / rate - 150.0) <= 0.010
    mono, mono_original = samples.mean(axis=1), original.mean(axis=1)
    half = int(0.005 * rate)
    seam_crest = [_crest(mono, int(t * rate), half) for t in record["seams"]]
    beat_times = np.arange(2.0, original.shape[0] / rate - 2.0, 60.0 / record["tempo_bpm"])
    beat_crest = [_crest(mono_original, int(t * rate), half) for t in beat_times]
    assert np.percentile(seam_crest, 95) <= 1.1 * np.percentile(beat_crest, 95)
    tail = 10 * rate
    assert np.corrcoef(mono[-tail:], mono_original[-tail:])[0, 1] >= 0.99
    assert _top_lag_share(mono, rate, original.shape[0] / rate) <= 0.5


def test_explicit_model_that_does_not_exist_is_an_error(song_wav, tmp_path):
    result = invoke(str(song_wav), "-s", "40", "--model", str(tmp_path / "none"), "-o", str(tmp_path / "g.wav"))
    assert result.exit_code == 5
    assert not (tmp_path / "g.wav").exists()
    assert invoke(str(song_wav), "-s", "40", "--model", str(tmp_path), "--no-model").exit_code == 2


@pytest.mark.parametrize(("subtype", "suffix", "expected"), [
    ("PCM_24", "wav", "PCM_24"), ("PCM_24", "flac", "PCM_24"), ("FLOAT", "wav", "FLOAT"),
    ("FLOAT", "flac", "PCM_24"), ("PCM_16", "wav", "PCM_16"), ("PCM_16", "flac", "PCM_16"),
])
def test_output_keeps_the_input_resolution(tmp_path, subtype, suffix, expected):
    song = make_song(seconds=12.0)
    source = tmp_path / "in.wav"
    sf.write(source, song.samples, song.sample_rate, subtype=subtype)
    out = tmp_path / f"out.{suffix}"
    result = invoke(str(source), "-s", "20", "-o", str(out), "--no-model")
    assert result.exit_code == 0, result.output
    assert sf.info(out).subtype == expected
