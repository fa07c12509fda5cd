"""The ranking measure: of the places a song could go next, does the model pick the real one?

What ``extend`` needs from a model is a judgement between continuations, so it is
measured as one. For each window of a song (20 frames of context, the true next
10 frames), ``n_candidates - 1`` other 10-frame segments of the same song are drawn
(seeded, starts on the 1 s grid, distinct) among those that overlap neither the
context nor the truth; each method scores the ``n_candidates`` segments and the rank
of the truth among them is recorded:

- ``model``: the model's own score. A model with an embedding head
  (``Scorer``, the contrastive objectives) scores a candidate by the cosine between
  its context embedding and the candidate's continuation embedding; a model without
  one by minus the mean squared error between its predicted 10 frames and the
  candidate's.
- ``similarity``: what ``extend`` does without a model, a local join: the cosine
  between the context's last ``SIMILARITY_FRAMES`` frames and the candidate's first
  ``SIMILARITY_FRAMES``, as log-mel vectors centred on the song's mean frame.
- ``random``: chance, ``1 / n_candidates`` top-1 and ``H(n) / n`` mean reciprocal rank
  (exact expectations, not draws).

Ties are broken at random in expectation: a truth tied with ``t`` others and below
``g`` is top-1 with probability ``1 / (t + 1)`` when ``g = 0`` and has reciprocal
rank ``mean(1 / (g + 1 + j) for j in 0..t)``. Windows of a song too short to offer
``n_candidates - 1`` such segments are skipped (``n_skipped``).

The last frame of a song (zero-padded) is left out, as in ``evaluation``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from harmonizer_cli.core._typing import ProgressFn, scorer_of
from harmonizer_cli.core.features import LogMelSpec, logmel_frames
from harmonizer_cli.errors import DataError

__all__ = ["RANKING_CANDIDATES", "SIMILARITY_FRAMES", "RankingReport", "candidate_starts",
           "similarity_scores", "model_scores", "truth_ranks", "rank_songs"]

#: Candidates per window, the true continuation included (the issue's N).
RANKING_CANDIDATES = 16
#: Frames (seconds) compared on either side of the join by the similarity baseline.
SIMILARITY_FRAMES = 1
METHODS = ("model", "similarity")


@dataclass
class RankingReport:
    """Top-1 accuracy and mean reciprocal rank of the truth, per method.

    Attributes
    ----------
    candidates : int
        Candidates per window (N), the truth included.
    n_windows, n_songs, n_skipped : int
        Windows ranked, songs they came from, windows skipped (too few candidates).
    top1, mrr : dict[str, float]
        Per method (``model`` when a predictor was given, ``similarity``, ``random``).
    per_song : dict[str, dict]
        ``{"windows", "model_top1", "similarity_top1"}`` of each song.
    """

    candidates: int = RANKING_CANDIDATES
    n_windows: int = 0
    n_songs: int = 0
    n_skipped: int = 0
    top1: dict = field(default_factory=dict)
    mrr: dict = field(default_factory=dict)
    per_song: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The ``"ranking"`` object of ``evaluate --json``."""
        values = {"candidates": self.candidates, "n_windows": self.n_windows, "n_songs": self.n_songs,
                  "n_skipped": self.n_skipped}
        for method in (*METHODS, "random"):
            values[f"{method}_top1"] = self.top1.get(method)
            values[f"{method}_mrr"] = self.mrr.get(method)
        values["per_song"] = self.per_song
        return values


def candidate_starts(n_frames: int, start: int, *, n_input: int = 20, n_output: int = 10,
                     n_candidates: int = RANKING_CANDIDATES,
                     rng: np.random.Generator) -> np.ndarray | None:
    """First frames of a window's candidates: the truth first, then ``n_candidates - 1`` others.

    Parameters
    ----------
    n_frames : int
        Usable frames of the song.
    start : int
        First context frame of the window; the truth starts at ``start + n_input``.
    rng : np.random.Generator

    Returns
    -------
    np.ndarray [shape=(n_candidates,), dtype=int64] or None
        None when the song offers fewer than ``n_candidates - 1`` segments of
        ``n_output`` frames that overlap neither the context nor the truth.
    """
    truth = start + n_input
    before = np.arange(0, start - n_output + 1)
    after = np.arange(truth + n_output, n_frames - n_output + 1)
    allowed = np.concatenate([before, after]).astype(np.int64)
    if len(allowed) < n_candidates - 1 or truth + n_output > n_frames:
        return None
    others = rng.choice(allowed, n_candidates - 1, replace=False)
    return np.concatenate([[truth], others]).astype(np.int64)


def _centred_join(features: np.ndarray, n_join: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors of the last ``n_join`` frames before and the first from each frame.

    Returns
    -------
    ends, beginnings : np.ndarray [shape=(n_frames + 1, n_join * frame_size)]
        ``ends[t]``: frames ``t - n_join .. t - 1`` (zeros where there are too few);
        ``beginnings[t]``: frames ``t .. t + n_join - 1``.
    """
    centred = features - features.mean(axis=0, keepdims=True)
    n, size = centred.shape
    padded = np.concatenate([np.zeros((n_join, size), centred.dtype), centred,
                             np.zeros((n_join, size), centred.dtype)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, (n_join, size))[:, 0].reshape(-1, n_join * size)
    ends, beginnings = windows[: n + 1], windows[n_join: n_join + n + 1]
    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    return unit(ends), unit(beginnings)


def similarity_scores(logmel: np.ndarray, context_ends: np.ndarray, starts: np.ndarray, *,
                      n_join: int = SIMILARITY_FRAMES) -> np.ndarray:
    """The similarity baseline's score of each candidate.

    Parameters
    ----------
    logmel : np.ndarray [shape=(n_frames, frame_size)]
        The song's log-mel frames.
    context_ends : np.ndarray [shape=(n_windows,), dtype=int]
        Frame after each window's context.
    starts : np.ndarray [shape=(n_windows, n_candidates), dtype=int]
        Candidates' first frames.

    Returns
    -------
    np.ndarray [shape=(n_windows, n_candidates)]
        Cosine between the centred last ``n_join`` context frames and each candidate's first.
    """
    ends, beginnings = _centred_join(np.asarray(logmel, dtype=np.float64), n_join)
    return np.einsum("wd,wcd->wc", ends[context_ends], beginnings[starts])


def model_scores(predictor: object, frames: np.ndarray, context_starts: np.ndarray,
                 starts: np.ndarray) -> np.ndarray:
    """The model's score of each candidate (higher: more likely the real continuation).

    Parameters
    ----------
    predictor : Predictor
        With an embedding head (``_typing.Scorer``): the cosine of the embeddings;
        otherwise minus the mean squared error of its prediction.
    frames : np.ndarray [shape=(n_frames, frame_size)]
        The song in the predictor's representation.
    context_starts : np.ndarray [shape=(n_windows,), dtype=int]
    starts : np.ndarray [shape=(n_windows, n_candidates), dtype=int]

    Returns
    -------
    np.ndarray [shape=(n_windows, n_candidates)]
    """
    n_in, n_out = int(predictor.n_input_frames), int(predictor.n_output_frames)
    frames = np.asarray(frames, dtype=np.float32)
    contexts = np.stack([frames[s: s + n_in] for s in context_starts])
    used = np.unique(starts)
    segments = np.stack([frames[s: s + n_out] for s in used])
    position = np.searchsorted(used, starts)
    scorer = scorer_of(predictor)
    if scorer is not None:
        queries = scorer.embed_context(contexts)
        keys = scorer.embed_continuation(segments)
        return np.einsum("wd,wcd->wc", queries, keys[position]).astype(np.float64)
    predicted = np.asarray(predictor.predict(contexts), dtype=np.float32)
    scores = np.empty(starts.shape)
    for w in range(len(starts)):
        scores[w] = -np.mean((segments[position[w]] - predicted[w][None]) ** 2, axis=(1, 2))
    return scores


def truth_ranks(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expected top-1 and reciprocal rank of candidate 0 (the truth) in each row, ties at random.

    Parameters
    ----------
    scores : np.ndarray [shape=(n_windows, n_candidates)]

    Returns
    -------
    top1, reciprocal : np.ndarray [shape=(n_windows,)]
    """
    scores = np.asarray(scores, dtype=np.float64)
    truth = scores[:, :1]
    greater = np.sum(scores[:, 1:] > truth, axis=1)
    ties = np.sum(scores[:, 1:] == truth, axis=1)
    top1 = np.where(greater == 0, 1.0 / (ties + 1), 0.0)
    reciprocal = np.array([np.mean(1.0 / (g + 1 + np.arange(t + 1))) for g, t in zip(greater, ties)])
    return top1, reciprocal


def _song_windows(n_frames: int, *, hop: int, n_in: int, n_out: int, n_candidates: int,
                  rng_key: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, int]:
    """Context starts and candidate starts of a song's rankable windows, and the skipped count."""
    contexts, rows, skipped = [], [], 0
    for start in range(0, n_frames - n_in - n_out + 1, hop):
        rng = np.random.default_rng([*rng_key, start])
        starts = candidate_starts(n_frames, start, n_input=n_in, n_output=n_out,
                                  n_candidates=n_candidates, rng=rng)
        if starts is None:
            skipped += 1
            continue
        contexts.append(start)
        rows.append(starts)
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, n_candidates), np.int64), skipped
    return np.asarray(contexts, np.int64), np.stack(rows), skipped


def rank_songs(
    songs: Iterable[tuple[str, np.ndarray]],
    *,
    predictor: object | None = None,
    representation: str = "logmel",
    n_candidates: int = RANKING_CANDIDATES,
    hop: int = 2,
    seed: int = 0,
    similarity_frames: int = SIMILARITY_FRAMES,
    spec: LogMelSpec = LogMelSpec(),
    on_progress: ProgressFn = None,
    n_songs: int | None = None,
) -> RankingReport:
    """Rank the true continuation among other segments of the same song, for every window.

    Parameters
    ----------
    songs : iterable of (name, np.ndarray [shape=(n_frames, frame_size)])
        Each song's frames in ``representation`` (a preprocessed shard), the last
        (zero-padded) frame included; it is left out.
    predictor : Predictor, optional
        Without one only the similarity baseline (and chance) are reported.
    representation : {"logmel", "waveform"}
        Of the frames; waveform frames are turned into log-mel for the baseline.
    n_candidates : int
        N, the truth included (at least 2).
    hop : int
        Frames between window starts.
    seed : int
        Seeds the candidates (per song position and window start).
    similarity_frames : int
        Frames either side of the join compared by the similarity baseline.
    on_progress : callable(done, total), optional
        After each song.

    Returns
    -------
    RankingReport

    Raises
    ------
    DataError
        If no window of any song can be ranked.
    """
    if n_candidates < 2:
        raise DataError(f"ranking needs at least 2 candidates, got {n_candidates}")
    n_in, n_out = 20, 10
    if predictor is not None:
        n_in, n_out = int(predictor.n_input_frames), int(predictor.n_output_frames)
    report = RankingReport(candidates=n_candidates)
    results: dict[str, list] = {m: [] for m in METHODS}
    for index, (name, frames) in enumerate(songs):
        frames = np.asarray(frames, dtype=np.float32)[:-1]
        context_starts, starts, skipped = _song_windows(
            frames.shape[0], hop=hop, n_in=n_in, n_out=n_out, n_candidates=n_candidates,
            rng_key=(seed, index))
        report.n_skipped += skipped
        if len(starts):
            logmel = frames if representation == "logmel" else logmel_frames(frames, spec=spec)
            song: dict[str, list] = {"similarity": similarity_scores(
                logmel, context_starts + n_in, starts, n_join=similarity_frames)}
            if predictor is not None:
                song["model"] = model_scores(predictor, frames, context_starts, starts)
            record = {"windows": int(len(starts))}
            for method, scores in song.items():
                top1, reciprocal = truth_ranks(scores)
                results[method].append((top1, reciprocal))
                record[f"{method}_top1"] = round(float(top1.mean()), 4)
            report.per_song[name] = record
            report.n_windows += len(starts)
            report.n_songs += 1
        if on_progress is not None:
            on_progress(index + 1, n_songs or index + 1)
    if report.n_windows == 0:
        raise DataError(f"no song is long enough to rank a window against {n_candidates - 1} other "
                        f"segments (at least {n_in + 2 * n_out + n_candidates - 1} s)")
    for method, parts in results.items():
        if parts:
            report.top1[method] = float(np.concatenate([p[0] for p in parts]).mean())
            report.mrr[method] = float(np.concatenate([p[1] for p in parts]).mean())
    report.top1["random"] = 1.0 / n_candidates
    report.mrr["random"] = float(np.sum(1.0 / np.arange(1, n_candidates + 1)) / n_candidates)
    return report
