"""The ranking measure: candidates, ties, chance, and methods that know (or ignore) the answer."""

from __future__ import annotations

import numpy as np
import pytest

from harmonizer_cli.core.research.ranking import (
    RANKING_CANDIDATES, candidate_starts, rank_songs, similarity_scores, truth_ranks,
)
from harmonizer_cli.errors import DataError


def test_candidates_overlap_neither_context_nor_truth() -> None:
    rng = np.random.default_rng(0)
    for start in (0, 13, 40, 81):
        starts = candidate_starts(131, start, rng=rng)
        assert starts is not None and len(starts) == RANKING_CANDIDATES
        assert starts[0] == start + 20 and len(set(starts.tolist())) == len(starts)
        for other in starts[1:]:
            assert other + 10 <= start or other >= start + 30  # before the context or after the truth
            assert 0 <= other <= 131 - 10


def test_candidates_are_seeded_and_none_when_the_song_is_too_short() -> None:
    a = candidate_starts(120, 30, rng=np.random.default_rng(5))
    b = candidate_starts(120, 30, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    # 53 frames: from start 0 only 14 segments lie after the truth
    assert candidate_starts(53, 0, rng=np.random.default_rng(0)) is None
    assert candidate_starts(54, 0, rng=np.random.default_rng(0)) is not None
    assert candidate_starts(60, 31, rng=np.random.default_rng(0)) is None  # the truth runs past the end


def test_ties_count_in_expectation() -> None:
    scores = np.array([[3.0, 1.0, 2.0],    # truth best
                       [1.0, 3.0, 2.0],    # truth third
                       [2.0, 2.0, 1.0],    # tied with one: top-1 half the time, rank 1 or 2
                       [5.0, 5.0, 5.0]])   # all tied
    top1, reciprocal = truth_ranks(scores)
    np.testing.assert_allclose(top1, [1.0, 0.0, 0.5, 1 / 3])
    np.testing.assert_allclose(reciprocal, [1.0, 1 / 3, 0.75, (1 + 1 / 2 + 1 / 3) / 3])


def _song(n_frames: int, seed: int) -> np.ndarray:
    """Log-mel-like frames that drift slowly: neighbours alike, distant frames not."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(0, 1, (n_frames, 256)), axis=0)
    return (-15 + 0.3 * walk).astype(np.float32)


class OracleScorer:
    """Knows each frame's position (feature 0 after ``mark``): scores the segment right after the context."""

    name = "oracle"
    n_input_frames, n_output_frames, frame_seconds = 20, 10, 1.0
    embedding_size = 2

    def embed_context(self, context: np.ndarray) -> np.ndarray:
        angle = (context[:, -1, 0] + 1) * 0.01
        return np.stack([np.cos(angle), np.sin(angle)], axis=1)

    def embed_continuation(self, frames: np.ndarray) -> np.ndarray:
        angle = frames[:, 0, 0] * 0.01
        return np.stack([np.cos(angle), np.sin(angle)], axis=1)


class ConstantPredictor:
    """Predicts the same frames whatever the context: no scorer, every candidate compared by MSE."""

    name = "constant"
    n_input_frames, n_output_frames, frame_seconds = 20, 10, 1.0

    def predict(self, context: np.ndarray) -> np.ndarray:
        return np.zeros((context.shape[0], 10, context.shape[2]), np.float32)


def _marked(frames: np.ndarray) -> np.ndarray:
    marked = frames.copy()
    marked[:, 0] = np.arange(len(frames))  # the position, for the oracle
    return marked


def test_a_model_that_knows_wins_and_chance_is_exact() -> None:
    songs = [("a", _marked(_song(60, 0))), ("b", _marked(_song(131, 1)))]
    report = rank_songs(songs, predictor=OracleScorer(), hop=2)
    assert report.top1["model"] == 1.0 and report.mrr["model"] == 1.0
    assert report.top1["random"] == pytest.approx(1 / 16)
    assert report.mrr["random"] == pytest.approx(sum(1 / k for k in range(1, 17)) / 16)
    assert report.n_songs == 2 and report.n_windows > 0 and report.n_skipped > 0
    document = report.to_dict()
    for key in ("candidates", "model_top1", "similarity_top1", "random_top1", "model_mrr", "similarity_mrr"):
        assert document[key] is not None
    assert document["candidates"] == 16 and set(document["per_song"]) == {"a", "b"}


def test_similarity_baseline_follows_continuity_and_mse_models_are_ranked() -> None:
    report = rank_songs([("walk", _song(200, 2))], predictor=ConstantPredictor(), hop=5, seed=3)
    # a slow random walk: the frame right after the context is the most similar one
    assert report.top1["similarity"] > 0.8
    assert 0.0 <= report.top1["model"] <= 1.0 and "model" in report.mrr
    again = rank_songs([("walk", _song(200, 2))], predictor=ConstantPredictor(), hop=5, seed=3)
    assert again.top1 == report.top1  # seeded


def test_similarity_scores_are_cosines_of_centred_frames() -> None:
    frames = _song(60, 4)
    scores = similarity_scores(frames, np.array([25]), np.array([[25, 40, 5]]))
    assert scores.shape == (1, 3) and np.all(np.abs(scores) <= 1 + 1e-9)
    centred = frames - frames.mean(axis=0)
    expected = centred[24] @ centred[40] / np.linalg.norm(centred[24]) / np.linalg.norm(centred[40])
    assert scores[0, 1] == pytest.approx(expected)


def test_too_short_songs_raise_data_error() -> None:
    with pytest.raises(DataError, match="long enough"):
        rank_songs([("short", _song(50, 0))])
    with pytest.raises(DataError, match="2 candidates"):
        rank_songs([("s", _song(90, 0))], n_candidates=1)
