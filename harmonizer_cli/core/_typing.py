"""Types shared across the core: the progress callback and what a predictor offers.

``ProgressFn`` is what every long-running core function accepts as
``on_progress``; the caller (the CLI's ``console.progress_for``, the web app's job
pool) renders it. ``Predictor`` is the interface the engine needs from a trained
model: ``model.predictor.FramePredictor`` implements it, tests use small fakes.
``Scorer`` is an optional capability of a predictor: a model trained to judge
which continuation follows (an embedding head) scores candidates with it;
``scorer_of`` says whether a predictor has it.
"""

from __future__ import annotations

from typing import Callable, Optional, Protocol, runtime_checkable

import numpy as np

__all__ = ["ProgressFn", "Predictor", "Scorer", "scorer_of"]

#: ``on_progress(done, total)``, or None for no reporting.
ProgressFn = Optional[Callable[[int, int], None]]


@runtime_checkable
class Predictor(Protocol):
    """A model that predicts the next frames of a song from the frames before.

    Attributes
    ----------
    name : str
        Shown in results (``"model"`` field of ``extend --json``).
    n_input_frames, n_output_frames : int
        Frames read and predicted (20 and 10 in the seed paper).
    frame_seconds : float
        Seconds of audio per frame (1.0).
    """

    name: str
    n_input_frames: int
    n_output_frames: int
    frame_seconds: float

    def frame_features(self, mono_22050: np.ndarray) -> np.ndarray:
        """Frames [shape=(n_frames, frame_size)] of 22050 Hz mono audio."""

    def predict(self, context: np.ndarray) -> np.ndarray:
        """Next frames [shape=(batch, n_output_frames, frame_size)] of each context
        [shape=(batch, n_input_frames, frame_size)]."""

    def render_frames(self, features: np.ndarray) -> np.ndarray:
        """22050 Hz mono audio of frames [shape=(n, frame_size)]."""


@runtime_checkable
class Scorer(Protocol):
    """A predictor that can say how well a candidate continuation follows a context.

    The score of a continuation after a context is the dot product of their
    embeddings (both L2-normalised: a cosine, higher is more likely).

    Attributes
    ----------
    embedding_size : int
        Size of the embeddings; 0 when the model has no embedding head.
    """

    embedding_size: int

    def embed_context(self, context: np.ndarray) -> np.ndarray:
        """Unit embeddings [shape=(batch, embedding_size)] of contexts
        [shape=(batch, n_input_frames, frame_size)]."""

    def embed_continuation(self, frames: np.ndarray) -> np.ndarray:
        """Unit embeddings [shape=(batch, embedding_size)] of continuations
        [shape=(batch, n_output_frames, frame_size)]."""


def scorer_of(predictor: object) -> Optional[Scorer]:
    """``predictor`` itself when it can score continuations (``Scorer``, ``embedding_size > 0``), else None."""
    if isinstance(predictor, Scorer) and int(getattr(predictor, "embedding_size", 0) or 0) > 0:
        return predictor
    return None
