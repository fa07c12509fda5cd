"""Numpy inference (predictor.py) matches Keras, loads safely, and never imports TensorFlow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harmonizer_cli.core.model import ModelConfig, build_model, save_model_folder, set_normalisation
from harmonizer_cli.core._typing import scorer_of
from harmonizer_cli.core.model import default_model_path, load_predictor
from harmonizer_cli.errors import ModelError


def _trained_folder(tmp_path, config: ModelConfig, name: str):
    rng = np.random.default_rng(7)
    model = build_model(config, learning_rate=None)
    for weight in model.weights:  # kernels as initialised; biases and BatchNorm made non-trivial
        if weight.name in ("moving_variance", "gamma"):
            weight.assign(rng.uniform(0.5, 2.0, tuple(weight.shape)).astype(np.float32))
        elif weight.name in ("moving_mean", "beta", "bias"):
            weight.assign(rng.normal(0, 0.2, tuple(weight.shape)).astype(np.float32))
    set_normalisation(model, rng.normal(-15, 1, config.frame_size), rng.uniform(1, 3, config.frame_size))
    return model, save_model_folder(model, config, tmp_path / name)


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory):
    """A tiny trained shared-weight model folder, shared by the tests that only read it."""
    return _trained_folder(tmp_path_factory.mktemp("small"), ModelConfig(hidden_sizes=(4,)), "m")[1]


@pytest.mark.parametrize("weights", ["shared", "per-step"])
def test_numpy_predictions_match_keras(tmp_path, weights):
    config = ModelConfig(weights=weights, hidden_sizes=(4, 8))
    model, folder = _trained_folder(tmp_path, config, weights)
    predictor = load_predictor(folder)
    x = np.random.default_rng(3).normal(-15, 3, (5, 20, 256)).astype(np.float32)
    expected = model.predict(x, verbose=0)
    got = predictor.predict(x)
    assert got.shape == (5, 10, 256) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    assert (predictor.n_input_frames, predictor.n_output_frames, predictor.frame_seconds) == (20, 10, 1.0)
    assert predictor.representation == "logmel" and predictor.name == weights


@pytest.mark.parametrize("objective,heads", [("both", "shared"), ("contrastive", "sibling")])
def test_numpy_embeddings_match_keras(tmp_path, objective, heads):
    config = ModelConfig(hidden_sizes=(4, 8), objective=objective, embedding_size=8, embedding_frame_size=4,
                         embedding_hidden=16, embedding_heads=heads)
    model, folder = _trained_folder(tmp_path, config, objective)
    predictor = load_predictor(folder)
    rng = np.random.default_rng(3)
    x = rng.normal(-15, 3, (5, 20, 256)).astype(np.float32)
    candidates = rng.normal(-15, 3, (5, 3, 10, 256)).astype(np.float32)
    expected = model.predict({"context_frames": x, "candidate_frames": candidates}, verbose=0)
    assert predictor.embedding_size == 8 and scorer_of(predictor) is predictor
    np.testing.assert_allclose(predictor.predict(x), expected["frames"], rtol=1e-4, atol=1e-3)
    queries = predictor.embed_context(x)
    keys = predictor.embed_continuation(candidates.reshape(-1, 10, 256)).reshape(5, 3, 8)
    assert queries.shape == (5, 8) and queries.dtype == np.float32
    np.testing.assert_allclose(queries, expected["embeddings"][:, 0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(keys, expected["embeddings"][:, 1:], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ModelError, match="continuations of shape"):
        predictor.embed_continuation(np.zeros((2, 9, 256), np.float32))
    with pytest.raises(ModelError, match="expects context"):
        predictor.embed_context(np.zeros((2, 10, 256), np.float32))


def test_mse_models_have_no_scorer_and_old_folders_load(tmp_path, small_folder):
    predictor = load_predictor(small_folder)
    assert predictor.embedding_size == 0 and scorer_of(predictor) is None
    with pytest.raises(ModelError, match="no embedding head"):
        predictor.embed_context(np.zeros((1, 20, 256), np.float32))
    # a folder written before the objective existed (no such fields in config.json)
    folder = Path(shutil.copytree(small_folder, tmp_path / "old"))
    document = json.loads((folder / "config.json").read_text())
    for key in ("objective", "embedding_size", "embedding_frame_size", "embedding_hidden", "temperature",
                "embedding_heads", "negatives"):
        del document["model"][key]
    (folder / "config.json").write_text(json.dumps(document))
    old = load_predictor(folder)
    assert old.config.objective == "mse"
    x = np.random.default_rng(0).normal(-15, 3, (2, 20, 256)).astype(np.float32)
    np.testing.assert_array_equal(old.predict(x), predictor.predict(x))


def test_missing_head_weights_raise_model_error(tmp_path):
    config = ModelConfig(hidden_sizes=(4,), objective="contrastive", embedding_size=4, embedding_frame_size=2,
                         embedding_hidden=4)
    _, folder = _trained_folder(tmp_path, config, "head")
    with np.load(folder / "weights.npz") as archive:
        arrays = {k: archive[k] for k in archive.files if not k.startswith("embedding_hidden_bn/")}
    np.savez(folder / "weights.npz", **arrays)
    with pytest.raises(ModelError, match="embedding_hidden_bn"):
        load_predictor(folder)


def test_waveform_predictor_matches_keras_and_renders_by_concatenation(tmp_path):
    config = ModelConfig(representation="waveform", frame_size=22050, hidden_sizes=(2,))
    model, folder = _trained_folder(tmp_path, config, "wave")
    predictor = load_predictor(folder)
    x = np.random.default_rng(4).normal(0, 0.1, (2, 20, 22050)).astype(np.float32)
    np.testing.assert_allclose(predictor.predict(x), model.predict(x, verbose=0), rtol=1e-4, atol=1e-3)
    frames = np.arange(2 * 22050, dtype=np.float32).reshape(2, 22050)
    np.testing.assert_array_equal(predictor.render_frames(frames), frames.reshape(-1))
    audio = np.random.default_rng(5).normal(0, 0.1, 22050 * 2 + 5).astype(np.float32)
    assert predictor.frame_features(audio).shape == (3, 22050)


def test_frame_features_and_shape_errors(small_folder):
    predictor = load_predictor(small_folder)
    audio = np.random.default_rng(6).normal(0, 0.1, 22050 * 3).astype(np.float32)
    assert predictor.frame_features(audio).shape == (3, 256)
    with pytest.raises(ModelError, match="expects context"):
        predictor.predict(np.zeros((1, 19, 256), np.float32))
    with pytest.raises(ModelError):
        predictor.render_frames(np.zeros((2, 10), np.float32))


def test_invalid_folders_raise_model_error(tmp_path, small_folder):
    with pytest.raises(ModelError, match="not found"):
        load_predictor(tmp_path / "missing")
    folder = Path(shutil.copytree(small_folder, tmp_path / "m"))
    with np.load(folder / "weights.npz") as archive:
        arrays = {k: archive[k] for k in archive.files}
    broken = dict(arrays)
    broken["encoder_out/kernel"] = broken["encoder_out/kernel"][:, :10]
    np.savez(folder / "weights.npz", **broken)
    with pytest.raises(ModelError, match="encoder_out/kernel"):
        load_predictor(folder)
    del broken["decoder_mix/bias"]
    broken["encoder_out/kernel"] = arrays["encoder_out/kernel"]
    np.savez(folder / "weights.npz", **broken)
    with pytest.raises(ModelError, match="decoder_mix/bias"):
        load_predictor(folder)
    np.save(folder / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (folder / "weights.npz").write_bytes((folder / "obj.npy").read_bytes())
    with pytest.raises(ModelError, match="weights.npz"):
        load_predictor(folder)
    (folder / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelError, match="config"):
        load_predictor(folder)


def test_predictor_does_not_import_tensorflow(small_folder, tmp_path):
    folder = small_folder
    scorer_folder = _trained_folder(tmp_path, ModelConfig(hidden_sizes=(4,), objective="both", embedding_size=4,
                                                          embedding_frame_size=2, embedding_hidden=4), "s")[1]
    code = (
        "import sys, numpy as np\n"
        "from harmonizer_cli.core.model import load_predictor\n"
        f"p = load_predictor({str(folder)!r})\n"
        "p.predict(np.zeros((1, 20, 256), np.float32))\n"
        f"s = load_predictor({str(scorer_folder)!r})\n"
        "s.embed_context(np.zeros((1, 20, 256), np.float32))\n"
        "s.embed_continuation(np.zeros((3, 10, 256), np.float32))\n"
        "bad = [m for m in ('tensorflow', 'keras', 'librosa', 'numba') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.skipif(not (default_model_path() / "config.json").is_file(),
                    reason="no default model shipped yet")
def test_shipped_default_model_loads():
    predictor = load_predictor(None)
    assert predictor.representation == "logmel" and predictor.frame_size == 256
    out = predictor.predict(np.full((2, 20, 256), -15.0, np.float32))
    assert out.shape == (2, 10, 256) and np.isfinite(out).all()
    if predictor.config.has_embedding:  # the shipped model scores continuations for extend
        assert scorer_of(predictor) is predictor
        assert predictor.embed_context(np.full((2, 20, 256), -15.0, np.float32)).shape == (2, predictor.embedding_size)
    size = sum(p.stat().st_size for p in default_model_path().iterdir() if p.is_file())
    assert size <= 25 * 1024 * 1024
