"""The Keras encoder-decoder (model.py): configuration, build, parameters, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harmonizer_cli.core.model import (
    ModelConfig, build_model, count_parameters, export_weights, load_keras_model, read_config,
    save_model_folder, set_normalisation,
)
from harmonizer_cli.errors import ConfigError, ModelError

TINY = (4, 8)


def expected_parameters(config: ModelConfig) -> int:
    """Parameter count from the architecture, independently of Keras."""
    def stack(max_inputs: int) -> int:
        total, width = max_inputs + 1, config.frame_size  # StackMix kernel + bias
        for hidden in config.hidden_sizes:
            total += width * hidden + hidden + 4 * hidden  # Dense + BatchNorm (4 vectors)
            width = hidden
        return total + width * config.frame_size + config.frame_size
    def head() -> int:  # per-frame Dense + BN, joined Dense + BN, output Dense
        fe, hidden, size = config.embedding_frame_size, config.embedding_hidden, config.embedding_size
        return (config.frame_size * fe + 5 * fe + config.n_output_frames * fe * hidden + 5 * hidden
                + hidden * size + size)
    n_in, n_out = config.n_input_frames, config.n_output_frames
    scales = 4 * config.frame_size
    heads = 0 if not config.has_embedding else head() * (1 if config.embedding_heads == "shared" else 2)
    if config.weights == "shared":
        return scales + stack(n_in) + stack(n_in) + stack(n_out) + heads
    return (scales + sum(stack(t + 1) for t in range(n_in)) + stack(n_in)
            + sum(stack(j + 1) for j in range(n_out)) + heads)


@pytest.fixture(scope="module")
def trained_tiny():
    rng = np.random.default_rng(0)
    config = ModelConfig(hidden_sizes=TINY)
    model = build_model(config, learning_rate=0.01)
    set_normalisation(model, rng.normal(-15, 1, 256), rng.uniform(1, 3, 256))
    x = rng.normal(-15, 2, (8, 20, 256)).astype(np.float32)
    model.fit(x, x[:, :10], epochs=1, batch_size=4, verbose=0)
    return config, model, x


@pytest.mark.parametrize("weights", ["shared", "per-step"])
def test_build_shapes_and_parameter_count(weights):
    config = ModelConfig(weights=weights, hidden_sizes=TINY)
    model = build_model(config, learning_rate=None)
    out = model(np.zeros((3, 20, 256), np.float32), training=False)
    assert tuple(out.shape) == (3, 10, 256)
    assert count_parameters(model) == expected_parameters(config)


@pytest.mark.parametrize("heads", ["shared", "sibling"])
def test_embedding_model_shapes_and_parameter_count(heads):
    config = ModelConfig(hidden_sizes=TINY, objective="both", embedding_size=8, embedding_frame_size=4,
                         embedding_hidden=16, embedding_heads=heads)
    model = build_model(config, learning_rate=None)
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, (3, 20, 256)).astype(np.float32)
    out = model({"context_frames": x, "candidate_frames": rng.normal(0, 1, (3, 5, 10, 256)).astype(np.float32)},
                training=False)
    assert tuple(out["frames"].shape) == (3, 10, 256)
    assert tuple(out["embeddings"].shape) == (3, 6, 8)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(out["embeddings"]), axis=-1), 1.0, rtol=1e-5)
    assert count_parameters(model) == expected_parameters(config)


def test_the_paper_objective_builds_the_paper_model():
    """objective="mse" (the default) is the seed paper's model: one input, one output, no head."""
    model = build_model(ModelConfig(hidden_sizes=TINY), learning_rate=0.01)
    assert [t.name for t in model.inputs] == ["context_frames"] and len(model.outputs) == 1
    assert not [layer.name for layer in model.layers if layer.name.startswith(("embedding", "query", "key"))]
    assert ModelConfig.paper().objective == "mse" and not ModelConfig.paper().has_embedding


def test_paper_and_default_sizes_without_building():
    paper = ModelConfig.paper()
    assert (paper.representation, paper.weights, paper.frame_size) == ("waveform", "per-step", 22050)
    n_paper = expected_parameters(paper)
    assert 380e6 < n_paper < 420e6  # ~400 M parameters, ~1.6 GB of float32
    n_default = expected_parameters(ModelConfig())
    assert n_default * 4 * 2 < 25e6  # model.keras + weights.npz under 25 MB


def test_config_validation():
    with pytest.raises(ConfigError, match="representation"):
        ModelConfig(representation="mfcc").validate()
    with pytest.raises(ConfigError, match="weights"):
        ModelConfig(weights="tied").validate()
    with pytest.raises(ConfigError, match="frame_size"):
        ModelConfig(representation="waveform").validate()
    assert ModelConfig().with_representation("waveform").frame_size == 22050
    again = ModelConfig.from_dict(json.loads(json.dumps(ModelConfig(hidden_sizes=TINY).to_dict())))
    assert again == ModelConfig(hidden_sizes=TINY)
    for bad, match in ((dict(objective="ranking"), "objective"), (dict(embedding_size=0), "embedding"),
                       (dict(temperature=0.0), "temperature"), (dict(embedding_heads="tied"), "embedding_heads"),
                       (dict(negatives="all"), "negatives")):
        with pytest.raises(ConfigError, match=match):
            ModelConfig(**bad).validate()
    # a config written before the objective existed reads as the paper's mse objective
    old = {k: v for k, v in ModelConfig(hidden_sizes=TINY).to_dict().items()
           if k not in ("objective", "embedding_size", "embedding_frame_size", "embedding_hidden",
                        "temperature", "embedding_heads", "negatives")}
    assert ModelConfig.from_dict(old).objective == "mse"


def test_save_load_round_trip(tmp_path, trained_tiny):
    config, model, x = trained_tiny
    folder = save_model_folder(model, config, tmp_path / "m", name="tiny", extra={"epochs": 1})
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.keras", "weights.npz"]
    loaded_config, document = read_config(folder)
    assert loaded_config == config and document["name"] == "tiny"
    assert document["training"] == {"epochs": 1}
    loaded = load_keras_model(folder)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-5)
    with np.load(folder / "weights.npz", allow_pickle=False) as archive:
        exported = export_weights(model)
        assert set(archive.files) == set(exported)
        for key in exported:
            np.testing.assert_array_equal(archive[key], exported[key])


def test_embedding_model_round_trip_with_its_loss(tmp_path):
    config = ModelConfig(hidden_sizes=TINY, objective="contrastive", embedding_size=8, embedding_frame_size=4,
                         embedding_hidden=16)
    rng = np.random.default_rng(1)
    model = build_model(config, learning_rate=0.01)
    set_normalisation(model, rng.normal(-15, 1, 256), rng.uniform(1, 3, 256))
    x = {"context_frames": rng.normal(-15, 2, (8, 20, 256)).astype(np.float32),
         "candidate_frames": rng.normal(-15, 2, (8, 4, 10, 256)).astype(np.float32)}
    y = {"embeddings": np.zeros(8, np.float32)}
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    folder = save_model_folder(model, config, tmp_path / "m")
    assert read_config(folder)[0] == config
    loaded = load_keras_model(folder)
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["embeddings"], model.predict(x, verbose=0)["embeddings"],
                               rtol=1e-6, atol=1e-6)
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-5)


def test_load_errors(tmp_path, trained_tiny):
    config, model, _ = trained_tiny
    with pytest.raises(ModelError, match="not found"):
        load_keras_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="config.json"):
        read_config(tmp_path / "empty")
    folder = save_model_folder(model, config, tmp_path / "m")
    (folder / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="cannot load"):
        load_keras_model(folder)
    (folder / "config.json").write_text(json.dumps({"format": "harmonizer-model", "version": 99}))
    with pytest.raises(ModelError, match="version"):
        read_config(folder)
