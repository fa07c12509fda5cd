"""The training data of ``harmonizer train``: windows in batches, as ``fit`` takes them.

The window order of each epoch (``_epoch_order``); each window's contrastive candidates,
its true continuation and other segments of the same song (``negative_starts``,
``gather_candidates``); the level and mel-band augmentation (``augment_windows``); one
batch (``_batch``) and the ``tf.data`` pipeline of them, streamed from the preprocessed
shards (``_dataset``). ``training`` runs the optimisation on these; it re-exports the
public names here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harmonizer_cli.core.model import ModelConfig
from harmonizer_cli.core.research.preprocess import ProcessedData
from harmonizer_cli.errors import DataError

__all__ = ["negative_starts", "gather_candidates", "augment_windows", "AUGMENT_GAIN_DB", "AUGMENT_MEL_SHIFT"]


def _epoch_order(n_windows: int, *, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n_windows)


def negative_starts(n_frames: int, start: int, *, n_input: int, n_output: int, n_negatives: int,
                    rng: np.random.Generator) -> np.ndarray | None:
    """First frames of a window's negative segments: the same song, overlapping neither context nor truth.

    Drawn without replacement where the song offers enough segments, with replacement
    where it offers fewer; None where it offers none.

    Returns
    -------
    np.ndarray [shape=(n_negatives,), dtype=int64] or None
    """
    truth = start + n_input
    allowed = np.concatenate([np.arange(0, start - n_output + 1),
                              np.arange(truth + n_output, n_frames - n_output + 1)]).astype(np.int64)
    if len(allowed) == 0:
        return None
    return rng.choice(allowed, n_negatives, replace=len(allowed) < n_negatives).astype(np.int64)


def gather_candidates(data: ProcessedData, split: str, index: np.ndarray, *, n_negatives: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Each window's true continuation and ``n_negatives`` other segments of its song.

    A song too short to offer any other segment lends segments of another song of the
    split (drawn from ``rng``). The last (zero-padded) frame of a song is never used
    for a negative.

    Returns
    -------
    np.ndarray [shape=(len(index), 1 + n_negatives, n_output, frame_size), dtype=float32]
        The truth first.
    """
    songs = data.songs(split)
    n_in, n_out = data.n_input, data.n_output
    out = np.empty((len(index), 1 + n_negatives, n_out, data.frame_size), dtype=np.float32)
    for row, (song, start) in enumerate(index):
        frames = data.frames(songs[int(song)])
        out[row, 0] = frames[int(start) + n_in:int(start) + n_in + n_out]
        starts = negative_starts(frames.shape[0] - 1, int(start), n_input=n_in, n_output=n_out,
                                 n_negatives=n_negatives, rng=rng)
        if starts is None:  # borrow from another song long enough for one segment
            others = [i for i, s in enumerate(songs) if i != int(song) and s["n_frames"] > n_out]
            frames = data.frames(songs[others[int(rng.integers(len(others)))]] if others else songs[int(song)])
            starts = rng.integers(0, frames.shape[0] - n_out + 1, n_negatives)
        for k, first in enumerate(starts):
            out[row, 1 + k] = frames[int(first):int(first) + n_out]
    return out


#: Augmentation: the largest level change (dB) and mel-band shift applied to a training window.
AUGMENT_GAIN_DB = 6.0
AUGMENT_MEL_SHIFT = 2


def augment_windows(arrays: list[np.ndarray], *, n_mels: int, rng: np.random.Generator) -> None:
    """Change the level and shift the mel bands of each window, alike in all its arrays (in place).

    Each window ``i`` (the first axis of every array) gets one gain, uniform within
    ``AUGMENT_GAIN_DB`` dB (added to the natural-log power), and one shift of the mel
    bands by ``-AUGMENT_MEL_SHIFT .. AUGMENT_MEL_SHIFT`` bands (a rough pitch shift;
    the edge band fills the gap): its context, its continuation and its candidates
    stay consistent, so which segment follows is unchanged.

    Parameters
    ----------
    arrays : list of np.ndarray [shape=(batch, ..., n_steps * n_mels)]
        Log-mel frames, step-major.
    """
    batch = arrays[0].shape[0]
    gains = rng.uniform(-AUGMENT_GAIN_DB, AUGMENT_GAIN_DB, batch) * (np.log(10.0) / 10.0)
    shifts = rng.integers(-AUGMENT_MEL_SHIFT, AUGMENT_MEL_SHIFT + 1, batch)
    for array in arrays:
        bands = array.reshape(*array.shape[:-1], -1, n_mels)
        for i in range(batch):
            k = int(shifts[i])
            if k > 0:
                bands[i, ..., k:] = bands[i, ..., :-k].copy()
                bands[i, ..., :k] = bands[i, ..., k:k + 1]
            elif k < 0:
                bands[i, ..., :k] = bands[i, ..., -k:].copy()
                bands[i, ..., k:] = bands[i, ..., k - 1:k]
            bands[i] += np.float32(gains[i])


def _batch(data: ProcessedData, split: str, index: np.ndarray, *, model_config: ModelConfig,
           n_negatives: int, rng: np.random.Generator, augment: bool = False) -> tuple:
    """One batch as ``fit`` takes it: (inputs, targets), dicts for the contrastive objectives."""
    inputs, targets = data.gather(split, index)
    candidates = None
    if model_config.has_embedding:
        candidates = gather_candidates(data, split, index, n_negatives=n_negatives, rng=rng)
    if augment:
        augment_windows([a for a in (inputs, targets, candidates) if a is not None],
                        n_mels=model_config.logmel_spec.n_mels, rng=rng)
    if candidates is None:
        return inputs, targets
    x = {"context_frames": inputs, "candidate_frames": candidates}
    y = {"embeddings": np.zeros(len(index), np.float32)}
    if model_config.objective == "both":
        y["frames"] = targets
    return x, y


def _dataset(data: ProcessedData, split: str, index: np.ndarray, *, batch_size: int, n_workers: int,
             model_config: ModelConfig, n_negatives: int, rng_key: tuple[int, int],
             augment: bool = False) -> Any:
    """tf.data.Dataset of batches read from the shards in ``index`` order.

    ``rng_key`` seeds the negatives of batch ``b`` as ``default_rng([*rng_key, b])``.
    """
    import tensorflow as tf

    usable = (len(index) // (batch_size * n_workers)) * batch_size * n_workers if n_workers > 1 else len(index)
    if usable == 0:
        raise DataError(f"fewer {split} windows ({len(index)}) than one batch per worker "
                        f"({batch_size} x {n_workers})", path=data.folder)
    index = index[:usable]

    def batches():
        for number, start in enumerate(range(0, len(index), batch_size)):
            yield _batch(data, split, index[start:start + batch_size], model_config=model_config,
                         n_negatives=n_negatives, rng=np.random.default_rng([*rng_key, number]),
                         augment=augment)

    frames = tf.TensorSpec((None, data.n_input, data.frame_size), tf.float32)
    targets = tf.TensorSpec((None, data.n_output, data.frame_size), tf.float32)
    if model_config.has_embedding:
        inputs = {"context_frames": frames, "candidate_frames": tf.TensorSpec(
            (None, 1 + n_negatives, data.n_output, data.frame_size), tf.float32)}
        outputs = {"embeddings": tf.TensorSpec((None,), tf.float32)}
        if model_config.objective == "both":
            outputs["frames"] = targets
        signature = (inputs, outputs)
    else:
        signature = (frames, targets)
    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA if n_workers > 1
        else tf.data.experimental.AutoShardPolicy.OFF)
    options.deterministic = True
    n_batches = -(-usable // batch_size)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(n_batches))
    return dataset.with_options(options).prefetch(2), n_batches
