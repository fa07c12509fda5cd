"""The encoder-decoder of the seed paper as a Keras 3 model: build, save, load.

The model reads ``n_input_frames`` (20) frames and predicts the next
``n_output_frames`` (10), each frame a vector of ``frame_size`` numbers (see
``features``). Its units, as in the paper:

- encoder unit ``t``: the frame ``x_t`` and all previous encoder outputs
  ``e_{t-1}, ..., e_0`` are stacked and mixed by a ``Dense(1)`` across the stack
  (``StackMix``), then LeakyReLU, then the hidden stack (``Dense(h)``, LeakyReLU,
  BatchNormalization for each ``h`` of 64, 128, 256, 512) and a ``Dense(frame_size)``:
  that is ``e_t``;
- context unit: the same over all 20 encoder outputs ``e_19, ..., e_0``: ``c``;
- decoder unit ``j``: the same over ``c, d_{j-1}, ..., d_0``: ``d_j``; the output is
  ``d_0 .. d_9``.

With an objective other than ``mse`` the model also embeds (``embedding_head``) the
decoder's 10 (standardised) outputs, the context's embedding, and a candidate's 10
standardised frames, a continuation's embedding: with one head for both
(``embedding_heads="shared"``, layers ``embedding_*``) or two (``query_*`` and
``key_*``); unit length, so their dot product is a cosine. The
``InfoNCE`` loss trains them to score the true continuation above the other
segments of the batch (``training`` puts other segments of the same song there).

``weights="shared"`` (default) uses one unit each for encoder, context and decoder,
a true recurrent unit whose ``StackMix`` weights are indexed by lag (stack position
0 is the newest input); ``weights="per-step"`` gives every step its own unit (31, as
the reference code). Inputs are standardised with per-feature mean and standard
deviation of the training set (``FeatureScale``) and outputs de-standardised, so the
model maps raw frames to raw frames.

The folder format is ``config``'s; this module builds, saves and loads the Keras
model. TensorFlow/Keras are imported inside functions only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harmonizer_cli.core.model.config import (
    CONFIG_FILE, FORMAT_NAME, FORMAT_VERSION, KERAS_FILE, WEIGHTS_FILE, ModelConfig, read_config, unit_names,
)
from harmonizer_cli.errors import ModelError

__all__ = ["custom_layers", "build_model", "embedding_head", "set_normalisation", "count_parameters",
           "export_weights", "save_model_folder", "load_keras_model"]


def custom_layers() -> dict:
    """Define (once) and return the custom Keras layers; imports Keras lazily."""
    global _LAYERS
    if _LAYERS is not None:
        return _LAYERS
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="harmonizer")
    class StackMix(keras.layers.Layer):
        """``Dense(1)`` across a stack of frames: ``sum_k w[k] * inputs[k] + b``.

        Called with a list of ``k <= max_inputs`` tensors of shape (batch, size);
        uses the first ``k`` weights, so one layer serves every step of a
        recurrent unit (position 0 is the newest input).
        """

        def __init__(self, max_inputs: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.max_inputs = int(max_inputs)

        def build(self, input_shape: Any) -> None:
            limit = float(np.sqrt(6.0 / (self.max_inputs + 1)))
            self.kernel = self.add_weight(
                name="kernel", shape=(self.max_inputs,),
                initializer=keras.initializers.RandomUniform(-limit, limit))
            self.bias = self.add_weight(name="bias", shape=(), initializer="zeros")

        def call(self, inputs: list) -> Any:
            if len(inputs) > self.max_inputs:
                raise ValueError(f"{self.name}: {len(inputs)} inputs, at most {self.max_inputs}")
            stacked = ops.stack(list(inputs), axis=-1)  # (batch, size, k)
            return ops.matmul(stacked, self.kernel[: len(inputs)]) + self.bias

        def compute_output_shape(self, input_shape: Any) -> Any:
            return tuple(input_shape[0])

        def get_config(self) -> dict:
            return {**super().get_config(), "max_inputs": self.max_inputs}

    @keras.saving.register_keras_serializable(package="harmonizer")
    class FeatureScale(keras.layers.Layer):
        """Standardise ``(x - mean) / std`` or, with ``inverse``, undo it (``x * std + mean``).

        ``mean`` and ``std`` (shape ``(size,)``) are non-trainable weights set from
        the training set.
        """

        def __init__(self, size: int, inverse: bool = False, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.size = int(size)
            self.inverse = bool(inverse)

        def build(self, input_shape: Any) -> None:
            self.mean = self.add_weight(name="mean", shape=(self.size,), initializer="zeros",
                                        trainable=False)
            self.std = self.add_weight(name="std", shape=(self.size,), initializer="ones",
                                       trainable=False)

        def call(self, inputs: Any) -> Any:
            if self.inverse:
                return inputs * self.std + self.mean
            return (inputs - self.mean) / self.std

        def get_config(self) -> dict:
            return {**super().get_config(), "size": self.size, "inverse": self.inverse}

    @keras.saving.register_keras_serializable(package="harmonizer")
    class SplitFrames(keras.layers.Layer):
        """(batch, n, size) -> list of ``n`` tensors (batch, size)."""

        def __init__(self, n_frames: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.n_frames = int(n_frames)

        def call(self, inputs: Any) -> list:
            return [inputs[:, i, :] for i in range(self.n_frames)]

        def compute_output_shape(self, input_shape: Any) -> list:
            return [(input_shape[0], input_shape[2])] * self.n_frames

        def get_config(self) -> dict:
            return {**super().get_config(), "n_frames": self.n_frames}

    @keras.saving.register_keras_serializable(package="harmonizer")
    class StackFrames(keras.layers.Layer):
        """list of ``n`` tensors (batch, size) -> (batch, n, size)."""

        def call(self, inputs: list) -> Any:
            return ops.stack(list(inputs), axis=1)

        def compute_output_shape(self, input_shape: Any) -> Any:
            return (input_shape[0][0], len(input_shape), input_shape[0][1])

    _LAYERS = {"StackMix": StackMix, "FeatureScale": FeatureScale,
               "SplitFrames": SplitFrames, "StackFrames": StackFrames, "InfoNCE": _info_nce(keras, ops)}
    return _LAYERS


def _info_nce(keras: Any, ops: Any) -> type:
    """Define the contrastive loss (registered with the layers, by ``custom_layers``)."""

    @keras.saving.register_keras_serializable(package="harmonizer")
    class InfoNCE(keras.losses.Loss):
        """Contrastive loss of the embedding output: the true continuation against all others.

        ``y_pred`` (batch, 1 + k, size): per window its context's embedding, then its
        ``k`` candidates' (the true continuation first). Each context is scored
        against every candidate of the batch (its own and the other windows'),
        ``cosine / temperature``, and the loss is the cross-entropy of its own true
        continuation (InfoNCE). ``y_true`` is ignored.
        """

        def __init__(self, temperature: float = 0.1, in_batch: bool = True, name: str = "info_nce",
                     **kwargs: Any) -> None:
            super().__init__(name=name, **kwargs)
            self.temperature = float(temperature)
            self.in_batch = bool(in_batch)

        def call(self, y_true: Any, y_pred: Any) -> Any:
            query = y_pred[:, 0, :]
            keys = y_pred[:, 1:, :]
            if not self.in_batch:  # each context against its own candidates only
                logits = ops.einsum("bd,bkd->bk", query, keys) / self.temperature
                labels = ops.zeros((ops.shape(query)[0],), dtype="int32")
                return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            n_keys = ops.shape(keys)[1]
            flat = ops.reshape(keys, (-1, ops.shape(keys)[2]))
            logits = ops.matmul(query, ops.transpose(flat)) / self.temperature
            labels = ops.arange(ops.shape(query)[0]) * n_keys
            return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)

        def get_config(self) -> dict:
            return {**super().get_config(), "temperature": self.temperature, "in_batch": self.in_batch}

    return InfoNCE


_LAYERS: dict | None = None


def _unit_factory(keras: Any, config: ModelConfig, layers: dict) -> Callable[[str, int, list], Any]:
    """``apply(prefix, max_inputs, stacked)``: one step of a unit, its layers made once per prefix."""
    units: dict[str, dict] = {}

    def unit(prefix: str, max_inputs: int) -> dict:
        if prefix not in units:  # shared units are created once and reused
            stack = []
            for i, size in enumerate(config.hidden_sizes):
                stack.append(keras.layers.Dense(size, name=f"{prefix}_dense_{i}"))
                stack.append(keras.layers.LeakyReLU(config.leaky_slope, name=f"{prefix}_act_{i}"))
                stack.append(keras.layers.BatchNormalization(
                    epsilon=config.batchnorm_epsilon, momentum=config.batchnorm_momentum,
                    name=f"{prefix}_bn_{i}"))
            units[prefix] = {
                "mix": layers["StackMix"](max_inputs, name=f"{prefix}_mix"),
                "mix_act": keras.layers.LeakyReLU(config.leaky_slope, name=f"{prefix}_mix_act"),
                "stack": stack,
                "out": keras.layers.Dense(config.frame_size, name=f"{prefix}_out"),
            }
        return units[prefix]

    def apply(prefix: str, max_inputs: int, stacked: list) -> Any:
        u = unit(prefix, max_inputs)
        h = u["mix_act"](u["mix"](stacked))
        for layer in u["stack"]:
            h = layer(h)
        return u["out"](h)

    return apply


def _encode_decode(keras: Any, config: ModelConfig, layers: dict, scaled: Any) -> Any:
    """The encoder, context and decoder units over standardised frames.

    Returns
    -------
    KerasTensor [shape=(batch, n_output_frames, frame_size)]
        The decoder's outputs, still standardised.
    """
    apply = _unit_factory(keras, config, layers)
    names = unit_names(config)
    shared = config.weights == "shared"
    n_in, n_out = config.n_input_frames, config.n_output_frames
    frames = layers["SplitFrames"](n_in, name="split_frames")(scaled)
    encoded: list = []
    for t in range(n_in):
        max_inputs = n_in if shared else t + 1
        encoded.append(apply(names["encoder"][t], max_inputs, [frames[t]] + encoded[::-1]))
    context = apply("context", n_in, encoded[::-1])
    decoded: list = []
    for j in range(n_out):
        max_inputs = n_out if shared else j + 1
        decoded.append(apply(names["decoder"][j], max_inputs, [context] + decoded[::-1]))
    return layers["StackFrames"](name="stack_frames")(decoded)


def embedding_head(keras: Any, config: ModelConfig, prefix: str) -> list:
    """The layers of an embedding head (``embedding``, or ``query`` and ``key``), in order.

    Standardised frames ``(..., n_output_frames, frame_size)`` -> per-frame
    ``Dense(embedding_frame_size)``, LeakyReLU, BatchNormalization -> the frames side
    by side -> ``Dense(embedding_hidden)``, LeakyReLU, BatchNormalization ->
    ``Dense(embedding_size)`` -> unit length: ``(..., embedding_size)``.
    """
    def norm(name: str) -> Any:
        return keras.layers.BatchNormalization(epsilon=config.batchnorm_epsilon,
                                               momentum=config.batchnorm_momentum, name=name)

    width = config.n_output_frames * config.embedding_frame_size
    return [keras.layers.Dense(config.embedding_frame_size, name=f"{prefix}_frame"),
            keras.layers.LeakyReLU(config.leaky_slope, name=f"{prefix}_frame_act"), norm(f"{prefix}_frame_bn"),
            keras.layers.Reshape((-1, width), name=f"{prefix}_join"),
            keras.layers.Dense(config.embedding_hidden, name=f"{prefix}_hidden"),
            keras.layers.LeakyReLU(config.leaky_slope, name=f"{prefix}_hidden_act"), norm(f"{prefix}_hidden_bn"),
            keras.layers.Dense(config.embedding_size, name=f"{prefix}_out"),
            keras.layers.UnitNormalization(axis=-1, name=f"{prefix}_unit")]


def _apply_all(layer_list: list, x: Any) -> Any:
    for layer in layer_list:
        x = layer(x)
    return x


def build_model(config: ModelConfig, *, learning_rate: float | None = 0.01,
                steps_per_execution: int = 1) -> Any:
    """Build (and compile with Adam and the objective's loss when ``learning_rate`` is given) the model.

    Parameters
    ----------
    config : ModelConfig
    learning_rate : float or None
        Adam's learning rate; ``None`` leaves the model uncompiled.
    steps_per_execution : int
        Training steps run per call into TensorFlow (10 runs about 1.7 times faster
        than 1 on a 2-core CPU; the result is the same).

    Returns
    -------
    keras.Model
        ``objective="mse"``: input (batch, n_input_frames, frame_size) raw frames;
        output (batch, n_output_frames, frame_size) raw frames (the seed paper's).
        Otherwise inputs ``{"context_frames": (batch, n_input_frames, frame_size),
        "candidate_frames": (batch, n_candidates, n_output_frames, frame_size)}`` and
        outputs ``{"frames": (batch, n_output_frames, frame_size), "embeddings":
        (batch, 1 + n_candidates, embedding_size)}``: row 0 the context's embedding
        (the ``query`` head over the decoder's output), rows 1.. each candidate's
        (the ``key`` head over its standardised frames).
    """
    import keras

    config.validate()
    layers = custom_layers()
    inputs = keras.Input((config.n_input_frames, config.frame_size), name="context_frames")
    input_scale = layers["FeatureScale"](config.frame_size, name="input_scale")
    decoded = _encode_decode(keras, config, layers, input_scale(inputs))
    outputs = layers["FeatureScale"](config.frame_size, inverse=True, name="output_scale")(decoded)
    if not config.has_embedding:
        model = keras.Model(inputs=inputs, outputs=outputs, name="harmonizer_encoder_decoder")
        if learning_rate is not None:
            model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse",
                          steps_per_execution=steps_per_execution)
        return model
    candidates = keras.Input((None, config.n_output_frames, config.frame_size), name="candidate_frames")
    query_name, key_name = config.head_names
    query_head = embedding_head(keras, config, query_name)
    key_head = query_head if key_name == query_name else embedding_head(keras, config, key_name)
    one = keras.layers.Reshape((1, config.n_output_frames, config.frame_size), name="prediction")(decoded)
    query = _apply_all(query_head, one)  # (batch, 1, size)
    keys = _apply_all(key_head, input_scale(candidates))  # (batch, k, size)
    embeddings = keras.layers.Concatenate(axis=1, name="embeddings")([query, keys])
    model = keras.Model(inputs={"context_frames": inputs, "candidate_frames": candidates},
                        outputs={"frames": outputs, "embeddings": embeddings},
                        name="harmonizer_encoder_decoder")
    if learning_rate is not None:
        losses: dict = {"embeddings": layers["InfoNCE"](config.temperature,
                                                        in_batch=config.negatives == "batch")}
        if config.objective == "both":
            losses["frames"] = "mse"
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=losses,
                      steps_per_execution=steps_per_execution)
    return model


def set_normalisation(model: Any, mean: np.ndarray, std: np.ndarray) -> None:
    """Set the input/output standardisation of a built model.

    Parameters
    ----------
    mean, std : np.ndarray [shape=(frame_size,)]
        Per-feature statistics of the training frames; ``std`` is floored at 1e-6.
    """
    std = np.maximum(np.asarray(std, dtype=np.float32), 1e-6)
    mean = np.asarray(mean, dtype=np.float32)
    for name in ("input_scale", "output_scale"):
        model.get_layer(name).set_weights([mean, std])


def count_parameters(model: Any) -> int:
    """Number of scalars in all weights (trainable and not)."""
    return int(sum(int(np.prod(w.shape)) for w in model.weights))


def export_weights(model: Any) -> dict[str, np.ndarray]:
    """All weights as ``{"<layer>/<weight>": float32 array}`` (what ``predictor`` reads)."""
    arrays: dict[str, np.ndarray] = {}
    for layer in model.layers:
        for weight in layer.weights:
            key = f"{layer.name}/{weight.name}"
            if key in arrays:
                raise ModelError(f"duplicate weight name {key}")
            arrays[key] = np.asarray(weight.numpy() if hasattr(weight, "numpy") else weight,
                                     dtype=np.float32)
    return arrays


def save_model_folder(
    model: Any, config: ModelConfig, folder: str | os.PathLike, *,
    name: str | None = None, extra: dict | None = None,
) -> Path:
    """Write ``config.json``, ``model.keras`` and ``weights.npz`` into ``folder``.

    Each file is written to a temporary name and renamed into place.

    Parameters
    ----------
    extra : dict, optional
        Facts stored under ``"training"`` in config.json (data, epochs, metrics).

    Returns
    -------
    Path
        The folder.
    """
    from harmonizer_cli.core.audio_out import atomic_output

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "name": name or folder.name,
        "model": config.to_dict(),
        "training": extra or {},
    }
    with atomic_output(folder / KERAS_FILE, overwrite=True) as tmp:
        keras_tmp = tmp.with_name(tmp.name + ".keras")
        try:
            model.save(keras_tmp)
            os.replace(keras_tmp, tmp)
            tmp.chmod(0o644)  # mkstemp makes 0600; model files are meant to be shared
        finally:
            keras_tmp.unlink(missing_ok=True)
    with atomic_output(folder / WEIGHTS_FILE, overwrite=True) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **export_weights(model))
        tmp.chmod(0o644)
    with atomic_output(folder / CONFIG_FILE, overwrite=True) as tmp:
        tmp.write_text(json.dumps(document, indent=2) + "\n")
        tmp.chmod(0o644)
    return folder


def load_keras_model(folder: str | os.PathLike, *, compile: bool = True) -> Any:
    """Load ``model.keras`` of a model folder with ``safe_mode=True``.

    Raises
    ------
    ModelError
        Missing or invalid folder or file.
    """
    import keras

    folder = Path(folder)
    read_config(folder)
    path = folder / KERAS_FILE
    if not path.is_file():
        raise ModelError("no model.keras in the model folder", path=folder)
    custom_layers()
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # keras raises many types for corrupt files
        raise ModelError(f"cannot load the Keras model ({type(exc).__name__}: {exc})", path=path) from exc
