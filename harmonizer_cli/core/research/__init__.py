"""The research pipeline: reproduce the seed paper's encoder-decoder, step by step.

The seed paper trains a Keras encoder-decoder that reads 20 one-second frames of a
song and predicts the next 10 (``harmonizer_cli.core.model``). Its pipeline, one
module and one ``harmonizer`` command per step:

1. ``fetch`` (``fetch-data``): list a source and download or copy its audio files.
2. ``preprocess`` (``preprocess``): decode the songs into frame shards and a
   by-song train/validation/test split.
3. ``training`` (``train``): fit the model on windows of the shards.
4. ``evaluation`` (``evaluate``): score the model on held-out songs against
   trivial baselines, and ``ranking``: does it pick the true continuation among
   other segments of the song?

The names below are re-exported from those modules. TensorFlow is imported only
inside the training and model functions that need it.
"""

from __future__ import annotations

from harmonizer_cli.core.research.evaluation import (
    BASELINES, METRICS, EvaluationReport, evaluate_model, evaluate_songs, frame_scores, write_plots,
)
from harmonizer_cli.core.research.fetch import (
    DEFAULT_GITHUB_API, DEFAULT_SOURCE, FetchOptions, FetchSummary, FileResult, RemoteFile, Source,
    extract_archive, fetch_dataset, git_blob_sha1, list_source, parse_size, parse_source, safe_relative_path,
    verify_audio,
)
from harmonizer_cli.core.research.preprocess import (
    PreprocessConfig, PreprocessResult, ProcessedData, find_audio_files, is_excluded, load_processed,
    preprocess_dataset, read_pattern_file, split_songs,
)
from harmonizer_cli.core.research.ranking import (
    RANKING_CANDIDATES, SIMILARITY_FRAMES, RankingReport, candidate_starts, model_scores, rank_songs,
    similarity_scores, truth_ranks,
)
from harmonizer_cli.core.research.training import (
    STRATEGIES, TrainConfig, TrainResult, gather_candidates, negative_starts, plot_history, train_model,
)

__all__ = [
    # fetch
    "DEFAULT_SOURCE", "DEFAULT_GITHUB_API", "FetchOptions", "Source", "RemoteFile", "FileResult",
    "FetchSummary", "parse_source", "parse_size", "list_source", "fetch_dataset",
    "extract_archive", "safe_relative_path", "verify_audio", "git_blob_sha1",
    # preprocess
    "PreprocessConfig", "PreprocessResult", "ProcessedData", "find_audio_files", "is_excluded",
    "read_pattern_file", "preprocess_dataset", "split_songs", "load_processed",
    # training
    "TrainConfig", "TrainResult", "train_model", "STRATEGIES", "plot_history", "negative_starts",
    "gather_candidates",
    # ranking
    "RANKING_CANDIDATES", "SIMILARITY_FRAMES", "RankingReport", "candidate_starts", "similarity_scores",
    "model_scores", "truth_ranks", "rank_songs",
    # evaluation
    "METRICS", "BASELINES", "EvaluationReport", "evaluate_songs", "evaluate_model",
    "frame_scores", "write_plots",
]
