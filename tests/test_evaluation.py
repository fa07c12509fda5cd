"""Evaluation against baselines: scores behave, and a fake model is scored like its twin baseline."""

from __future__ import annotations

import numpy as np
import pytest

from harmonizer_cli.core.research.evaluation import BASELINES, evaluate_songs, frame_scores
from harmonizer_cli.core.features import frames_for
from harmonizer_cli.errors import DataError

SAMPLE_RATE = 22050


def periodic_song(seconds: int, *, period_seconds: int = 8, seed: int = 0) -> np.ndarray:
    """A song that repeats exactly every ``period_seconds``: one note per second."""
    rng = np.random.default_rng(seed)
    notes = rng.choice([220.0, 247.0, 262.0, 294.0, 330.0, 349.0, 392.0], size=period_seconds)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    bar = np.concatenate([0.3 * np.sin(2 * np.pi * f * t) * np.exp(-3 * t) for f in notes])
    return np.tile(bar, seconds // period_seconds + 1)[: seconds * SAMPLE_RATE].astype(np.float32)


class RepeatLastPredictor:
    """A fake model that predicts the context's last 10 frames."""

    name = "repeat"
    representation = "logmel"
    n_input_frames, n_output_frames, frame_seconds = 20, 10, 1.0

    def predict(self, context: np.ndarray) -> np.ndarray:
        return context[:, -10:]

    def render_frames(self, features: np.ndarray) -> np.ndarray:
        return np.zeros(features.shape[0] * SAMPLE_RATE, dtype=np.float32)


def test_identical_frames_score_perfectly() -> None:
    features = frames_for(periodic_song(12))
    scores = frame_scores(features, features)
    assert scores["logmel_distance_db"] == 0.0
    assert scores["chroma_similarity"] == pytest.approx(1.0, abs=1e-5)
    assert scores["mfcc_similarity"] == pytest.approx(1.0, abs=1e-5)


def test_baselines_on_a_periodic_song() -> None:
    # a 4 s period: every window has an exact earlier match whose copy ends before "now"
    report = evaluate_songs([("periodic", periodic_song(64, period_seconds=4))], hop_seconds=5)
    assert report.n_songs == 1 and report.n_windows == 7
    rows = report.rows
    assert set(rows) == set(BASELINES)
    # the song repeats every 4 s, so the nearest earlier 10 s is the true continuation
    assert rows["nearest-earlier-10s"]["logmel_distance_db"] < 0.01
    assert rows["nearest-earlier-10s"]["waveform_mse"] < 1e-8
    # 10 s back is not a multiple of the 4 s period: repeating is worse; silence has no harmony
    assert rows["repeat-last-10s"]["logmel_distance_db"] > 1.0
    assert rows["silence"]["chroma_similarity"] == 0.0
    assert rows["repeat-last-10s"]["chroma_similarity"] < rows["nearest-earlier-10s"]["chroma_similarity"]


def test_model_row_uses_the_model() -> None:
    report = evaluate_songs([("periodic", periodic_song(50))], predictor=RepeatLastPredictor(), hop_seconds=10)
    model = report.rows["model (repeat)"]
    twin = report.rows["repeat-last-10s"]
    for metric in ("logmel_distance_db", "chroma_similarity", "mfcc_similarity"):
        assert model[metric] == pytest.approx(twin[metric], rel=1e-5)


def test_too_short_songs_raise_data_error() -> None:
    with pytest.raises(DataError, match="long enough"):
        evaluate_songs([("short", periodic_song(20))])
