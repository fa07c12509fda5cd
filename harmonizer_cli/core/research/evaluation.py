"""Held-out evaluation of a model against trivial baselines, in the same run.

For windows of held-out songs (20 s in, 10 s out) every method predicts the next
10 seconds; each prediction is scored against the real continuation:

- ``waveform_mse``: mean squared sample error per 1-second frame (the seed paper's
  metric). A logmel model predicts spectra, not phase: its frames are rendered with
  Griffin-Lim first, so its waveform MSE is reported for completeness only.
- ``logmel_distance_db``: RMS difference of the log-mel frames, in dB (lower is better).
- ``chroma_similarity``: cosine similarity of per-step chroma (harmony), 0-1.
- ``mfcc_similarity``: cosine similarity of per-step MFCCs without c0 (timbre), -1..1.

Baselines: ``silence``; ``repeat-last-10s`` (the input's last 10 s again);
``nearest-earlier-10s`` (find the earlier moment of the same song whose preceding
5 s best match the last 5 s, log-mel distance, and copy the 10 s that followed it).

``evaluate_model`` also reports the ranking measure (``ranking``): for every window
of the split, the true next 10 s against other segments of the same song, ranked
by the model, by similarity and by chance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from harmonizer_cli.core._typing import ProgressFn
from harmonizer_cli.core.features import LogMelSpec, logmel_frames, mel_filterbank
from harmonizer_cli.core.framing import frame_audio
from harmonizer_cli.errors import DataError

__all__ = ["METRICS", "BASELINES", "EvaluationReport", "evaluate_songs", "evaluate_model", "frame_scores", "write_plots"]

METRICS = ("waveform_mse", "logmel_distance_db", "chroma_similarity", "mfcc_similarity")
BASELINES = ("silence", "repeat-last-10s", "nearest-earlier-10s")
_DB_PER_NEPER = 10.0 / np.log(10.0)  # natural-log power to dB
_MATCH_SECONDS = 5


@dataclass
class EvaluationReport:
    """Per-method mean of each metric over the evaluated windows.

    Attributes
    ----------
    rows : dict[str, dict[str, float]]
        ``rows[method][metric]``; methods are the model's name then the baselines.
    n_windows, n_songs : int
    per_window : dict[str, dict[str, list[float]]]
        Every window's score, for plots and confidence intervals.
    """

    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    n_windows: int = 0
    n_songs: int = 0
    per_window: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"n_windows": self.n_windows, "n_songs": self.n_songs, "metrics": list(METRICS),
                "rows": self.rows}


def _chroma_matrix(spec: LogMelSpec) -> np.ndarray:
    """(n_mels, 12): each mel band's share of each pitch class (bands 55 Hz-5 kHz)."""
    filters = mel_filterbank(spec)  # (n_mels, n_bins)
    bin_hz = np.linspace(0.0, spec.sample_rate / 2, filters.shape[1])
    usable = (bin_hz >= 55.0) & (bin_hz <= 5000.0)
    pitch_class = np.zeros((filters.shape[1], 12), dtype=np.float64)
    midi = 69 + 12 * np.log2(np.maximum(bin_hz[usable], 1e-6) / 440.0)
    pitch_class[np.flatnonzero(usable), np.round(midi).astype(int) % 12] = 1.0
    matrix = filters.astype(np.float64) @ pitch_class
    return (matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _dct_matrix(n_mels: int, n_coefficients: int = 20) -> np.ndarray:
    k = np.arange(n_coefficients)[:, None]
    n = np.arange(n_mels)[None, :]
    return np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels)).astype(np.float32)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.where(norms > 1e-12, (a * b).sum(axis=-1) / np.maximum(norms, 1e-12), 0.0)


def frame_scores(
    predicted: np.ndarray, actual: np.ndarray, *, spec: LogMelSpec = LogMelSpec()
) -> dict[str, float]:
    """Spectral scores of predicted log-mel frames against the actual ones.

    Parameters
    ----------
    predicted, actual : np.ndarray [shape=(n_frames, n_mels * n_steps)]
        ``features.logmel_frames`` vectors.

    Returns
    -------
    dict
        ``logmel_distance_db``, ``chroma_similarity``, ``mfcc_similarity`` (means).
    """
    shape = (-1, spec.n_steps, spec.n_mels)
    p = np.asarray(predicted, dtype=np.float32).reshape(shape)
    a = np.asarray(actual, dtype=np.float32).reshape(shape)
    distance = float(np.sqrt(np.mean((p - a) ** 2)) * _DB_PER_NEPER)
    chroma = _chroma_matrix(spec)
    p_chroma = np.maximum(np.exp(p) - spec.log_floor, 0.0) @ chroma
    a_chroma = np.maximum(np.exp(a) - spec.log_floor, 0.0) @ chroma
    dct = _dct_matrix(spec.n_mels)[1:]  # drop c0 (loudness)
    return {
        "logmel_distance_db": distance,
        "chroma_similarity": float(np.mean(_cosine(p_chroma, a_chroma))),
        "mfcc_similarity": float(np.mean(_cosine(p @ dct.T, a @ dct.T))),
    }


def _nearest_earlier(features: np.ndarray, frames: np.ndarray, start: int, n_in: int, n_out: int) -> np.ndarray:
    """The 10 s that followed the earlier moment most like the last 5 s before ``start + n_in``."""
    now = start + n_in
    query = features[now - _MATCH_SECONDS : now]
    best, best_distance = None, np.inf
    for t in range(_MATCH_SECONDS, now - n_out + 1):  # the copied stretch ends before now
        distance = float(np.mean((features[t - _MATCH_SECONDS : t] - query) ** 2))
        if distance < best_distance:
            best, best_distance = t, distance
    if best is None:  # not enough past: fall back to repeating the last 10 s
        best = now - n_out
    return frames[best : best + n_out]


def evaluate_songs(
    songs: Iterable[tuple[str, np.ndarray]],
    *,
    predictor: object | None = None,
    hop_seconds: int = 10,
    max_windows: int | None = None,
    waveform_mse_windows: int = 24,
    spec: LogMelSpec = LogMelSpec(),
    on_progress: ProgressFn = None,
    n_songs: int | None = None,
) -> EvaluationReport:
    """Score the model and the baselines on (20 s in, 10 s out) windows of songs.

    Parameters
    ----------
    songs : iterable of (name, np.ndarray [shape=(n_samples,)])
        Held-out songs as 22050 Hz mono audio.
    predictor : FramePredictor, optional
        ``predictor.load_predictor`` result; without one only baselines are scored.
    hop_seconds : int
        Seconds between window starts within a song.
    max_windows : int, optional
        Stop after this many windows in all.
    waveform_mse_windows : int
        For a logmel model, render (Griffin-Lim, slow) and score waveform MSE on at
        most this many windows; the other methods use every window.
    on_progress : callable(done, total), optional
        Called after each song; ``total`` is ``n_songs`` when known.

    Returns
    -------
    EvaluationReport

    Raises
    ------
    DataError
        If no song is long enough for one window (30 s).
    """
    n_in, n_out = 20, 10
    if predictor is not None:
        n_in, n_out = predictor.n_input_frames, predictor.n_output_frames
    model_name = None if predictor is None else f"model ({predictor.name})"
    methods = ([model_name] if model_name else []) + list(BASELINES)
    scores: dict[str, dict[str, list[float]]] = {m: {k: [] for k in METRICS} for m in methods}
    report = EvaluationReport()
    rendered = 0
    for song_index, (name, mono) in enumerate(songs):
        frames = frame_audio(np.asarray(mono, dtype=np.float32))
        n_frames = frames.shape[0] - 1  # the last frame is zero-padded: leave it out
        if n_frames < n_in + n_out:
            continue
        features = logmel_frames(frames, spec=spec)
        model_features = None
        if predictor is not None:
            model_features = features if predictor.representation == "logmel" else frames
        report.n_songs += 1
        for start in range(0, n_frames - n_in - n_out + 1, hop_seconds):
            if max_windows is not None and report.n_windows >= max_windows:
                break
            now = start + n_in
            actual_frames = frames[now : now + n_out]
            actual_features = features[now : now + n_out]
            candidates: dict[str, tuple[np.ndarray | None, np.ndarray]] = {
                "silence": (np.zeros_like(actual_frames), None),
                "repeat-last-10s": (frames[now - n_out : now], None),
                "nearest-earlier-10s": (_nearest_earlier(features, frames, start, n_in, n_out), None),
            }
            if predictor is not None:
                predicted = predictor.predict(model_features[None, start:now])[0]
                if predictor.representation == "logmel":
                    audio = None
                    if rendered < waveform_mse_windows:
                        audio = predictor.render_frames(predicted).reshape(n_out, -1)
                        rendered += 1
                    candidates[model_name] = (audio, predicted)
                else:
                    candidates[model_name] = (predicted, None)
            for method, (audio, predicted_features) in candidates.items():
                if predicted_features is None:
                    predicted_features = logmel_frames(audio, spec=spec)
                for metric, value in frame_scores(predicted_features, actual_features, spec=spec).items():
                    scores[method][metric].append(value)
                if audio is not None:
                    scores[method]["waveform_mse"].append(float(np.mean((audio - actual_frames) ** 2)))
            report.n_windows += 1
        if on_progress is not None:
            on_progress(song_index + 1, n_songs or song_index + 1)
        if max_windows is not None and report.n_windows >= max_windows:
            break
    if report.n_windows == 0:
        raise DataError("no held-out song is long enough for one window (20 s in + 10 s out)")
    report.per_window = scores
    report.rows = {
        method: {metric: (float(np.mean(values)) if values else float("nan"))
                 for metric, values in metric_values.items()}
        for method, metric_values in scores.items()
    }
    return report


def _spectrogram_figure(features: np.ndarray, title: str, *, spec: LogMelSpec, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from harmonizer_cli.core.audio_out import atomic_output

    image = (features.reshape(-1, spec.n_steps, spec.n_mels).reshape(-1, spec.n_mels).T
             * _DB_PER_NEPER)
    seconds = features.shape[0]
    figure = Figure(figsize=(max(4.0, 0.4 * seconds), 3.2), dpi=100)
    axis = figure.add_subplot()
    shown = axis.imshow(image, origin="lower", aspect="auto", cmap="magma",
                        extent=(0, seconds, 0, spec.n_mels), vmin=image.max() - 80, vmax=image.max())
    axis.set_xlabel("seconds")
    axis.set_ylabel("mel band")
    axis.set_title(title)
    figure.colorbar(shown, ax=axis, label="dB")
    figure.tight_layout()
    with atomic_output(path, overwrite=True) as tmp:
        figure.savefig(tmp, format="png")


def write_plots(
    plots_dir: Path, *, predictor: object, song_features: np.ndarray, start: int, model_folder: Path | None,
    spec: LogMelSpec = LogMelSpec(),
) -> list[Path]:
    """The paper's Figures 6-9 as PNG: loss curve, input, predicted and actual continuation.

    Parameters
    ----------
    plots_dir : Path
        Created if missing.
    song_features : np.ndarray [shape=(n_frames, frame_size)]
        A held-out song in the model's representation.
    start : int
        First input frame of the window shown.
    model_folder : Path, optional
        Where ``history.json`` is (the loss curve is skipped without it).

    Returns
    -------
    list of Path
        The files written.
    """
    import json

    from harmonizer_cli.core.research.training import plot_history

    plots_dir.mkdir(parents=True, exist_ok=True)
    n_in, n_out = predictor.n_input_frames, predictor.n_output_frames
    context = song_features[start : start + n_in]
    actual = song_features[start + n_in : start + n_in + n_out]
    predicted = predictor.predict(context[None])[0]
    if predictor.representation == "waveform":  # show every representation as log-mel
        context, actual, predicted = (logmel_frames(x, spec=spec) for x in (context, actual, predicted))
    written = []
    history = None if model_folder is None else model_folder / "history.json"
    if history is not None and history.is_file():
        document = json.loads(history.read_text())
        epochs = document.get("history", document) if isinstance(document, dict) else document
        plot_history(epochs, plots_dir / "figure6_loss.png")
        written.append(plots_dir / "figure6_loss.png")
    for name, frames, title in (
        ("figure7_input.png", context, f"input: {n_in} s"),
        ("figure8_predicted.png", predicted, f"predicted continuation: {n_out} s"),
        ("figure9_actual.png", actual, f"actual continuation: {n_out} s"),
    ):
        _spectrogram_figure(frames, title, spec=spec, path=plots_dir / name)
        written.append(plots_dir / name)
    return written


def _ranking(processed: object, records: list[dict], predictor: object, *, n_candidates: int, seed: int,
             load_mono: object, on_progress: ProgressFn) -> dict:
    """The ranking measure on the records' songs: from their shards, or their audio in another representation.

    Songs too short for one ranked window give ``n_windows`` 0 and a ``skipped_reason``.
    """
    from harmonizer_cli.core.research.ranking import rank_songs

    def songs() -> Iterable[tuple[str, np.ndarray]]:
        for record in records:
            if processed.representation == predictor.representation:
                yield record["id"], processed.frames(record)
            else:
                yield record["id"], predictor.frame_features(load_mono(record))

    try:
        report = rank_songs(songs(), predictor=predictor, representation=predictor.representation,
                            n_candidates=n_candidates, hop=processed.hop, seed=seed,
                            on_progress=on_progress, n_songs=len(records))
    except DataError as exc:  # songs too short to rank: the rest of the evaluation still stands
        return {"candidates": n_candidates, "n_windows": 0, "n_songs": 0, "skipped_reason": exc.message}
    return report.to_dict()


def evaluate_model(
    *,
    model: str | Path | None = None,
    data: str | Path = "data/processed",
    split: str = "test",
    plots: str | Path | None = None,
    hop_seconds: int = 10,
    max_windows: int | None = 400,
    ranking_candidates: int = 16,
    ranking_seed: int = 0,
    on_progress: ProgressFn = None,
) -> dict:
    """Evaluate a model folder on a preprocessed split, with the baselines and the ranking measure.

    The split's songs are decoded again from their source files (listed in the
    manifest), so every method is scored on audio as well as on features. The
    ranking measure (``ranking.rank_songs``) reads every window of the manifest's
    hop grid from the shards.

    Parameters
    ----------
    model : path, optional
        Model folder; ``None`` is the shipped default.
    data : path
        Output folder of ``harmonizer preprocess``.
    split : {"train", "validation", "test", "all"}
        ``all``: every song with a window (a folder preprocessed with ``--test 1.0``
        holds only test songs; ``all`` reads any folder whole).
    plots : path, optional
        Folder for the Figure 6-9 PNGs.
    ranking_candidates : int
        N of the ranking measure, the truth included.
    ranking_seed : int
        Seed of the ranking's candidates.
    on_progress : callable(done, total), optional
        Songs done, the ranking's pass then the table's (total: twice the songs).

    Returns
    -------
    dict
        ``EvaluationReport.to_dict()`` plus ``ranking`` (``RankingReport.to_dict()``),
        ``model``, ``split``, ``data`` and ``plots``.

    Raises
    ------
    ModelError
        The model cannot be loaded.
    DataError
        No manifest, an empty split, or a source file that is gone.
    """
    from harmonizer_cli.core.audio_io import load_audio, to_model_view
    from harmonizer_cli.core.model import default_model_path, load_predictor
    from harmonizer_cli.core.research.preprocess import ProcessedData
    from harmonizer_cli.errors import AudioError

    predictor = load_predictor(model)
    processed = ProcessedData(data)
    records = processed.songs(split)
    if not records:
        raise DataError(f"the {split} split has no songs", path=processed.folder)

    def load_mono(record: dict) -> np.ndarray:
        try:
            audio = load_audio(record["source"])
        except AudioError as exc:
            raise DataError(f"cannot read the source of song {record['id']} ({exc.message})",
                            path=record["source"]) from exc
        return to_model_view(audio)

    n = len(records)
    ranking = _ranking(processed, records, predictor, n_candidates=ranking_candidates, seed=ranking_seed,
                       load_mono=load_mono,
                       on_progress=None if on_progress is None else lambda done, total: on_progress(done, 2 * n))
    report = evaluate_songs(((record["id"], load_mono(record)) for record in records), predictor=predictor,
                            hop_seconds=hop_seconds, max_windows=max_windows, n_songs=n,
                            on_progress=None if on_progress is None
                            else lambda done, total: on_progress(n + done, 2 * n))
    document = report.to_dict()
    model_folder = default_model_path() if model is None else Path(model)
    document.update(model=str(model_folder), model_name=predictor.name, split=split,
                    data=str(processed.folder), ranking=ranking, plots=[])
    if plots is not None:
        longest = max(records, key=lambda r: r["n_frames"])
        features = predictor.frame_features(load_mono(longest))
        start = max(0, min(features.shape[0] - 31, features.shape[0] // 3))
        document["plots"] = [str(p) for p in write_plots(
            Path(plots), predictor=predictor, song_features=features, start=start, model_folder=model_folder)]
    return document
