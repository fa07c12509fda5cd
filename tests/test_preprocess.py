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


def test_exclusions_leave_files_out(corpus, tmp_path):
    out = corpus / "excluded"
    preprocess_dataset(corpus / "raw", out, config=PreprocessConfig())
    patterns = tmp_path / "panel.txt"
    patterns.write_text("# a panel kept out of training\nsong0[12]\n\nsub/*\n")
    runner = CliRunner()
    result = runner.invoke(app, ["--quiet", "preprocess", "--input", str(corpus / "raw"), "--output", str(out),
                                 "--exclude-from", str(patterns), "-x", "song09.wav", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["excluded"] == 4 and json.loads(result.stdout)["songs"] == 7
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["excluded"]) == ["song01.wav", "song02.wav", "song09.wav", "sub/song00.wav"]
    assert manifest["exclude"] == ["song09.wav", "song0[12]", "sub/*"]
    assert not {s["relative"] for s in manifest["songs"]} & set(manifest["excluded"])
    assert len(list((out / "songs").glob("*.npy"))) == 7  # the excluded songs' old shards are gone
    everything = runner.invoke(app, ["preprocess", "--input", str(corpus / "raw"), "--output", str(out),
                                     "-x", "*"])
    assert everything.exit_code == 4 and "excluded" in everything.stderr
    missing = runner.invoke(app, ["preprocess", "--input", str(corpus / "raw"), "--output", str(out),
                                  "--exclude-from", str(tmp_path / "none.txt")])
    assert missing.exit_code == 2 and "pattern file" in missing.stderr


def test_test_fraction_one_makes_every_song_a_test_song(corpus):
    runner = CliRunner()
    out = corpus / "all-test"
    result = runner.invoke(app, ["--quiet", "preprocess", "--input", str(corpus / "raw"), "--output", str(out),
                                 "--test", "1.0", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["test_songs"] == 11 and summary["train_songs"] == summary["validation_songs"] == 0
    data = ProcessedData(out)
    assert [s["id"] for s in data.songs("all")] == [s["id"] for s in data.songs("test")]
    assert len(data.window_index("all")) == summary["test_windows"]
    # --validation defaults to what --test leaves, at most 0.1; an explicit sum over 1 is refused
    split = runner.invoke(app, ["--quiet", "preprocess", "--input", str(corpus / "raw"), "--output", str(out),
                                "--test", "0.95", "--json"])
    assert json.loads(split.stdout)["validation_songs"] == 1
    over = runner.invoke(app, ["preprocess", "--input", str(corpus / "raw"), "--output", str(out),
                               "--test", "1.0", "--validation", "0.1"])
    assert over.exit_code == 2 and "at most 1" in over.stderr
    with pytest.raises(ConfigError, match="unknown split"):
        data.songs("everything")
