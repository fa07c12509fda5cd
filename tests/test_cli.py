"""The CLI shell: help for every command, app-wide options, fast imports, error mapping."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from harmonizer_cli import __version__
from harmonizer_cli.cli import HarmonizerGroup, app
from harmonizer_cli.errors import AudioError, Interrupted, OutputError

runner = CliRunner()
COMMANDS = ["extend", "serve", "fetch-data", "preprocess", "train", "evaluate"]


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"harmonizer {__version__}"


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS + ["--quiet", "--verbose", "--debug", "--version"]:
        assert name in result.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_help(name: str) -> None:
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout and "not implemented" not in result.stdout.lower()


@pytest.mark.parametrize("argv", [["--help"], ["extend", "--help"], ["serve", "--help"]])
def test_help_does_not_import_heavy_modules(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from harmonizer_cli.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'librosa', 'numba', 'matplotlib', 'scipy', 'av', 'fastapi',"
        " 'uvicorn', 'starlette') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in result.stderr, result.stderr[-2000:]


def _app_raising(exc: BaseException) -> typer.Typer:
    """A one-command app on the real HarmonizerGroup, to test the error mapping alone."""
    test_app = typer.Typer(cls=HarmonizerGroup)

    @test_app.callback()
    def _callback() -> None:
        pass

    @test_app.command()
    def boom() -> None:
        raise exc

    return test_app


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (AudioError("cannot decode: not an audio file", path="song.mp3"), 3,
         "error: song.mp3: cannot decode: not an audio file"),
        (OutputError("already exists (use --force to overwrite)", path="out.wav"), 6,
         "error: out.wav: already exists (use --force to overwrite)"),
        (KeyboardInterrupt(), 130, "error: interrupted"),
        (Interrupted(15), 143, "error: interrupted by signal 15"),
    ],
)
def test_errors_map_to_one_line_and_exit_code(exc: BaseException, code: int, line: str) -> None:
    result = CliRunner().invoke(_app_raising(exc), ["boom"])
    assert result.exit_code == code
    assert result.stderr.strip() == line
    assert "Traceback" not in result.output


def test_multiline_messages_are_folded_to_one_line() -> None:
    error = AudioError("bad\nthing   here", path="x.wav")
    assert str(error) == "x.wav: bad thing here"
