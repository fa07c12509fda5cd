"""`harmonizer train`: model folder, history, resume, NaN stop, errors, multi-worker."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from harmonizer_cli.cli import app
from harmonizer_cli.core.model import ModelConfig, load_keras_model
from harmonizer_cli.core.model import load_predictor
from harmonizer_cli.core.research.preprocess import PreprocessConfig, preprocess_dataset
from harmonizer_cli.core.research.preprocess import ProcessedData
from harmonizer_cli.core.research.training import (
    TrainConfig, augment_windows, gather_candidates, negative_starts, train_model,
)
from harmonizer_cli.errors import ConfigError, DataError, ModelError, OutputError

SR = 22050
TINY = ModelConfig(hidden_sizes=(4, 8))
TINY_BOTH = ModelConfig(hidden_sizes=(4, 8), objective="both", embedding_size=4, embedding_frame_size=2,
                        embedding_hidden=8)


def _write_corpus(folder: Path, n_songs: int = 8, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n_songs):
        t = np.arange(int(rng.uniform(34, 38) * SR)) / SR
        tone = np.sin(2 * np.pi * (150 + 50 * i) * t) * (0.5 + 0.4 * np.sin(2 * np.pi * t / 7))
        audio = 0.3 * tone + 0.03 * rng.standard_normal(t.size)
        sf.write(folder / f"s{i}.wav", audio.astype(np.float32), SR, subtype="PCM_16")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    _write_corpus(root / "raw")
    preprocess_dataset(root / "raw", root / "processed",
                       config=PreprocessConfig(hop=1, validation_fraction=0.25, test_fraction=0.125))
    return root / "processed"


def _train(data: Path, output: Path, model_config: ModelConfig = TINY, **options) -> object:
    config = TrainConfig(**{"epochs": 2, "batch_size": 8, "learning_rate": 0.003,
                            "early_stopping": False, "steps_per_execution": 2, **options})
    return train_model(data, output, config=config, model_config=model_config)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> tuple[Path, object]:
    output = tmp_path_factory.mktemp("models") / "full"
    return output, _train(data, output)


def test_output_is_a_loadable_model_folder(trained):
    output, result = trained
    assert {"config.json", "model.keras", "weights.npz", "history.json", "loss.png"} <= {
        p.name for p in output.iterdir()}
    history = json.loads((output / "history.json").read_text())
    assert [h["epoch"] for h in history["history"]] == [1, 2]
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["val_loss"]) for h in history["history"])
    assert history["best_epoch"] == result.best_epoch
    assert (output / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    document = json.loads((output / "config.json").read_text())
    assert document["training"]["epoch"] == result.best_epoch
    assert document["training"]["train_windows"] > 0
    predictor = load_predictor(output)
    keras_model = load_keras_model(output)
    x = np.random.default_rng(0).normal(-16, 3, (4, 20, 256)).astype(np.float32)
    np.testing.assert_allclose(predictor.predict(x), keras_model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-3)


def test_resume_gives_the_uninterrupted_result(data, trained, tmp_path):
    full_output, full = trained
    part = tmp_path / "part"
    first = _train(data, part, epochs=1)
    assert len(first.history) == 1
    resumed = _train(data, part, epochs=2, resume=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    np.testing.assert_allclose([h["loss"] for h in resumed.history],
                               [h["loss"] for h in full.history], rtol=1e-4)
    np.testing.assert_allclose([h["val_loss"] for h in resumed.history],
                               [h["val_loss"] for h in full.history], rtol=1e-4)
    import keras

    full_weights = keras.saving.load_model(full_output / "checkpoint" / "last.keras").get_weights()
    part_weights = keras.saving.load_model(part / "checkpoint" / "last.keras").get_weights()
    for u, v in zip(full_weights, part_weights):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5)


def test_negatives_overlap_neither_context_nor_truth():
    rng = np.random.default_rng(0)
    for start in (0, 12, 50):
        starts = negative_starts(100, start, n_input=20, n_output=10, n_negatives=7, rng=rng)
        assert len(starts) == 7 and len(set(starts.tolist())) == 7
        assert all(s + 10 <= start or s >= start + 30 for s in starts) and starts.max() <= 90
    few = negative_starts(45, 0, n_input=20, n_output=10, n_negatives=7, rng=rng)  # 6 segments after the truth
    assert len(few) == 7 and set(few.tolist()) <= set(range(30, 36))
    assert negative_starts(35, 2, n_input=20, n_output=10, n_negatives=3, rng=rng) is None


def test_candidates_put_the_truth_first_and_borrow_for_short_songs(data):
    processed = ProcessedData(data)
    index = processed.window_index("train")[:5]
    inputs, targets = processed.gather("train", index)
    candidates = gather_candidates(processed, "train", index, n_negatives=3, rng=np.random.default_rng(0))
    assert candidates.shape == (5, 4, 10, 256)
    np.testing.assert_array_equal(candidates[:, 0], targets)
    # these songs (34-38 s) have no other segment: negatives come from another song, never the truth
    assert not any(np.array_equal(candidates[i, k], targets[i]) for i in range(5) for k in range(1, 4))


def test_augmentation_is_consistent_within_a_window():
    rng = np.random.default_rng(0)
    context = rng.normal(-15, 2, (6, 20, 256)).astype(np.float32)
    truth = context[:, -10:].copy()
    candidates = np.concatenate([truth[:, None], rng.normal(-15, 2, (6, 2, 10, 256)).astype(np.float32)], axis=1)
    original = context.copy()
    augment_windows([context, truth, candidates], n_mels=64, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(context[:, -10:], truth)  # the same change everywhere in a window
    np.testing.assert_array_equal(candidates[:, 0], truth)
    assert not np.allclose(context, original)
    flat = np.full((50, 20, 256), -15.0, np.float32)  # equal bands: a shift changes nothing, the gain shows
    augment_windows([flat], n_mels=64, rng=np.random.default_rng(2))
    gains = flat[:, 0, 0] + 15.0
    np.testing.assert_allclose(flat, np.broadcast_to(gains[:, None, None] - 15.0, flat.shape), atol=1e-5)
    assert np.abs(gains).max() <= 6.0 * np.log(10) / 10 + 1e-5 and np.abs(gains).max() > 0.5


def test_contrastive_training_writes_a_scoring_model_and_resumes_exactly(data, tmp_path):
    options = dict(negatives=3, augment=True)
    full = _train(data, tmp_path / "both", model_config=TINY_BOTH, **options)
    history = json.loads((tmp_path / "both" / "history.json").read_text())
    assert history["monitor"] == "val_top1" and history["objective"] == "both"
    for record in history["history"]:
        assert {"mse", "contrastive", "val_mse", "val_contrastive", "val_top1"} <= set(record)
        assert 0.0 <= record["val_top1"] <= 1.0
    assert full.best_val_top1 == max(h["val_top1"] for h in full.history)
    predictor = load_predictor(tmp_path / "both")
    assert predictor.config.objective == "both" and predictor.embedding_size == 4
    keras_model = load_keras_model(tmp_path / "both")
    rng = np.random.default_rng(0)
    x = {"context_frames": rng.normal(-16, 3, (4, 20, 256)).astype(np.float32),
         "candidate_frames": rng.normal(-16, 3, (4, 2, 10, 256)).astype(np.float32)}
    expected = keras_model.predict(x, verbose=0)
    np.testing.assert_allclose(predictor.embed_context(x["context_frames"]), expected["embeddings"][:, 0],
                               rtol=1e-4, atol=1e-4)
    _train(data, tmp_path / "part", model_config=TINY_BOTH, epochs=1, **options)
    resumed = _train(data, tmp_path / "part", model_config=TINY_BOTH, epochs=2, resume=True, **options)
    np.testing.assert_allclose([h["loss"] for h in resumed.history], [h["loss"] for h in full.history], rtol=1e-4)
    np.testing.assert_allclose([h["val_top1"] for h in resumed.history], [h["val_top1"] for h in full.history])


def test_nan_loss_stops_with_model_error(data, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    manifest = json.loads((data / "manifest.json").read_text())
    (broken / "songs").mkdir()
    for song in manifest["songs"]:
        frames = np.load(data / song["shard"])
        if song["split"] == "train":
            frames[25, 7] = np.nan
        np.save(broken / song["shard"], frames)
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="NaN"):
        _train(broken, tmp_path / "out", epochs=1)
    assert not (tmp_path / "out" / "config.json").exists()


def test_errors(data, trained, tmp_path):
    output, _ = trained
    with pytest.raises(OutputError, match="already exists"):
        _train(data, output)
    with pytest.raises(OutputError, match="nothing to resume"):
        _train(data, tmp_path / "fresh", resume=True)
    with pytest.raises(ConfigError, match="waveform"):
        train_model(data, tmp_path / "x", model_config=ModelConfig(representation="waveform",
                                                                   frame_size=22050))
    with pytest.raises(ConfigError, match="strategy"):
        TrainConfig(strategy="tpu").validate()
    with pytest.raises(DataError, match="manifest"):
        _train(tmp_path, tmp_path / "y")


def test_cli_help_and_error_exit_codes(data, trained):
    runner = CliRunner()
    assert runner.invoke(app, ["train", "--help"]).exit_code == 0
    output, _ = trained
    result = runner.invoke(app, ["train", "--data", str(data), "--output", str(output),
                                 "--hidden-sizes", "4,8", "--epochs", "1"])
    assert result.exit_code == 6 and "already exists" in result.stderr
    result = runner.invoke(app, ["train", "--data", str(data), "--output", str(output),
                                 "--hidden-sizes", "4,x"])
    assert result.exit_code == 2 and "hidden-sizes" in result.stderr
    result = runner.invoke(app, ["train", "--data", str(data), "--output", str(output), "--objective", "ranking"])
    assert result.exit_code == 2 and "objective" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_strategy_with_two_local_workers(data, tmp_path):
    ports = [_free_port(), _free_port()]
    workers = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index}}), CUDA_VISIBLE_DEVICES="")
        command = [sys.executable, "-m", "harmonizer_cli", "--quiet", "train", "--data", str(data),
                   "--output", str(tmp_path / "mw"), "--strategy", "multi-worker",
                   "--hidden-sizes", "4,8", "--epochs", "2", "--batch-size", "4",
                   "--no-early-stopping", "--json"]
        workers.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=240))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
    summary = json.loads(outputs[0][0])
    assert summary["epochs_run"] == 2 and np.isfinite(summary["final_loss"])
    assert load_predictor(tmp_path / "mw").predict(np.zeros((1, 20, 256), np.float32)).shape == (1, 10, 256)
    assert [p.name for p in (tmp_path / "mw").iterdir() if p.name.startswith(".")] == []
