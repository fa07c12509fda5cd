"""The model folder format: the model's configuration, its files, and reading them (no Keras).

A model folder holds ``config.json`` (the ``ModelConfig`` and training facts),
``model.keras`` (Keras, loaded with ``safe_mode=True`` by ``network``) and
``weights.npz`` (the same weights as plain arrays, ``"<layer>/<weight>"``, read by
the numpy ``predictor``). Nothing here imports TensorFlow or Keras.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from harmonizer_cli.core.audio_io import MODEL_SAMPLE_RATE
from harmonizer_cli.core.features import REPRESENTATIONS, LogMelSpec, frame_size_for
from harmonizer_cli.errors import ConfigError, ModelError

__all__ = ["ModelConfig", "FORMAT_NAME", "FORMAT_VERSION", "WEIGHT_MODES", "CONFIG_FILE", "KERAS_FILE",
           "WEIGHTS_FILE", "read_config", "unit_names"]

FORMAT_NAME = "harmonizer-model"
FORMAT_VERSION = 1
WEIGHT_MODES = ("shared", "per-step")
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
        return self

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
