"""The research pipeline: reproduce the seed paper's encoder-decoder, step by step.

The seed paper trains a Keras encoder-decoder that reads 20 one-second frames of a
song and predicts the next 10 (``harmonizer_cli.core.model``). Its pipeline, one
module and one ``harmonizer`` command per step:

1. ``fetch`` (``fetch-data``): list a source and download or copy its audio files.
2. ``preprocess`` (``preprocess``): decode the songs into frame shards and a
   by-song train/validation/test split.
3. ``training`` (``train``): fit the model on windows of the shards.
4. ``evaluation`` (``evaluate``): score the model on held-out songs against
   trivial baselines.

The names below are re-exported from those modules and imported on first use, so
``import harmonizer_cli.core.research`` stays cheap (no numpy or TensorFlow until
a name is used). ``AUDIO_SUFFIXES`` differs between ``fetch`` and ``preprocess``
and is not re-exported: import it from the module meant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    # fetch
    "DEFAULT_SOURCE", "DEFAULT_GITHUB_API", "FetchOptions", "Source", "RemoteFile", "FileResult",
    "FetchSummary", "parse_source", "parse_size", "list_source", "fetch_dataset",
    "extract_archive", "safe_relative_path", "verify_audio", "git_blob_sha1",
    # preprocess
    "PreprocessConfig", "PreprocessResult", "ProcessedData", "find_audio_files",
    "preprocess_dataset", "split_songs", "load_processed",
    # training
    "TrainConfig", "TrainResult", "train_model", "STRATEGIES", "plot_history",
    # evaluation
    "METRICS", "BASELINES", "EvaluationReport", "evaluate_songs", "evaluate_model",
    "frame_scores", "write_plots",
]

#: The module each name of ``__all__`` is imported from.
_MODULE_OF = {
    **dict.fromkeys(("DEFAULT_SOURCE", "DEFAULT_GITHUB_API", "FetchOptions", "Source", "RemoteFile",
                     "FileResult", "FetchSummary", "parse_source", "parse_size", "list_source",
                     "fetch_dataset", "extract_archive", "safe_relative_path", "verify_audio",
                     "git_blob_sha1"), "fetch"),
    **dict.fromkeys(("PreprocessConfig", "PreprocessResult", "ProcessedData", "find_audio_files",
                     "preprocess_dataset", "split_songs", "load_processed"), "preprocess"),
    **dict.fromkeys(("TrainConfig", "TrainResult", "train_model", "STRATEGIES", "plot_history"),
                    "training"),
    **dict.fromkeys(("METRICS", "BASELINES", "EvaluationReport", "evaluate_songs", "evaluate_model",
                     "frame_scores", "write_plots"), "evaluation"),
}

if TYPE_CHECKING:  # what the lazy ``__getattr__`` below returns, for type checkers
    from harmonizer_cli.core.research.evaluation import (
        BASELINES, METRICS, EvaluationReport, evaluate_model, evaluate_songs, frame_scores,
        write_plots,
    )
    from harmonizer_cli.core.research.fetch import (
        DEFAULT_GITHUB_API, DEFAULT_SOURCE, FetchOptions, FetchSummary, FileResult, RemoteFile,
        Source, extract_archive, fetch_dataset, git_blob_sha1, list_source, parse_size,
        parse_source, safe_relative_path, verify_audio,
    )
    from harmonizer_cli.core.research.preprocess import (
        PreprocessConfig, PreprocessResult, ProcessedData, find_audio_files, load_processed,
        preprocess_dataset, split_songs,
    )
    from harmonizer_cli.core.research.training import (
        STRATEGIES, TrainConfig, TrainResult, plot_history, train_model,
    )


def __getattr__(name: str) -> Any:
    """Import a re-exported name from its module on first use (PEP 562)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
