"""`harmonizer evaluate` in model mode: preprocess tiny synthetic songs, score the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
from typer.testing import CliRunner

from harmonizer_cli.cli import app

runner = CliRunner()


def _songs(folder: Path, n: int = 4, seconds: int = 34) -> None:
    folder.mkdir()
    t = np.arange(seconds * 22050) / 22050
    for k in range(n):
        notes = 220.0 * 2 ** (np.floor(t * (1 + k)) % 5 / 12)
        audio = 0.3 * np.sin(2 * np.pi * np.cumsum(notes) / 22050) * (0.6 + 0.4 * np.cos(2 * np.pi * t))
        sf.write(folder / f"song{k}.wav", audio.astype(np.float32), 22050)


def test_model_against_baselines_with_plots(tmp_path: Path) -> None:
    _songs(tmp_path / "raw")
    processed = tmp_path / "processed"
    result = runner.invoke(app, ["--quiet", "preprocess", "--input", str(tmp_path / "raw"),
                                 "--output", str(processed), "--test", "0.5", "--validation", "0"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", "--data", str(processed), "--plots", str(tmp_path / "plots"),
                                 "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["split"] == "test" and document["n_windows"] >= 2
    assert set(document["rows"]) == {"model (default)", "silence", "repeat-last-10s", "nearest-earlier-10s"}
    for row in document["rows"].values():
        assert 0.0 <= row["chroma_similarity"] <= 1.0 + 1e-6
    assert document["rows"]["silence"]["chroma_similarity"] == 0.0
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["figure6_loss.png", "figure7_input.png", "figure8_predicted.png", "figure9_actual.png"]
    # 34 s songs are too short to rank a window against 15 other segments: said, not fatal
    assert document["ranking"]["n_windows"] == 0 and "long enough" in document["ranking"]["skipped_reason"]


def test_ranking_on_a_folder_never_trained_on(tmp_path: Path) -> None:
    """preprocess --test 1.0 then evaluate --split all: every window of every song is ranked."""
    _songs(tmp_path / "raw", n=3, seconds=64)
    processed = tmp_path / "processed"
    result = runner.invoke(app, ["--quiet", "preprocess", "--input", str(tmp_path / "raw"),
                                 "--output", str(processed), "--test", "1.0"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", "--data", str(processed), "--split", "all", "--max-windows", "3",
                                 "--candidates", "8", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    ranking = document["ranking"]
    assert document["split"] == "all" and ranking["candidates"] == 8 and ranking["n_songs"] == 3
    assert ranking["n_windows"] == 3 * 17  # 63 usable frames (the last left out), hop 2: starts 0, 2, ..., 32
    for key in ("model_top1", "similarity_top1", "model_mrr", "similarity_mrr"):
        assert 0.0 <= ranking[key] <= 1.0
    assert ranking["random_top1"] == 1 / 8
    table = runner.invoke(app, ["evaluate", "--data", str(processed), "--split", "all", "--max-windows", "2"])
    assert table.exit_code == 0 and "ranking" in table.stderr and "similarity" in table.stderr


def test_missing_data_is_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--data", str(tmp_path / "nothing")])
    assert result.exit_code == 4
    assert result.stderr.startswith("error: ") and "manifest.json" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
