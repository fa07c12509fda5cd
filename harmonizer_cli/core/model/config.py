"""The model folder format: the model's configuration, its files, and reading them (no Keras).

A model folder holds ``config.json`` (the ``ModelConfig`` and training facts),
``model.keras`` (Keras, loaded with ``safe_mode=True`` by ``network``) and
``weights.npz`` (the same weights as plain arrays, ``"<layer>/<weight>"``, read by
the numpy ``predictor``). Nothing here imports TensorFlow or Keras.

The training objective is part of the configuration: ``mse`` (the seed paper's, no
embedding head), ``contrastive`` or ``both`` (an embedding head scores candidate
continuations, see ``network``). Folders written before the objective existed have
no such field and read as ``mse``; the format version is unchanged.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from harmonizer_cli.core.audio_io import MODEL_SAMPLE_RATE
from harmonizer_cli.core.features import REPRESENTATIONS, LogMelSpec, frame_size_for
from harmonizer_cli.errors import ConfigError, ModelError

__all__ = ["ModelConfig", "FORMAT_NAME", "FORMAT_VERSION", "WEIGHT_MODES", "OBJECTIVES", "CONFIG_FILE",
           "KERAS_FILE", "WEIGHTS_FILE", "read_config", "unit_names"]

FORMAT_NAME = "harmonizer-model"
FORMAT_VERSION = 1
WEIGHT_MODES = ("shared", "per-step")
OBJECTIVES = ("mse", "contrastive", "both")
EMBEDDING_HEADS = ("shared", "sibling")
NEGATIVE_POOLS = ("batch", "song")
CONFIG_FILE = "config.json"
KERAS_FILE = "model.keras"
WEIGHTS_FILE = "weights.npz"


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the model; saved in ``config.json``.

    Attributes
    ----------
    representation : {"logmel", "waveform"}
        Frame representation (``features``).
    weights : {"shared", "per-step"}
        One unit each for encoder/context/decoder, or one per time step (31).
    frame_size : int
        Numbers per frame (256 for the default logmel, 22050 for waveform).
    hidden_sizes : tuple of int
        Widths of the hidden stack (the paper: 64, 128, 256, 512).
    n_input_frames, n_output_frames : int
        Frames read and predicted (20 and 10).
    frame_seconds : float
        Seconds per frame (1.0).
    leaky_slope : float
        LeakyReLU negative slope (Keras' default, 0.3).
    batchnorm_epsilon, batchnorm_momentum : float
        BatchNormalization parameters (Keras' defaults).
    logmel : dict
        ``LogMelSpec`` fields for the logmel representation.
    objective : {"mse", "contrastive", "both"}
        ``mse``: the paper's regression of the next frames, no embedding head.
        ``contrastive``: InfoNCE between the embedding of the decoder's output and
        the true continuation's, against other segments; ``both``: the two losses summed.
    embedding_size : int
        Size of the L2-normalised embeddings (objectives other than ``mse``).
    embedding_frame_size : int
        Width of the per-frame projection that starts each embedding head.
    embedding_hidden : int
        Width of the embedding heads' hidden layer.
    temperature : float
        InfoNCE temperature: logits are cosines divided by it.
    embedding_heads : {"shared", "sibling"}
        ``shared``: one head embeds the decoder's output and the candidates alike, so
        a prediction close to a candidate scores it high; ``sibling``: two heads of the
        same shape (``query`` and ``key``), free to differ.
    negatives : {"batch", "song"}
        What InfoNCE contrasts the true continuation with: every candidate of the
        batch (its window's same-song segments and the other windows'), or only its
        own window's segments of the same song (the ranking task itself).
    """

    representation: str = "logmel"
    weights: str = "shared"
    frame_size: int = 256
    hidden_sizes: tuple[int, ...] = (64, 128, 256, 512)
    n_input_frames: int = 20
    n_output_frames: int = 10
    frame_seconds: float = 1.0
    leaky_slope: float = 0.3
    batchnorm_epsilon: float = 1e-3
    batchnorm_momentum: float = 0.99
    logmel: dict = field(default_factory=lambda: LogMelSpec().to_dict())
    objective: str = "mse"
    embedding_size: int = 64
    embedding_frame_size: int = 64
    embedding_hidden: int = 256
    temperature: float = 0.1
    embedding_heads: str = "shared"
    negatives: str = "batch"

    @classmethod
    def paper(cls) -> "ModelConfig":
        """The reference configuration: waveform frames of 22050 samples, per-step weights."""
        return cls(representation="waveform", weights="per-step", frame_size=MODEL_SAMPLE_RATE)

    def validate(self) -> "ModelConfig":
        """Return self, or raise ``ConfigError`` naming the bad value."""
        if self.representation not in REPRESENTATIONS:
            raise ConfigError(f"unknown representation {self.representation!r}")
        if self.weights not in WEIGHT_MODES:
            raise ConfigError(f"unknown weights mode {self.weights!r} (choose from shared, per-step)")
        expected = frame_size_for(self.representation, spec=self.logmel_spec)
        if self.frame_size != expected:
            raise ConfigError(
                f"frame_size {self.frame_size} does not match the {self.representation} "
                f"representation ({expected})"
            )
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise ConfigError(f"hidden_sizes must be positive, got {self.hidden_sizes}")
        if self.n_input_frames < 1 or self.n_output_frames < 1:
            raise ConfigError("n_input_frames and n_output_frames must be positive")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.objective!r} (choose from {', '.join(OBJECTIVES)})")
        if min(self.embedding_size, self.embedding_frame_size, self.embedding_hidden) < 1:
            raise ConfigError("embedding sizes must be positive")
        if self.embedding_heads not in EMBEDDING_HEADS:
            raise ConfigError(f"unknown embedding_heads {self.embedding_heads!r} "
                              f"(choose from {', '.join(EMBEDDING_HEADS)})")
        if self.negatives not in NEGATIVE_POOLS:
            raise ConfigError(f"unknown negatives {self.negatives!r} (choose from {', '.join(NEGATIVE_POOLS)})")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be positive, got {self.temperature}")
        return self

    @property
    def has_embedding(self) -> bool:
        """Whether the model has the embedding head (objectives other than ``mse``)."""
        return self.objective != "mse"

    @property
    def head_names(self) -> tuple[str, str]:
        """Layer-name prefixes of the heads embedding a context and a continuation."""
        return ("embedding", "embedding") if self.embedding_heads == "shared" else ("query", "key")

    @property
    def logmel_spec(self) -> LogMelSpec:
        return LogMelSpec.from_dict(self.logmel)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["hidden_sizes"] = list(self.hidden_sizes)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        try:
            known = {k: values[k] for k in cls.__dataclass_fields__ if k in values}
            if "hidden_sizes" in known:
                known["hidden_sizes"] = tuple(int(h) for h in known["hidden_sizes"])
            return cls(**known).validate()
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid model configuration ({exc})") from exc

    def with_representation(self, representation: str) -> "ModelConfig":
        """This configuration for another representation (frame size follows)."""
        return replace(self, representation=representation,
                       frame_size=frame_size_for(representation, spec=self.logmel_spec))


def unit_names(config: ModelConfig) -> dict[str, list[str]]:
    """Layer-name prefixes of each step's unit: ``{"encoder": [...20], "context": [1], "decoder": [...10]}``.

    Shared weights repeat one prefix; per-step weights number them (``encoder_07``).
    """
    def names(part: str, n: int) -> list[str]:
        if config.weights == "shared" or n == 1:
            return [part] * n
        return [f"{part}_{i:02d}" for i in range(n)]

    return {"encoder": names("encoder", config.n_input_frames), "context": ["context"],
            "decoder": names("decoder", config.n_output_frames)}


def read_config(folder: str | os.PathLike) -> tuple[ModelConfig, dict]:
    """Read a model folder's ``config.json``.

    Returns
    -------
    config : ModelConfig
    document : dict
        The whole JSON document (``name``, ``training``...).

    Raises
    ------
    ModelError
        Missing folder or file, invalid JSON, another format or version.
    """
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise ModelError("model folder not found", path=folder)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelError("not a model folder (no config.json)", path=folder) from exc
    except (OSError, ValueError) as exc:
        raise ModelError(f"unreadable config.json ({exc})", path=path) from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise ModelError(f"not a {FORMAT_NAME} config", path=path)
    if document.get("version") != FORMAT_VERSION:
        raise ModelError(f"unsupported model format version {document.get('version')!r}", path=path)
    try:
        config = ModelConfig.from_dict(document.get("model") or {})
    except ConfigError as exc:
        raise ModelError(exc.message, path=path) from exc
    return config, document
