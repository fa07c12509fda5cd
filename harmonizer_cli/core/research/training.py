"""Training the encoder-decoder on preprocessed windows: ``harmonizer train``.

- Data: windows streamed from the memory-mapped song shards of ``preprocess`` through
  ``tf.data`` (a generator of batches, prefetched); memory does not grow with the corpus.
  The window order of epoch ``e`` is ``numpy.random.default_rng([seed, e]).permutation``,
  so a resumed run sees the same batches as an uninterrupted one.
- Optimisation: Adam, ``--learning-rate`` 0.01, ``--batch-size`` 20 by default, and the
  model's objective (``ModelConfig.objective``): ``mse``, the mean squared error over
  every number of the 10 predicted frames (the paper's); ``contrastive``, InfoNCE
  between the embedding of the decoder's output and the true continuation's,
  against ``negatives`` other 10-frame segments of the same song per window (drawn
  like the ranking measure's candidates: overlapping neither the context nor the
  truth; each epoch anew, the validation ones fixed) and every candidate of the
  other windows of the batch; ``both``, the two losses summed.
- Each epoch: a checkpoint (``checkpoint/last.keras`` with the optimizer state and
  ``checkpoint/state.json``); the model with the best validation loss so far is written
  as the output model folder (``config.json``, ``model.keras``, ``weights.npz``) plus
  ``history.json`` and ``loss.png`` (the paper's Figure 6).
- Early stopping after ``patience`` epochs without a better validation loss (the
  contrastive objectives: a better validation top-1, the share of validation
  windows whose true continuation scores above their ``negatives`` fixed same-song
  segments).
- A NaN or infinite loss stops training with ``ModelError``.
- ``strategy``: ``default`` (one device), ``mirrored`` (``tf.distribute.MirroredStrategy``,
  all local GPUs) or ``multi-worker`` (``MultiWorkerMirroredStrategy`` configured by the
  ``TF_CONFIG`` environment variable; only the chief, task 0, writes the output; the
  other workers keep their checkpoints in a temporary folder and ``--resume`` reads the
  chief's, so the output folder must be on a shared file system). Two workarounds for
  Keras 3.15 under ``multi-worker`` are applied there only: one step per execution, and
  a replica reduction that works for scalars (``_patch_keras_multi_worker_reduction``).
- ``--resume`` continues with the architecture saved in the output folder.

The batches themselves (window order, contrastive candidates, augmentation, the
``tf.data`` pipeline) are ``research.batches``'s; its public names are re-exported here.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from harmonizer_cli.core._typing import ProgressFn
from harmonizer_cli.core.model import (
    CONFIG_FILE, ModelConfig, build_model, count_parameters, read_config, save_model_folder,
    set_normalisation,
)
from harmonizer_cli.core.research.batches import (  # noqa: F401 - re-exported: their home is batches
    AUGMENT_GAIN_DB, AUGMENT_MEL_SHIFT, _batch, _dataset, _epoch_order, augment_windows, gather_candidates,
    negative_starts,
)
from harmonizer_cli.core.research.preprocess import ProcessedData
from harmonizer_cli.errors import ConfigError, DataError, ModelError, OutputError

__all__ = ["TrainConfig", "TrainResult", "train_model", "STRATEGIES", "plot_history"]

STRATEGIES = ("default", "mirrored", "multi-worker")
CHECKPOINT_FOLDER = "checkpoint"
HISTORY_FILE = "history.json"
PLOT_FILE = "loss.png"
#: Second seed word of the validation negatives (epochs use 0, 1, ...): fixed across epochs.
VALIDATION_RNG_KEY = 1_000_003


@dataclass(frozen=True)
class TrainConfig:
    """Options of ``train_model``.

    Attributes
    ----------
    epochs : int
        Epochs at most (the paper: 200).
    batch_size : int
        Windows per step (global batch under a distribution strategy).
    learning_rate : float
        Adam's learning rate (the paper: 0.01).
    seed : int
        Seeds weights, and the window order of each epoch.
    early_stopping : bool
        Stop after ``patience`` epochs without a better validation loss.
    patience : int
    resume : bool
        Continue from ``checkpoint/`` of the output folder.
    overwrite : bool
        Replace an existing model folder (otherwise ``OutputError``).
    strategy : {"default", "mirrored", "multi-worker"}
    max_train_windows : int or None
        Use at most this many (randomly chosen, fixed by seed) training windows per epoch.
    steps_per_execution : int
        Batches per call into TensorFlow (speed only; 1 under ``multi-worker``).
    negatives : int
        Same-song negative segments per window for the contrastive objectives.
    augment : bool
        Give each training window a random level (within 6 dB) and mel-band shift
        (within 2 bands), alike for its context, continuation and candidates
        (``augment_windows``; log-mel data only).
    """

    epochs: int = 200
    batch_size: int = 20
    learning_rate: float = 0.01
    seed: int = 0
    early_stopping: bool = True
    patience: int = 10
    resume: bool = False
    overwrite: bool = False
    strategy: str = "default"
    max_train_windows: int | None = None
    steps_per_execution: int = 10
    negatives: int = 7
    augment: bool = False

    def validate(self) -> "TrainConfig":
        if min(self.epochs, self.batch_size, self.patience, self.steps_per_execution, self.negatives) < 1:
            raise ConfigError("--epochs, --batch-size, --patience, --steps-per-execution and "
                              "--negatives must be positive")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ConfigError(f"--learning-rate must be positive, got {self.learning_rate}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown --strategy {self.strategy!r} (choose from {', '.join(STRATEGIES)})")
        return self


@dataclass
class TrainResult:
    """What ``train_model`` did.

    Attributes
    ----------
    output : Path
        The model folder.
    history : list of dict
        One ``{"epoch", "loss", "val_loss", "seconds"}`` per epoch, resumed ones included.
    best_epoch : int
    best_val_loss : float or None
    best_val_top1 : float or None
        Contrastive objectives: the best epoch's validation top-1 (the true
        continuation first among its window's candidates).
    stopped_early : bool
    parameters : int
    windows_per_second : float
        Training windows per wall second over the epochs of this run.
    """

    output: Path
    history: list = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float | None = None
    best_val_top1: float | None = None
    stopped_early: bool = False
    parameters: int = 0
    windows_per_second: float = 0.0

    def summary(self) -> dict:
        last = self.history[-1] if self.history else {}
        return {"output": str(self.output), "epochs_run": len(self.history),
                "best_epoch": self.best_epoch, "best_val_loss": self.best_val_loss,
                "best_val_top1": self.best_val_top1,
                "final_loss": last.get("loss"), "final_val_loss": last.get("val_loss"),
                "stopped_early": self.stopped_early, "parameters": self.parameters,
                "windows_per_second": round(self.windows_per_second, 1)}


def _make_strategy(name: str) -> tuple[Any, int, int]:
    """The tf.distribute strategy, this worker's index and the number of workers."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy(), 0, 1
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(), 0, 1
    tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        raise ConfigError("--strategy multi-worker needs the TF_CONFIG environment variable")
    try:
        cluster = json.loads(tf_config)
        n_workers = len(cluster["cluster"]["worker"])
        task_index = int(cluster["task"]["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"invalid TF_CONFIG ({exc})") from exc
    _patch_keras_multi_worker_reduction()
    return tf.distribute.MultiWorkerMirroredStrategy(), task_index, n_workers


def _patch_keras_multi_worker_reduction() -> None:
    """Work around Keras 3.15 under MultiWorkerMirroredStrategy.

    Its train and test steps reduce the per-replica metric values with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails for scalars ("Invalid reduction
    dimension 0"), and its ``SUM`` branch omits ``axis``. Reduce with
    ``strategy.reduce("MEAN", v, axis=None)`` instead: the mean over replicas, an
    all-reduce that gives every worker the same value.
    """
    from keras import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "_harmonizer_patch", False):
        return

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction == "auto" and tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica._harmonizer_patch = True
    tf_trainer.reduce_per_replica = reduce_per_replica


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs, then act on the first one received.

    Only in the main thread (where Python runs signal handlers); elsewhere a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    previous = {number: handler for number, handler in previous.items() if handler is not None}
    for number in previous:
        signal.signal(number, lambda signal_number, frame: received.append(signal_number))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if received:
        handler = previous[received[0]]
        if callable(handler):
            handler(received[0], None)
        elif handler == signal.SIG_DFL:
            os.kill(os.getpid(), received[0])


def plot_history(history: list[dict], path: str | os.PathLike, *, ylabel: str = "loss") -> None:
    """Write the loss curve (training and validation loss per epoch, log scale) as PNG.

    ``ylabel`` names the loss (``mean squared error`` for the ``mse`` objective).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from harmonizer_cli.core.audio_out import atomic_output

    epochs = [h["epoch"] for h in history]
    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    axis = figure.add_subplot()
    axis.plot(epochs, [h["loss"] for h in history], label="training loss")
    if any(h.get("val_loss") is not None for h in history):
        axis.plot(epochs, [h.get("val_loss") for h in history], label="validation loss")
    axis.set_xlabel("epoch")
    axis.set_ylabel(ylabel)
    axis.set_yscale("log")
    axis.grid(True, alpha=0.3)
    axis.legend()
    axis.set_title("harmonizer training loss")
    figure.tight_layout()
    with atomic_output(path, overwrite=True) as tmp:
        figure.savefig(tmp, format="png")


def _write_json(path: Path, document: dict) -> None:
    from harmonizer_cli.core.audio_out import atomic_output

    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(document, indent=2) + "\n")


def _check_output(output: Path, config: TrainConfig) -> None:
    checkpoint = output / CHECKPOINT_FOLDER / "last.keras"
    if config.resume:
        if not checkpoint.is_file():
            raise OutputError("nothing to resume (no checkpoint/last.keras)", path=output)
        return
    if output.exists() and not output.is_dir():
        raise OutputError("exists and is not a folder", path=output)
    if output.is_dir() and any(output.iterdir()) and not config.overwrite:
        raise OutputError("already exists (use --force to overwrite, or --resume)", path=output)


def train_model(
    data_folder: str | os.PathLike,
    output_folder: str | os.PathLike,
    *,
    config: TrainConfig = TrainConfig(),
    model_config: ModelConfig | None = None,
    on_progress: ProgressFn = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train a model on a preprocessed folder and write a loadable model folder.

    Parameters
    ----------
    data_folder : str or os.PathLike
        Output of ``preprocess_dataset`` (``manifest.json`` + shards).
    output_folder : str or os.PathLike
        The model folder to write (what ``load_predictor`` reads).
    config : TrainConfig
    model_config : ModelConfig, optional
        Defaults to ``ModelConfig()`` in the data's representation; its
        representation must match the data's.
    on_progress : callable(done, total), optional
        Training batches done over the whole run.
    on_epoch : callable(dict), optional
        Called with each epoch's ``{"epoch", "loss", "val_loss", "seconds"}``.

    Returns
    -------
    TrainResult

    Raises
    ------
    DataError
        Missing or empty data, no training windows.
    ModelError
        The loss became NaN or infinite; an unloadable checkpoint.
    OutputError
        Existing output without ``overwrite``/``resume``.
    """
    config.validate()
    output = Path(output_folder)
    data = ProcessedData(data_folder)
    model_config = _model_config_for(data, model_config)
    if config.augment and data.representation != "logmel":
        raise ConfigError(f"--augment works on logmel data, not {data.representation}")
    train_index, val_index = _train_windows(data, config)
    if config.strategy != "multi-worker":  # the only worker is the chief: refuse before loading TensorFlow
        _check_output(output, config)

    import keras

    strategy, n_workers, is_chief, write_folder, checkpoint_folder = _start_worker(output, config)
    keras.utils.set_random_seed(config.seed)

    model, model_config, state = _build_or_resume(
        keras, strategy, data, output, config=config, model_config=model_config,
        train_index=train_index, n_workers=n_workers)
    facts = {"data": str(data.folder.resolve()), "representation": data.representation,
             "hop": data.hop, "train_windows": int(len(train_index)),
             "validation_windows": int(len(val_index)), "objective": model_config.objective,
             "train": asdict(config)}
    result = TrainResult(output=output, parameters=count_parameters(model))
    steps_per_epoch = -(-len(train_index) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    progress = {"done": state["epoch"] * steps_per_epoch, "base": 0, "nan": None}
    Progress = _progress_callback(keras, progress, steps_per_epoch=steps_per_epoch,
                                  total_steps=total_steps, on_progress=on_progress)

    trained_windows, trained_seconds = 0, 0.0
    for epoch in range(state["epoch"], config.epochs):
        started = time.perf_counter()
        loss, val_loss, n_windows, parts = _fit_epoch(
            model, data, epoch, train_index=train_index, val_index=val_index, config=config,
            model_config=model_config, n_workers=n_workers, callback=Progress(), progress=progress,
            output=output)
        trained_windows += n_windows
        seconds = time.perf_counter() - started
        trained_seconds += seconds
        record = {"epoch": epoch + 1, "loss": loss, "val_loss": val_loss, "seconds": round(seconds, 3), **parts}
        improved = _note_epoch(state, record)
        _commit_epoch(model, model_config, output, checkpoint_folder, state=state, facts=facts,
                      epoch_facts={"epoch": epoch + 1, "loss": loss, "val_loss": val_loss,
                                   "parameters": result.parameters},
                      improved=improved, is_chief=is_chief,
                      monitor=("val_top1" if model_config.has_embedding else "val_loss") if len(val_index)
                      else "loss")
        if on_epoch:
            on_epoch(record)
        if config.early_stopping and state["wait"] >= config.patience:
            result.stopped_early = True
            break

    if not is_chief:
        shutil.rmtree(write_folder, ignore_errors=True)
    result.history = state["history"]
    result.best_epoch = state["best_epoch"]
    result.best_val_loss = state["best_val_loss"]
    result.best_val_top1 = state.get("best_val_top1")
    result.windows_per_second = trained_windows / trained_seconds if trained_seconds else 0.0
    if is_chief and not (output / CONFIG_FILE).is_file():
        raise ModelError("no epoch finished; nothing was saved", path=output)
    return result


def _start_worker(output: Path, config: TrainConfig) -> tuple[Any, int, bool, Path, Path]:
    """This worker's strategy and folders.

    Returns
    -------
    strategy : tf.distribute.Strategy
    n_workers : int
    is_chief : bool
        Task 0, the one that writes the output folder.
    write_folder, checkpoint_folder : Path
        ``output`` and its checkpoint folder for the chief; a temporary folder for the
        other workers of a multi-worker run.
    """
    strategy, task_index, n_workers = _make_strategy(config.strategy)
    is_chief = task_index == 0
    if is_chief:
        _check_output(output, config)
        write_folder = output
    else:  # other workers of a multi-worker run write their checkpoints aside
        write_folder = Path(tempfile.mkdtemp(prefix=f"harmonizer-worker{task_index}-"))
    checkpoint_folder = write_folder / CHECKPOINT_FOLDER
    checkpoint_folder.mkdir(parents=True, exist_ok=True)
    return strategy, n_workers, is_chief, write_folder, checkpoint_folder


def _monitored(record: dict) -> float:
    """What early stopping minimises: minus the validation top-1 (contrastive objectives),
    else the validation loss, else the training loss."""
    if record.get("val_top1") is not None:
        return -record["val_top1"]
    return record["val_loss"] if record["val_loss"] is not None else record["loss"]


def _note_epoch(state: dict, record: dict) -> bool:
    """Add a finished epoch's record to ``state``; True when it is the best so far.

    The monitored value is ``_monitored``'s; ``best_val_loss`` is the (validation,
    else training) loss of the best epoch.
    """
    state["history"].append(record)
    monitored = _monitored(record)
    best = state.get("best_monitored", state["best_val_loss"])  # state.json of older runs: the loss
    improved = best is None or monitored < best
    if improved:
        state["best_monitored"], state["best_epoch"], state["wait"] = monitored, record["epoch"], 0
        state["best_val_loss"] = record["val_loss"] if record["val_loss"] is not None else record["loss"]
        state["best_val_top1"] = record.get("val_top1")
    else:
        state["wait"] += 1
    state["epoch"] = record["epoch"]
    return improved


def _model_config_for(data: ProcessedData, model_config: ModelConfig | None) -> ModelConfig:
    """``model_config`` (default: ``ModelConfig()`` in the data's representation), checked against the data."""
    if model_config is None:
        model_config = ModelConfig().with_representation(data.representation)
    model_config.validate()
    if model_config.representation != data.representation or model_config.frame_size != data.frame_size:
        raise ConfigError(f"the data is {data.representation} ({data.frame_size} per frame) but the "
                          f"model is {model_config.representation} ({model_config.frame_size})")
    return model_config


def _train_windows(data: ProcessedData, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The training windows (at most ``max_train_windows``, chosen by seed) and the validation ones."""
    train_index = data.window_index("train")
    if len(train_index) == 0:
        raise DataError("no training windows (songs must be at least 30 s long)", path=data.folder)
    if config.max_train_windows and len(train_index) > config.max_train_windows:
        keep = np.sort(np.random.default_rng(config.seed).choice(
            len(train_index), config.max_train_windows, replace=False))
        train_index = train_index[keep]
    val_index = data.window_index("validation")
    return train_index, val_index


def _build_or_resume(
    keras: Any, strategy: Any, data: ProcessedData, output: Path, *, config: TrainConfig,
    model_config: ModelConfig, train_index: np.ndarray, n_workers: int,
) -> tuple[Any, ModelConfig, dict]:
    """The model in ``strategy``'s scope: a new one, or the checkpoint being resumed.

    Returns
    -------
    model : keras.Model
    model_config : ModelConfig
        The resumed architecture when resuming, else ``model_config``.
    state : dict
        ``{"epoch", "history", "best_val_loss", "best_epoch", "wait"}`` so far.
    """
    state: dict = {"epoch": 0, "history": [], "best_val_loss": None, "best_epoch": 0, "wait": 0}
    with strategy.scope():
        if config.resume:
            from harmonizer_cli.core.model import custom_layers

            custom_layers()
            resume_folder = output / CHECKPOINT_FOLDER  # the chief's, on a shared file system
            model_config, _ = read_config(output)  # the architecture being resumed wins
            try:
                model = keras.saving.load_model(resume_folder / "last.keras", safe_mode=True)
                state = json.loads((resume_folder / "state.json").read_text())
            except Exception as exc:  # corrupt checkpoint: keras raises many types
                raise ModelError(f"cannot resume ({type(exc).__name__}: {exc})",
                                 path=resume_folder) from exc
        else:
            # Several steps per execution fail under MultiWorkerMirroredStrategy in Keras 3.15
            # (a while-loop placeholder error): one step per execution there.
            model = build_model(model_config, learning_rate=config.learning_rate,
                                steps_per_execution=config.steps_per_execution if n_workers == 1 else 1)
            mean, std = data.feature_statistics("train")
            set_normalisation(model, mean, std)
        if n_workers > 1:
            # Keras 3.15 builds the optimizer and loss from the first distributed batch with
            # strategy.reduce, which fails under MultiWorkerMirroredStrategy ("PerReplica ...
            # to a Tensor"): build them here from one window instead, then skip that step.
            inputs, targets = _batch(data, "train", train_index[:1], model_config=model_config,
                                     n_negatives=config.negatives, rng=np.random.default_rng(config.seed))
            model._symbolic_build(data_batch=(inputs, targets, None))
            model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    return model, model_config, state


def _progress_callback(
    keras: Any, progress: dict, *, steps_per_epoch: int, total_steps: int,
    on_progress: ProgressFn,
) -> type:
    """The Keras callback class that feeds ``on_progress`` through ``progress``."""

    class Progress(keras.callbacks.Callback):
        """Feeds ``on_progress`` and stops at the first non-finite batch loss."""

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            progress["base"] = epoch * steps_per_epoch

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                progress["nan"] = batch
                self.model.stop_training = True
            progress["done"] = progress["base"] + batch + 1
            if on_progress:
                on_progress(progress["done"], total_steps)

    return Progress


#: What the loss of each objective is (the loss curve's axis).
LOSS_NAMES = {"mse": "mean squared error", "contrastive": "InfoNCE (contrastive)",
              "both": "mean squared error + InfoNCE"}
#: History names of the two losses of the ``both`` objective (Keras' names of its outputs' losses).
LOSS_PARTS = {"frames_loss": "mse", "embeddings_loss": "contrastive"}


def _loss_parts(logs: dict, prefix: str = "") -> dict:
    """The ``both`` objective's losses by name (``mse``, ``contrastive``), from Keras' logs."""
    parts = {}
    for key, name in LOSS_PARTS.items():
        value = logs.get(key)
        if isinstance(value, list):
            value = value[-1] if value else None
        if value is not None:
            parts[prefix + name] = float(value)
    return parts if len(parts) == len(LOSS_PARTS) else {}


def _fit_epoch(
    model: Any, data: ProcessedData, epoch: int, *, train_index: np.ndarray, val_index: np.ndarray,
    config: TrainConfig, model_config: ModelConfig, n_workers: int, callback: Any, progress: dict,
    output: Path,
) -> tuple[float, float | None, int, dict]:
    """Train one epoch in its window order, then score the validation windows.

    Returns
    -------
    loss : float
    val_loss : float or None
        None without validation windows.
    n_windows : int
        Training windows of the epoch.
    parts : dict
        For the ``both`` objective, each loss on its own: ``mse``, ``contrastive``,
        ``val_mse``, ``val_contrastive``; for both contrastive objectives ``val_top1``
        (``_validation_top1``).

    Raises
    ------
    ModelError
        A loss became NaN or infinite.
    """
    order = train_index[_epoch_order(len(train_index), seed=config.seed, epoch=epoch)]
    train_ds, n_steps = _dataset(data, "train", order, batch_size=config.batch_size, n_workers=n_workers,
                                 model_config=model_config, n_negatives=config.negatives,
                                 rng_key=(config.seed, epoch), augment=config.augment)
    fit = model.fit(train_ds, epochs=epoch + 1, initial_epoch=epoch, verbose=0, shuffle=False,
                    callbacks=[callback])
    loss = float(fit.history["loss"][-1]) if fit.history.get("loss") else float("nan")
    parts = _loss_parts(fit.history)
    if progress["nan"] is not None or not math.isfinite(loss):
        raise ModelError(f"training diverged: the loss became NaN or infinite in epoch {epoch + 1} "
                         f"(try a lower --learning-rate than {config.learning_rate})", path=output)
    val_loss = None
    if len(val_index):
        val_ds, _ = _dataset(data, "validation", val_index, n_workers=n_workers,
                             batch_size=config.batch_size if n_workers > 1 else max(config.batch_size, 64),
                             model_config=model_config, n_negatives=config.negatives,
                             rng_key=(config.seed, VALIDATION_RNG_KEY))
        logs = model.evaluate(val_ds, verbose=0, return_dict=True)
        val_loss = float(logs["loss"])
        parts.update(_loss_parts(logs, "val_"))
        if model_config.has_embedding:
            parts["val_top1"] = _validation_top1(model, val_ds)
        if not math.isfinite(val_loss):
            raise ModelError(f"training diverged: the validation loss is {val_loss} in epoch "
                             f"{epoch + 1}", path=output)
    return loss, val_loss, len(order), parts


def _validation_top1(model: Any, dataset: Any) -> float:
    """Share of validation windows whose true continuation scores highest among their own candidates."""
    from harmonizer_cli.core.research.ranking import truth_ranks

    embeddings = np.asarray(model.predict(dataset, verbose=0)["embeddings"], dtype=np.float64)
    scores = np.einsum("bd,bkd->bk", embeddings[:, 0], embeddings[:, 1:])
    return float(truth_ranks(scores)[0].mean())


def _commit_epoch(
    model: Any, model_config: ModelConfig, output: Path, checkpoint_folder: Path, *, state: dict,
    facts: dict, epoch_facts: dict, improved: bool, is_chief: bool, monitor: str,
) -> None:
    """Write an epoch's files: the model folder when improved, the checkpoint, the history.

    ``facts`` describe the run (in ``history.json``), ``epoch_facts`` this epoch (added
    to them in the model folder's ``config.json``).

    The files are one commit: a Ctrl-C or SIGTERM arriving while they are written
    takes effect after them, so the model folder, last.keras and state.json always
    describe the same epoch and --resume continues exactly.
    """
    with _signals_deferred():
        if improved and is_chief:
            save_model_folder(model, model_config, output, extra={**facts, **epoch_facts})
        part = checkpoint_folder / "last.keras.part.keras"
        try:
            model.save(part)
            os.replace(part, checkpoint_folder / "last.keras")
        finally:
            part.unlink(missing_ok=True)
        _write_json(checkpoint_folder / "state.json", state)
        if is_chief:
            _write_json(output / HISTORY_FILE, {
                "history": state["history"], "best_epoch": state["best_epoch"],
                "best_val_loss": state["best_val_loss"],
                "monitor": monitor, **facts})
            plot_history(state["history"], output / PLOT_FILE, ylabel=LOSS_NAMES[model_config.objective])
