"""Model guidance: a target cost for each jump, from a model of what comes next.

As in unit-selection synthesis, a jump has a *seam* cost (how well the two sides
join, ``candidates``) and a *target* cost (how well what follows the landing fits
what should come next). The target cost comes from a trained model
(``core._typing.Predictor``); without one the engine plans on similarity alone.

A model that can score continuations (``core._typing.Scorer``: trained with a
contrastive objective, it judges which of the places the song could go next
really follows) is asked for that judgement; a model that only predicts frames
(the seed paper's ``mse`` objective) is charged the distance between its
prediction and each candidate.
"""

from __future__ import annotations

import numpy as np

from harmonizer_cli.core._typing import Predictor, scorer_of

__all__ = ["TargetCost", "TARGET_WEIGHT", "SCORE_SCALE"]

#: Weight of the model's target cost beside the seam (context) cost.
TARGET_WEIGHT = 0.5

#: Target cost per unit of cosine a jump's landing scores below the natural continuation.
SCORE_SCALE = 2.0


def _context_windows(features: np.ndarray, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Every 1 s position's context and continuation, the song's ends repeated where it has too few frames.

    Returns
    -------
    contexts : np.ndarray [shape=(n + 1, n_in, frame_size)]
        ``contexts[k]``: the ``n_in`` frames before position ``k``.
    continuations : np.ndarray [shape=(n + 1, n_out, frame_size)]
        ``continuations[m]``: the ``n_out`` frames from position ``m``.
    """
    n = features.shape[0]
    padded = np.concatenate([np.repeat(features[:1], n_in, axis=0), features,
                             np.repeat(features[-1:], n_out, axis=0)], axis=0)
    contexts = np.stack([padded[k:k + n_in] for k in range(n + 1)])
    continuations = np.stack([padded[n_in + m: n_in + m + n_out] for m in range(n + 1)])
    return contexts, continuations


def _prediction_cost(predictor: Predictor, features: np.ndarray, contexts: np.ndarray,
                     continuations: np.ndarray) -> np.ndarray:
    """Squared distance between the prediction after each position and the frames from each other.

    Normalised by the song's own feature variance and the number of numbers compared.

    Returns
    -------
    np.ndarray [shape=(n + 1, n + 1)]
    """
    n_out = continuations.shape[1]
    predicted = np.asarray(predictor.predict(contexts), dtype=np.float32)  # [n+1, n_out, F]
    scale = float(np.mean((features - features.mean(axis=0)) ** 2)) + 1e-9
    cost = np.zeros((contexts.shape[0], continuations.shape[0]))
    for j in range(n_out):
        p, c = predicted[:, j].astype(np.float64), continuations[:, j].astype(np.float64)
        cost += (np.sum(p * p, axis=1)[:, None] + np.sum(c * c, axis=1)[None, :] - 2.0 * p @ c.T)
    return cost / (n_out * features.shape[1] * scale)


class TargetCost:
    """How much less expected a jump's landing is than the song's own continuation.

    Once per song and in one batch, the model reads the ``n_input_frames`` before
    every 1 s position of the song. A jump that leaves the source at ``t_a`` and
    continues at ``t_b`` is then charged, relative to the natural continuation
    (frames from ``t_a``, which costs 0):

    - with a scoring model (``Scorer``): ``SCORE_SCALE`` times how much lower the
      cosine between the context's embedding at ``t_a`` and the continuation's
      embedding at ``t_b`` is than at ``t_a`` itself;
    - otherwise: the distance between the model's predicted next ``n_output_frames``
      at ``t_a`` and the song's frames from ``t_b``, minus that to the frames from
      ``t_a`` (normalised by the song's feature variance).

    The context is the source's own 20 s before the jump, which is the path's own
    when the current segment is at least 20 s long and an approximation otherwise;
    it keeps the guidance to one batch per song.

    Parameters
    ----------
    predictor : Predictor
        A ``Scorer`` too when it can (``scorer_of``).
    mono : np.ndarray [shape=(n_samples,)]
        The song's 22050 Hz mono view.

    Attributes
    ----------
    matrix : np.ndarray [shape=(n + 1, n + 1)]
        ``matrix[k, m]``: the cost of leaving at ``k`` s and continuing at ``m`` s.
    scored : bool
        Whether the matrix comes from the model's scores (else from its predictions).
    """

    def __init__(self, predictor: Predictor, mono: np.ndarray) -> None:
        features = np.asarray(predictor.frame_features(mono), dtype=np.float32)
        n_in = int(predictor.n_input_frames)
        n_out = int(predictor.n_output_frames)
        self.frame_seconds = float(predictor.frame_seconds)
        contexts, continuations = _context_windows(features, n_in, n_out)
        scorer = scorer_of(predictor)
        self.scored = scorer is not None
        if scorer is not None:
            queries = np.asarray(scorer.embed_context(contexts), dtype=np.float64)
            keys = np.asarray(scorer.embed_continuation(continuations), dtype=np.float64)
            cost = -SCORE_SCALE * (queries @ keys.T)
        else:
            cost = _prediction_cost(predictor, features, contexts, continuations)
        self.matrix = cost - np.diag(cost)[:, None]  # relative to the natural continuation
        self.n = features.shape[0]

    def for_jumps(self, leave_seconds: np.ndarray, continue_seconds: np.ndarray) -> np.ndarray:
        """Target cost of leaving at ``leave_seconds`` and continuing at ``continue_seconds``."""
        k = np.clip(np.round(leave_seconds / self.frame_seconds).astype(np.int64), 0, self.n)
        m = np.clip(np.round(continue_seconds / self.frame_seconds).astype(np.int64), 0, self.n)
        return self.matrix[k, m]
