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
from harmonizer_cli.core.audio_io import MODEL_SAMPLE_RATE
from harmonizer_cli.core.decoded import is_on_disk

__all__ = ["TargetCost", "TARGET_WEIGHT", "SCORE_SCALE", "DENSE_TARGET_FRAMES"]

#: Weight of the model's target cost beside the seam (context) cost.
TARGET_WEIGHT = 0.5

#: Target cost per unit of cosine a jump's landing scores below the natural continuation.
SCORE_SCALE = 2.0

#: Songs of more frames than this (25 minutes of 1 s frames) get no cost matrix (its
#: square is 100 MB at an hour, 400 MB at two): the model reads the contexts and
#: continuations in batches, and the cost of each jump asked for is computed from its
#: embeddings (or predictions) when asked (``_JumpCosts``).
DENSE_TARGET_FRAMES = 1500
#: Positions read by the model at once, and jumps costed at once, on that path.
_BATCH = 512
#: A long song's view (kept on disk) is turned into model frames this many frames at a time.
_FEATURE_CHUNK_FRAMES = 256


def _frame_features(predictor: Predictor, mono) -> np.ndarray:
    """``predictor.frame_features(mono)``; a long song's view (on disk) a few minutes at a time."""
    if not is_on_disk(mono):
        return np.asarray(predictor.frame_features(mono), dtype=np.float32)
    step = int(round(float(predictor.frame_seconds) * MODEL_SAMPLE_RATE)) * _FEATURE_CHUNK_FRAMES
    return np.concatenate([np.asarray(predictor.frame_features(mono[start:start + step]), dtype=np.float32)
                           for start in range(0, mono.size, step)], axis=0)


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

    A song of more than ``DENSE_TARGET_FRAMES`` frames gets no matrix: the same costs
    (summed in another order) are computed for the jumps asked for (``_JumpCosts``).

    Parameters
    ----------
    predictor : Predictor
        A ``Scorer`` too when it can (``scorer_of``).
    mono : np.ndarray [shape=(n_samples,)], or a DecodedFile
        The song's 22050 Hz mono view.

    Attributes
    ----------
    matrix : np.ndarray [shape=(n + 1, n + 1)] or None
        ``matrix[k, m]``: the cost of leaving at ``k`` s and continuing at ``m`` s (None
        for a long song).
    scored : bool
        Whether the costs come from the model's scores (else from its predictions).
    """

    def __init__(self, predictor: Predictor, mono: np.ndarray) -> None:
        features = _frame_features(predictor, mono)
        n_in = int(predictor.n_input_frames)
        n_out = int(predictor.n_output_frames)
        self.frame_seconds = float(predictor.frame_seconds)
        scorer = scorer_of(predictor)
        self.scored = scorer is not None
        self.n = features.shape[0]
        self.matrix = None
        self._costs = None
        if self.n + 1 > DENSE_TARGET_FRAMES:
            self._costs = _JumpCosts(predictor, scorer, features, n_in, n_out)
            return
        contexts, continuations = _context_windows(features, n_in, n_out)
        if scorer is not None:
            queries = np.asarray(scorer.embed_context(contexts), dtype=np.float64)
            keys = np.asarray(scorer.embed_continuation(continuations), dtype=np.float64)
            cost = -SCORE_SCALE * (queries @ keys.T)
        else:
            cost = _prediction_cost(predictor, features, contexts, continuations)
        self.matrix = cost - np.diag(cost)[:, None]  # relative to the natural continuation

    def for_jumps(self, leave_seconds: np.ndarray, continue_seconds: np.ndarray) -> np.ndarray:
        """Target cost of leaving at ``leave_seconds`` and continuing at ``continue_seconds``."""
        k = np.clip(np.round(leave_seconds / self.frame_seconds).astype(np.int64), 0, self.n)
        m = np.clip(np.round(continue_seconds / self.frame_seconds).astype(np.int64), 0, self.n)
        if self.matrix is not None:
            return self.matrix[k, m]
        return self._costs.relative(k, m)

    def grid(self, leave_seconds: np.ndarray, continue_seconds: np.ndarray) -> np.ndarray:
        """Target costs of every leave time against every continue time [shape=(len(leave), len(continue))]."""
        k = np.clip(np.round(np.asarray(leave_seconds) / self.frame_seconds).astype(np.int64), 0, self.n)
        m = np.clip(np.round(np.asarray(continue_seconds) / self.frame_seconds).astype(np.int64), 0, self.n)
        if self.matrix is not None:
            return self.matrix[np.ix_(k, m)]
        return self._costs.grid(k, m)


class _JumpCosts:
    """The target cost of any jump of a long song, computed when asked (no matrix).

    The model reads the song's contexts and continuations ``_BATCH`` positions at a
    time; a scoring model's embeddings (64 numbers a position) or a predicting model's
    predictions are kept, and a jump ``k -> m`` costs what ``TargetCost.matrix[k, m]``
    would hold: ``-SCORE_SCALE`` times the cosine, or the normalised squared distance,
    minus the same for the natural continuation ``k -> k``.
    """

    def __init__(self, predictor: Predictor, scorer, features: np.ndarray, n_in: int, n_out: int) -> None:
        n = features.shape[0]
        self.padded = np.concatenate([np.repeat(features[:1], n_in, axis=0), features,
                                      np.repeat(features[-1:], n_out, axis=0)], axis=0)
        self.n_in, self.n_out, self.scorer = n_in, n_out, scorer
        batches = [(start, min(n + 1, start + _BATCH)) for start in range(0, n + 1, _BATCH)]
        if scorer is not None:
            self.queries = np.concatenate([np.asarray(scorer.embed_context(self._contexts(lo, hi)), np.float64)
                                           for lo, hi in batches])
            self.keys = np.concatenate([np.asarray(scorer.embed_continuation(self._continuations(lo, hi)),
                                                   np.float64) for lo, hi in batches])
        else:
            self.predicted = np.concatenate([np.asarray(predictor.predict(self._contexts(lo, hi)), np.float32)
                                             for lo, hi in batches])
            self.p_sq = np.concatenate([np.einsum("kjf,kjf->k", part, part) for part in
                                        (self.predicted[lo:hi].astype(np.float64) for lo, hi in batches)])
            frame_sq = np.einsum("kf,kf->k", self.padded.astype(np.float64), self.padded.astype(np.float64))
            # (the continuation from m is frames n_in + m .. n_in + m + n_out - 1 of padded)
            self.c_sq = np.lib.stride_tricks.sliding_window_view(frame_sq[n_in:], n_out)[:n + 1].sum(axis=1)
            scale = float(np.mean((features - features.mean(axis=0)) ** 2)) + 1e-9
            self.norm = n_out * features.shape[1] * scale
        every = np.arange(n + 1)
        self.natural = self.absolute(every, every)

    def _contexts(self, lo: int, hi: int) -> np.ndarray:
        return np.stack([self.padded[k:k + self.n_in] for k in range(lo, hi)])

    def _continuations(self, lo: int, hi: int) -> np.ndarray:
        return np.stack([self.padded[self.n_in + m:self.n_in + m + self.n_out] for m in range(lo, hi)])

    def absolute(self, k: np.ndarray, m: np.ndarray) -> np.ndarray:
        """The cost of continuing at ``m`` after the context before ``k`` (1-D index arrays)."""
        out = np.empty(k.size)
        steps = np.arange(self.n_out)
        for start in range(0, k.size, _BATCH):
            kk, mm = k[start:start + _BATCH], m[start:start + _BATCH]
            if self.scorer is not None:
                out[start:start + _BATCH] = -SCORE_SCALE * np.einsum("kd,kd->k", self.queries[kk], self.keys[mm])
            else:
                p = self.predicted[kk].astype(np.float64)
                c = self.padded[self.n_in + mm[:, None] + steps].astype(np.float64)
                out[start:start + _BATCH] = (self.p_sq[kk] + self.c_sq[mm]
                                             - 2.0 * np.einsum("kjf,kjf->k", p, c)) / self.norm
        return out

    def grid(self, k: np.ndarray, m: np.ndarray) -> np.ndarray:
        """``relative`` of every ``k`` against every ``m`` [shape=(k.size, m.size)]."""
        if self.scorer is not None:
            cost = -SCORE_SCALE * (self.queries[k] @ self.keys.T)
        else:
            if getattr(self, "_flat_continuations", None) is None:  # (once: 2560 numbers a position)
                n = self.predicted.shape[0]
                steps = np.arange(self.n_out)
                self._flat_continuations = self.padded[self.n_in + np.arange(n)[:, None] + steps].reshape(
                    n, -1).astype(np.float64)
            products = self.predicted[k].reshape(k.size, -1).astype(np.float64) @ self._flat_continuations.T
            cost = (self.p_sq[k][:, None] + self.c_sq[None, :] - 2.0 * products) / self.norm
        return cost[:, m] - self.natural[k][:, None]

    def relative(self, k: np.ndarray, m: np.ndarray) -> np.ndarray:
        """``absolute`` minus the natural continuation's, for index arrays of any (broadcast) shape."""
        k, m = np.broadcast_arrays(np.asarray(k), np.asarray(m))
        flat_k, flat_m = k.reshape(-1), m.reshape(-1)
        return (self.absolute(flat_k, flat_m) - self.natural[flat_k]).reshape(k.shape)
