"""`harmonizer preprocess`: by-song split, incremental runs, bad files, shards, CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from harmonizer_cli.cli import app
from harmonizer_cli.core.features import frames_for
from harmonizer_cli.core.research.preprocess import (
    PreprocessConfig, ProcessedData, preprocess_dataset, split_songs,
)
from harmonizer_cli.errors import ConfigError, DataError

SR = 22050


def write_songs(folder, n_songs: int, *, seconds=(31, 36), sample_rate=SR, seed=0):
    """Seeded noisy tones of 31-36 s (at least one window each) as wav files."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_songs):
        duration = rng.uniform(*seconds)
        t = np.arange(int(duration * sample_rate)) / sample_rate
        audio = 0.3 * np.sin(2 * np.pi * (110 + 40 * i) * t) + 0.05 * rng.standard_normal(t.size)
        path = folder / f"song{i:02d}.wav"
        sf.write(path, audio.astype(np.float32), sample_rate, subtype="PCM_16")
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_songs(root / "raw", 10)
    write_songs(root / "raw" / "sub", 1, sample_rate=44100, seed=3)  # resampled, in a subfolder
    (root / "raw" / "broken.mp3").write_bytes(b"ID3 this is not audio" * 50)
    (root / "raw" / "notes.txt").write_text("ignored")
    return root


def test_split_is_by_song_seeded_and_complete():
    ids = [f"s{i}" for i in range(20)]
    a = split_songs(ids, seed=1, validation_fraction=0.1, test_fraction=0.2)
    assert a == split_songs(list(reversed(ids)), seed=1, validation_fraction=0.1, test_fraction=0.2)
    assert sorted(a.values()).count("test") == 4 and sorted(a.values()).count("validation") == 2
    assert a != split_songs(ids, seed=2, validation_fraction=0.1, test_fraction=0.2)
    small = split_songs(["a", "b", "c"], seed=0, validation_fraction=0.1, test_fraction=0.1)
    assert sorted(small.values()) == ["test", "train", "validation"]


def test_preprocess_writes_shards_manifest_and_skips_bad_files(corpus):
    out = corpus / "processed"
    result = preprocess_dataset(corpus / "raw", out, config=PreprocessConfig(hop=1, seed=0))
    manifest = json.loads((out / "manifest.json").read_text())
    assert result.processed == 11 and result.skipped == 0
    assert len(result.failed) == 1 and result.failed[0]["source"].endswith("broken.mp3")
    assert manifest["failed"] == result.failed
    assert len(manifest["songs"]) == 11 and manifest["representation"] == "logmel"
    data = ProcessedData(out)
    # by song: no test or validation song has a window in train
    splits = {s["id"]: s["split"] for s in manifest["songs"]}
    for split in ("train", "validation", "test"):
        assert all(splits[s["id"]] == split for s in data.songs(split))
    assert {s["id"] for s in data.songs("train")}.isdisjoint(s["id"] for s in data.songs("test"))
    assert manifest["totals"]["test"]["songs"] >= 1 and manifest["totals"]["validation"]["songs"] >= 1
    # whole songs, windows indexed not copied: n_windows = n_frames - 29 at hop 1
    for song in manifest["songs"]:
        assert song["n_frames"] == -(-song["n_samples"] // SR)
        assert song["n_windows"] == song["n_frames"] - 29
    # the shard is the song's features
    song = next(s for s in manifest["songs"] if s["relative"] == "song03.wav")
    audio, _ = sf.read(corpus / "raw" / "song03.wav", dtype="float32")
    np.testing.assert_allclose(np.load(out / song["shard"]), frames_for(audio), atol=1e-4)
    index = data.window_index("train")
    inputs, targets = data.gather("train", index[:3])
    assert inputs.shape == (3, 20, 256) and targets.shape == (3, 10, 256)
    first = data.songs("train")[int(index[1, 0])]
    np.testing.assert_array_equal(inputs[1], data.frames(first)[index[1, 1]:index[1, 1] + 20])
    mean, std = data.feature_statistics("train")
    assert mean.shape == (256,) and (std > 0).all()


def test_incremental_run_skips_unchanged_songs(corpus):
    out = corpus / "incremental"
    preprocess_dataset(corpus / "raw", out, config=PreprocessConfig(hop=1))
    again = preprocess_dataset(corpus / "raw", out, config=PreprocessConfig(hop=3, seed=5))
    assert again.processed == 0 and again.skipped == 11  # hop and seed do not redo features
    assert again.manifest["hop"] == 3
    song = corpus / "raw" / "song01.wav"
    stat = song.stat()
    os.utime(song, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    third = preprocess_dataset(corpus / "raw", out, config=PreprocessConfig(hop=3))
    assert third.processed == 1 and third.skipped == 10
    waveform = preprocess_dataset(corpus / "raw", out, config=PreprocessConfig(representation="waveform"))
    assert waveform.processed == 11  # another representation redoes everything
    assert ProcessedData(out).frame_size == SR


def test_jobs_give_the_same_result(corpus):
    one = preprocess_dataset(corpus / "raw", corpus / "p1", config=PreprocessConfig(jobs=1))
    two = preprocess_dataset(corpus / "raw", corpus / "p2", config=PreprocessConfig(jobs=2))
    strip = lambda m: [{k: v for k, v in s.items() if k != "source"} for s in m["songs"]]  # noqa: E731
    assert strip(one.manifest) == strip(two.manifest)
    for song in one.manifest["songs"]:
        np.testing.assert_array_equal(np.load(corpus / "p1" / song["shard"]),
                                      np.load(corpus / "p2" / song["shard"]))


def test_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        preprocess_dataset(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "raw").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        preprocess_dataset(tmp_path / "raw", tmp_path / "out")
    (tmp_path / "raw" / "bad.wav").write_bytes(b"RIFF nonsense")
    with pytest.raises(DataError, match="could be decoded"):
        preprocess_dataset(tmp_path / "raw", tmp_path / "out")
    with pytest.raises(ConfigError):
        PreprocessConfig(hop=0).validate()
    with pytest.raises(ConfigError):
        PreprocessConfig(validation_fraction=0.6, test_fraction=0.5).validate()
    with pytest.raises(DataError, match="manifest"):
        ProcessedData(tmp_path)


def test_cli_json_and_strict(corpus):
    runner = CliRunner()
    out = corpus / "cli"
    result = runner.invoke(app, ["preprocess", "--input", str(corpus / "raw"), "--output", str(out),
                                 "--hop", "2", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["songs"] == 11 and summary["failed"] == 1
    assert "broken.mp3" in result.stderr
    strict = runner.invoke(app, ["preprocess", "--input", str(corpus / "raw"), "--output", str(out),
                                 "--strict"])
    assert strict.exit_code == 7 and "could not be decoded" in strict.stderr
    bad = runner.invoke(app, ["preprocess", "--input", str(corpus / "nowhere"), "--output", str(out)])
    assert bad.exit_code == 4 and "input folder not found" in bad.stderr
    assert runner.invoke(app, ["preprocess", "--help"]).exit_code == 0
