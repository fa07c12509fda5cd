"""`harmonizer train`: train the encoder-decoder on preprocessed windows."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from harmonizer_cli.console import AppState, log, progress_for
from harmonizer_cli.errors import ConfigError


class Objective(str, Enum):
    """The training objective (``ModelConfig.objective``)."""

    MSE = "mse"
    CONTRASTIVE = "contrastive"
    BOTH = "both"


def _hidden_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"--hidden-sizes must be positive integers separated by commas, got {text!r}")
    return sizes


def command(
    ctx: typer.Context,
    data: Annotated[Path, typer.Option("--data", "-d", help="Folder written by harmonizer preprocess.")] = Path("data/processed"),
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write (config.json, model.keras, weights.npz, history.json, loss.png, checkpoint/).")] = Path("models/trained"),
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Epochs at most (the paper: 200).")] = 200,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Windows per step (the paper: 20).")] = 20,
    learning_rate: Annotated[float, typer.Option("--learning-rate", help="Adam learning rate (the paper: 0.01).")] = 0.01,
    weights: Annotated[str, typer.Option("--weights", help="shared (one recurrent unit each for encoder, context, decoder) or per-step (31 units, the reference code).")] = "shared",
    hidden_sizes: Annotated[str, typer.Option("--hidden-sizes", help="Widths of each unit's hidden stack, comma-separated.")] = "64,128,256,512",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the initial weights and of the window order.")] = 0,
    patience: Annotated[int, typer.Option("--patience", min=1, help="Early stopping: epochs without a better validation loss.")] = 10,
    no_early_stopping: Annotated[bool, typer.Option("--no-early-stopping", help="Run all --epochs.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the output folder's last checkpoint.")] = False,
    strategy: Annotated[str, typer.Option("--strategy", help="default (one device), mirrored (all local GPUs) or multi-worker (MultiWorkerMirroredStrategy from TF_CONFIG).")] = "default",
    max_train_windows: Annotated[Optional[int], typer.Option("--max-train-windows", min=1, help="Train on at most this many training windows (a fixed random subset).")] = None,
    steps_per_execution: Annotated[int, typer.Option("--steps-per-execution", min=1, help="Batches per call into TensorFlow (speed only; 10 is about 1.7x faster than 1 on CPU).")] = 10,
    objective: Annotated[Objective, typer.Option("--objective", help="mse (the paper's: predict the next 10 frames), contrastive (InfoNCE: score the true continuation above other segments of the same song and the batch, what extend uses) or both (the two losses summed).")] = Objective.MSE,
    negatives: Annotated[int, typer.Option("--negatives", min=1, help="Contrastive objectives: other segments of the same song per window (besides the batch's).")] = 7,
    embedding_size: Annotated[int, typer.Option("--embedding-size", min=1, help="Contrastive objectives: size of the context and continuation embeddings.")] = 64,
    temperature: Annotated[float, typer.Option("--temperature", min=1e-3, help="Contrastive objectives: InfoNCE temperature (logits are cosines over it).")] = 0.1,
    augment: Annotated[bool, typer.Option("--augment", help="Give each training window a random level (within 6 dB) and mel-band shift (within 2 bands), alike for its context and continuations (logmel data).")] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite an existing output folder.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Train the 20 s in / 10 s out encoder-decoder with Adam and the --objective's loss.

    --objective mse is the paper's regression of the next 10 s (with --weights
    per-step on waveform data, the paper's model); contrastive and both add an
    embedding head that learns which of several segments of the song really
    follows, the score extend uses to choose its jumps. Streams windows from the shards with tf.data, checkpoints every epoch (--resume
    continues), keeps the model with the best validation loss, stops early after
    --patience epochs without improvement, and writes history.json and loss.png. A
    NaN loss stops with exit 5. The output folder is a model for --model options.
    """
    from harmonizer_cli.core.model import ModelConfig
    from harmonizer_cli.core.research.preprocess import load_processed
    from harmonizer_cli.core.research.training import TrainConfig, train_model

    state: AppState = ctx.obj or AppState()
    processed = load_processed(data)
    model_config = ModelConfig(weights=weights, hidden_sizes=_hidden_sizes(hidden_sizes),
                               objective=objective.value, embedding_size=embedding_size,
                               temperature=temperature).with_representation(processed.representation)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                         seed=seed, early_stopping=not no_early_stopping, patience=patience,
                         resume=resume, overwrite=force, strategy=strategy,
                         max_train_windows=max_train_windows,
                         steps_per_execution=steps_per_execution, negatives=negatives, augment=augment)

    def report_epoch(record: dict) -> None:
        val = "" if record["val_loss"] is None else f", validation {record['val_loss']:.5f}"
        if record.get("val_top1") is not None:
            val += f", validation top-1 {record['val_top1']:.3f}"
        log(state, f"epoch {record['epoch']}: loss {record['loss']:.5f}{val} ({record['seconds']:.1f} s)")

    with progress_for(state, "training") as update:
        result = train_model(data, output, config=config, model_config=model_config,
                             on_progress=update, on_epoch=report_epoch)
    summary = result.summary()
    if json_output:
        print(json.dumps(summary, indent=2))
    else:
        best = (f"best validation top-1 {summary['best_val_top1']:.3f}" if summary.get("best_val_top1") is not None
                else f"best validation loss {summary['best_val_loss']}")
        log(state, f"{best} at epoch {summary['best_epoch']} of {summary['epochs_run']}; model written to {output}")
