"""Model guidance: a target cost for each jump, from a predictor of what comes next.

As in unit-selection synthesis, a jump has a *seam* cost (how well the two sides
join, ``candidates``) and a *target* cost (how well what follows the landing fits
what should come next). The target cost comes from a trained model
(``core._typing.Predictor``); without one the engine plans on similarity alone.
"""

from __future__ import annotations

import numpy as np

from harmonizer_cli.core._typing import Predictor

__all__ = ["TargetCost", "TARGET_WEIGHT"]

#: Weight of the model's target cost beside the seam (context) cost.
TARGET_WEIGHT = 0.5


class TargetCost:
    """Distance between the model's predicted next 10 s and a candidate continuation.

    The model predicts, once per song and in one batch, the next ``n_output_frames``
    frames after every 1 s position of the song from the ``n_input_frames`` before
    it. A jump that leaves the source at ``t_a`` and continues at ``t_b`` is then
    charged the distance between the prediction at ``t_a`` and the song's frames
    from ``t_b``, minus the distance to its natural continuation (frames from
    ``t_a``): how much less expected the jump is than the song itself. The context
    is the source's own 20 s before the jump, which is the path's own when the
    current segment is at least 20 s long and an approximation otherwise; it keeps
    the guidance to one prediction batch per song.

    Parameters
    ----------
    predictor : Predictor
    mono : np.ndarray [shape=(n_samples,)]
        The song's 22050 Hz mono view.
    """

    def __init__(self, predictor: Predictor, mono: np.ndarray) -> None:
        features = np.asarray(predictor.frame_features(mono), dtype=np.float32)
        n_in = int(predictor.n_input_frames)
        n_out = int(predictor.n_output_frames)
        self.frame_seconds = float(predictor.frame_seconds)
        n = features.shape[0]
        padded = np.concatenate([np.repeat(features[:1], n_in, axis=0), features,
                                 np.repeat(features[-1:], n_out, axis=0)], axis=0)
        # context ending at frame k (exclusive) for k = 0..n
        contexts = np.stack([padded[k:k + n_in] for k in range(n + 1)])
        predicted = np.asarray(predictor.predict(contexts), dtype=np.float32)  # [n+1, n_out, F]
        continuations = np.stack([padded[n_in + m: n_in + m + n_out] for m in range(n + 1)])
        scale = float(np.mean((features - features.mean(axis=0)) ** 2)) + 1e-9
        cost = np.zeros((n + 1, n + 1))
        for j in range(n_out):
            p, c = predicted[:, j].astype(np.float64), continuations[:, j].astype(np.float64)
            cost += (np.sum(p * p, axis=1)[:, None] + np.sum(c * c, axis=1)[None, :] - 2.0 * p @ c.T)
        cost /= n_out * features.shape[1] * scale
        self.matrix = cost - np.diag(cost)[:, None]  # relative to the natural continuation
        self.n = n

    def for_jumps(self, leave_seconds: np.ndarray, continue_seconds: np.ndarray) -> np.ndarray:
        """Target cost of leaving at ``leave_seconds`` and continuing at ``continue_seconds``."""
        k = np.clip(np.round(leave_seconds / self.frame_seconds).astype(np.int64), 0, self.n)
        m = np.clip(np.round(continue_seconds / self.frame_seconds).astype(np.int64), 0, self.n)
        return self.matrix[k, m]
