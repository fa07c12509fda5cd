"""Numpy-only inference of a trained encoder-decoder (no TensorFlow, no Keras).

``load_predictor(path)`` reads a model folder's ``config.json`` and ``weights.npz``
(``np.load(allow_pickle=False)``) and returns a ``FramePredictor`` whose ``predict``
reproduces the Keras model's inference outputs (BatchNormalization with its moving
statistics). A model trained with a contrastive objective also scores candidate
continuations (``core._typing.Scorer``): ``embed_context`` and
``embed_continuation`` compute its two embedding heads. ``path=None`` loads the
default model shipped in ``models/default``. This is what ``extend`` uses for
guidance: it loads in well under a second.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from harmonizer_cli.core.features import LogMelSpec, frames_for, render_logmel
from harmonizer_cli.core.model.config import WEIGHTS_FILE, ModelConfig, read_config, unit_names
from harmonizer_cli.errors import ModelError

__all__ = ["FramePredictor", "load_predictor", "default_model_path"]


def default_model_path() -> Path:
    """Folder of the default model shipped with the package (``models/default``)."""
    from importlib.resources import files

    try:
        return Path(str(files("harmonizer_cli.models") / "default"))
    except ModuleNotFoundError:  # a source checkout used without installing: models/ beside it
        return Path(__file__).resolve().parents[3] / "models" / "default"


def _leaky(x: np.ndarray, slope: float) -> np.ndarray:
    return np.where(x >= 0, x, x * np.float32(slope))


class FramePredictor:
    """Predicts the next 10 one-second frames from 20, in numpy.

    Attributes
    ----------
    name : str
        The model's name (from config.json).
    n_input_frames, n_output_frames : int
        20 and 10.
    frame_seconds : float
        1.0.
    representation : {"logmel", "waveform"}
    frame_size : int
        Numbers per frame (256 or 22050).
    config : ModelConfig
    info : dict
        The whole config.json document.
    embedding_size : int
        Size of the embeddings of ``embed_context`` / ``embed_continuation``; 0 for a
        model without an embedding head (objective ``mse``).
    """

    def __init__(self, config: ModelConfig, weights: dict[str, np.ndarray], *,
                 name: str = "model", info: dict | None = None) -> None:
        self.config = config
        self.name = name
        self.info = info or {}
        self.n_input_frames = config.n_input_frames
        self.n_output_frames = config.n_output_frames
        self.frame_seconds = float(config.frame_seconds)
        self.representation = config.representation
        self.frame_size = config.frame_size
        self.embedding_size = int(config.embedding_size) if config.has_embedding else 0
        self._spec: LogMelSpec = config.logmel_spec
        self._w = weights
        self._check_weights()

    # ------------------------------------------------------------------ weights
    def _get(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        if key not in self._w:
            raise ModelError(f"weights.npz lacks {key}")
        array = self._w[key]
        if shape is not None and array.shape != shape:
            raise ModelError(f"weights.npz: {key} has shape {array.shape}, expected {shape}")
        return array

    def _check_weights(self) -> None:
        c = self.config
        size = c.frame_size
        for key in ("input_scale", "output_scale"):
            self._get(f"{key}/mean", (size,))
            self._get(f"{key}/std", (size,))
        names = unit_names(c)
        for prefix in {p for part in names.values() for p in part}:
            self._get(f"{prefix}_mix/kernel")
            self._get(f"{prefix}_mix/bias", ())
            width = size
            for i, hidden in enumerate(c.hidden_sizes):
                self._get(f"{prefix}_dense_{i}/kernel", (width, hidden))
                self._get(f"{prefix}_dense_{i}/bias", (hidden,))
                for weight in ("gamma", "beta", "moving_mean", "moving_variance"):
                    self._get(f"{prefix}_bn_{i}/{weight}", (hidden,))
                width = hidden
            self._get(f"{prefix}_out/kernel", (width, size))
            self._get(f"{prefix}_out/bias", (size,))
        if c.has_embedding:
            for prefix in set(c.head_names):
                self._check_head(prefix)

    def _check_head(self, prefix: str) -> None:
        c = self.config
        joined = c.n_output_frames * c.embedding_frame_size
        for layer, width, size in (("frame", c.frame_size, c.embedding_frame_size),
                                   ("hidden", joined, c.embedding_hidden),
                                   ("out", c.embedding_hidden, c.embedding_size)):
            self._get(f"{prefix}_{layer}/kernel", (width, size))
            self._get(f"{prefix}_{layer}/bias", (size,))
            if layer != "out":
                for weight in ("gamma", "beta", "moving_mean", "moving_variance"):
                    self._get(f"{prefix}_{layer}_bn/{weight}", (size,))

    def _batchnorm(self, h: np.ndarray, name: str) -> np.ndarray:
        inv = self._w[f"{name}/gamma"] / np.sqrt(self._w[f"{name}/moving_variance"]
                                                 + np.float32(self.config.batchnorm_epsilon))
        return (h - self._w[f"{name}/moving_mean"]) * inv + self._w[f"{name}/beta"]

    def _head(self, prefix: str, scaled: np.ndarray) -> np.ndarray:
        """An embedding head over standardised frames [shape=(batch, n_output_frames, frame_size)]."""
        c = self.config
        flat = scaled.reshape(-1, scaled.shape[-1])  # one 2-D product (BLAS), not a stacked matmul
        h = (flat @ self._w[f"{prefix}_frame/kernel"]).reshape(*scaled.shape[:-1], -1) + self._w[f"{prefix}_frame/bias"]
        h = self._batchnorm(_leaky(h, c.leaky_slope), f"{prefix}_frame_bn").reshape(len(scaled), -1)
        h = h @ self._w[f"{prefix}_hidden/kernel"] + self._w[f"{prefix}_hidden/bias"]
        h = self._batchnorm(_leaky(h, c.leaky_slope), f"{prefix}_hidden_bn")
        h = h @ self._w[f"{prefix}_out/kernel"] + self._w[f"{prefix}_out/bias"]
        norm = np.sqrt(np.maximum(np.sum(h * h, axis=1, keepdims=True), np.float32(1e-12)))
        return (h / norm).astype(np.float32)

    def _unit(self, prefix: str, stacked: list[np.ndarray]) -> np.ndarray:
        c = self.config
        kernel = self._w[f"{prefix}_mix/kernel"]
        if len(stacked) > kernel.shape[0]:
            raise ModelError(f"{prefix}: {len(stacked)} inputs for a mix of {kernel.shape[0]}")
        h = self._w[f"{prefix}_mix/bias"] + sum(kernel[k] * s for k, s in enumerate(stacked))
        h = _leaky(h.astype(np.float32), c.leaky_slope)
        for i in range(len(c.hidden_sizes)):
            h = h @ self._w[f"{prefix}_dense_{i}/kernel"] + self._w[f"{prefix}_dense_{i}/bias"]
            h = self._batchnorm(_leaky(h, c.leaky_slope), f"{prefix}_bn_{i}")
        return (h @ self._w[f"{prefix}_out/kernel"] + self._w[f"{prefix}_out/bias"]).astype(np.float32)

    def _check_context(self, context: np.ndarray) -> np.ndarray:
        x = np.asarray(context, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (self.n_input_frames, self.frame_size):
            raise ModelError(
                f"model {self.name} expects context of shape (batch, {self.n_input_frames}, "
                f"{self.frame_size}), got {x.shape}")
        return x

    def _decode(self, x: np.ndarray) -> np.ndarray:
        """The decoder's outputs, standardised [shape=(batch, n_output_frames, frame_size)], of raw contexts."""
        names = unit_names(self.config)
        x = (x - self._w["input_scale/mean"]) / self._w["input_scale/std"]
        encoded: list[np.ndarray] = []
        for t in range(self.n_input_frames):
            encoded.append(self._unit(names["encoder"][t], [x[:, t]] + encoded[::-1]))
        context_vector = self._unit("context", encoded[::-1])
        decoded: list[np.ndarray] = []
        for j in range(self.n_output_frames):
            decoded.append(self._unit(names["decoder"][j], [context_vector] + decoded[::-1]))
        return np.stack(decoded, axis=1)

    def _require_embedding(self) -> None:
        if not self.embedding_size:
            raise ModelError(f"model {self.name} has no embedding head (objective "
                             f"{self.config.objective}): it cannot score continuations")

    # ------------------------------------------------------------------ public
    def predict(self, context: np.ndarray) -> np.ndarray:
        """The next ``n_output_frames`` frames of each context.

        Parameters
        ----------
        context : np.ndarray [shape=(batch, n_input_frames, frame_size)]
            Raw frames (``frame_features`` output), oldest first.

        Returns
        -------
        np.ndarray [shape=(batch, n_output_frames, frame_size), dtype=float32]

        Raises
        ------
        ModelError
            If the shape does not match the model.
        """
        out = self._decode(self._check_context(context))
        return (out * self._w["output_scale/std"] + self._w["output_scale/mean"]).astype(np.float32)

    def embed_context(self, context: np.ndarray) -> np.ndarray:
        """Unit embedding of what each context predicts (the context head over the decoder's output).

        Parameters
        ----------
        context : np.ndarray [shape=(batch, n_input_frames, frame_size)]
            Raw frames, oldest first.

        Returns
        -------
        np.ndarray [shape=(batch, embedding_size), dtype=float32]

        Raises
        ------
        ModelError
            A wrong shape, or a model without an embedding head.
        """
        self._require_embedding()
        return self._head(self.config.head_names[0], self._decode(self._check_context(context)))

    def embed_continuation(self, frames: np.ndarray) -> np.ndarray:
        """Unit embedding of each candidate continuation (the continuation head).

        The score of a continuation after a context is the dot product (cosine) of
        ``embed_context(context)`` and ``embed_continuation(frames)``.

        Parameters
        ----------
        frames : np.ndarray [shape=(batch, n_output_frames, frame_size)]
            Raw frames of each candidate, oldest first.

        Returns
        -------
        np.ndarray [shape=(batch, embedding_size), dtype=float32]

        Raises
        ------
        ModelError
            A wrong shape, or a model without an embedding head.
        """
        self._require_embedding()
        x = np.asarray(frames, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != (self.n_output_frames, self.frame_size):
            raise ModelError(f"model {self.name} expects continuations of shape (batch, "
                             f"{self.n_output_frames}, {self.frame_size}), got {x.shape}")
        return self._head(self.config.head_names[1], (x - self._w["input_scale/mean"]) / self._w["input_scale/std"])

    def frame_features(self, mono_22050: np.ndarray) -> np.ndarray:
        """Frames of 22050 Hz mono audio in this model's representation.

        Returns
        -------
        np.ndarray [shape=(ceil(n_samples / 22050), frame_size), dtype=float32]
        """
        return frames_for(mono_22050, representation=self.representation, spec=self._spec)

    def render_frames(self, features: np.ndarray) -> np.ndarray:
        """Audio of frames: concatenation (waveform) or Griffin-Lim (logmel, slow).

        Parameters
        ----------
        features : np.ndarray [shape=(n, frame_size)]

        Returns
        -------
        np.ndarray [shape=(n * 22050,), dtype=float32]
            22050 Hz mono audio.
        """
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.frame_size:
            raise ModelError(f"expected frames of shape (n, {self.frame_size}), got {features.shape}")
        if self.representation == "waveform":
            return features.reshape(-1).copy()
        return render_logmel(features, spec=self._spec)

    def __repr__(self) -> str:
        return (f"FramePredictor(name={self.name!r}, representation={self.representation!r}, "
                f"weights={self.config.weights!r}, frame_size={self.frame_size}, "
                f"objective={self.config.objective!r})")


def load_predictor(path: str | os.PathLike | None = None) -> FramePredictor:
    """Load a model folder for numpy inference.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A model folder (``config.json`` + ``weights.npz``); ``None`` loads the
        default model shipped in ``models/default``.

    Returns
    -------
    FramePredictor

    Raises
    ------
    ModelError
        Missing folder or files, invalid config, missing or misshapen weights.
    """
    folder = default_model_path() if path is None else Path(path)
    config, document = read_config(folder)
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ModelError("no weights.npz in the model folder", path=folder)
    try:
        with np.load(weights_path, allow_pickle=False) as archive:
            weights = {key: np.asarray(archive[key], dtype=np.float32) for key in archive.files}
    except (OSError, ValueError) as exc:
        raise ModelError(f"unreadable weights.npz ({exc})", path=weights_path) from exc
    try:
        return FramePredictor(config, weights, name=str(document.get("name") or folder.name),
                              info=document)
    except ModelError as exc:
        raise ModelError(exc.message, path=weights_path) from exc
