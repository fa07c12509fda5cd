"""TargetCost: a scoring model's judgement becomes the target cost; a frame predictor's distance as before."""

from __future__ import annotations

import numpy as np
import pytest

from harmonizer_cli.core._typing import Predictor, Scorer, scorer_of
from harmonizer_cli.core.extend.guidance import SCORE_SCALE, TargetCost

from test_extension import BiasedPredictor, FakePredictor, make_song


class BiasedScorer(BiasedPredictor):
    """A scoring model with a strong opinion: wherever the song is, it goes on at ``favoured_second``.

    Frames say which second they are (one-hot, from ``BiasedPredictor``); a context's
    embedding points at the favoured second, a continuation's at its first second.
    """

    name = "biased-scorer"

    def __init__(self, favoured_second: int) -> None:
        super().__init__(favoured_second)
        self.embedding_size = 0
        self.scored = 0

    def frame_features(self, mono_22050: np.ndarray) -> np.ndarray:
        frames = super().frame_features(mono_22050)
        self.embedding_size = self.n
        return frames

    def embed_context(self, context: np.ndarray) -> np.ndarray:
        self.scored += 1
        out = np.zeros((context.shape[0], self.n), np.float32)
        out[:, self.favoured] = 1.0
        return out

    def embed_continuation(self, frames: np.ndarray) -> np.ndarray:
        return frames[:, 0, :].astype(np.float32)


def test_scorer_capability_is_optional() -> None:
    assert isinstance(FakePredictor(), Predictor) and scorer_of(FakePredictor()) is None
    scorer = BiasedScorer(3)
    assert isinstance(scorer, Scorer) and scorer_of(scorer) is None  # no embedding yet: size 0
    scorer.embedding_size = 4
    assert scorer_of(scorer) is scorer


def test_matrix_is_minus_the_score_relative_to_the_natural_continuation() -> None:
    song = make_song(24.0)
    from harmonizer_cli.core.audio_io import to_model_view

    mono = to_model_view(song)
    scorer = BiasedScorer(8)
    cost = TargetCost(scorer, mono)
    assert cost.scored and scorer.scored == 1 and scorer.calls == 0  # one batch, no frame prediction
    n = cost.n
    assert cost.matrix.shape == (n + 1, n + 1)
    np.testing.assert_allclose(np.diag(cost.matrix), 0.0)
    # score(k, m) = 1 where the continuation at m starts with the favoured second, else 0
    k = 12
    expected = SCORE_SCALE * (float(k == 8) - (np.arange(n + 1) == 8))
    expected[n] = SCORE_SCALE * float(k == 8) - SCORE_SCALE * float(n - 1 == 8)  # the end repeats the last frame
    np.testing.assert_allclose(cost.matrix[k, : n], expected[: n])
    jumps = cost.for_jumps(np.array([12.2, 11.8]), np.array([8.1, 3.0]))
    np.testing.assert_allclose(jumps, [-SCORE_SCALE, 0.0])


def test_a_frame_predictor_keeps_the_distance_cost() -> None:
    from harmonizer_cli.core.audio_io import to_model_view

    mono = to_model_view(make_song(24.0))
    predictor = BiasedPredictor(8)
    cost = TargetCost(predictor, mono)
    assert not cost.scored and predictor.calls == 1
    np.testing.assert_allclose(np.diag(cost.matrix), 0.0)
    # landing on the favoured second is cheaper than anywhere else from any leave point
    assert np.all(cost.matrix[:, 8] <= cost.matrix[:, 3] + 1e-12)


def test_scores_guide_the_plan() -> None:
    """A scoring model that expects the music to go on at one place pulls the landings there."""
    from harmonizer_cli.core.audio_io import to_model_view
    from harmonizer_cli.core.extend import analyze_song, extend_audio, plan_path

    song = make_song(24.0)
    mono = to_model_view(song)
    analysis = analyze_song(mono)
    plain = plan_path(analysis, 60.0, seed=0)
    landings = lambda plan: np.array([analysis.beat_seconds[b] for _, b in plan.jumps])  # noqa: E731
    for favoured in (2, 8):
        guided = plan_path(analysis, 60.0, seed=0, target_cost=TargetCost(BiasedScorer(favoured), mono))
        assert guided.jumps != plain.jumps
        assert np.mean(np.abs(landings(guided) - favoured)) < np.mean(np.abs(landings(plain) - favoured))
    scorer = BiasedScorer(8)
    result = extend_audio(song, target_seconds=41.3, seed=0, predictor=scorer)
    assert scorer.scored > 0 and result.model == "biased-scorer"
    assert result.duration_seconds == pytest.approx(41.3, abs=0.010)
