"""The seed paper's encoder-decoder: its folder format, the Keras network, and numpy inference.

* ``config``: ``ModelConfig`` and the model folder's files (no Keras);
* ``network``: the Keras 3 model, with the embedding heads of the contrastive
  objectives: build, save a folder, load it (Keras imported lazily);
* ``predictor``: ``FramePredictor``, numpy-only inference of a saved folder (what
  ``extend`` uses: no TensorFlow at start-up).
"""

from __future__ import annotations

from harmonizer_cli.core.model.config import (
    CONFIG_FILE, FORMAT_NAME, FORMAT_VERSION, KERAS_FILE, OBJECTIVES, WEIGHT_MODES, WEIGHTS_FILE, ModelConfig,
    read_config, unit_names,
)
from harmonizer_cli.core.model.network import (
    build_model, count_parameters, custom_layers, embedding_head, export_weights, load_keras_model, save_model_folder,
    set_normalisation,
)
from harmonizer_cli.core.model.predictor import FramePredictor, default_model_path, load_predictor

__all__ = ["ModelConfig", "FORMAT_NAME", "FORMAT_VERSION", "WEIGHT_MODES", "OBJECTIVES", "CONFIG_FILE",
           "KERAS_FILE", "WEIGHTS_FILE", "read_config", "unit_names", "build_model", "count_parameters",
           "custom_layers", "embedding_head",
           "export_weights", "load_keras_model", "save_model_folder", "set_normalisation", "FramePredictor",
           "default_model_path", "load_predictor"]
