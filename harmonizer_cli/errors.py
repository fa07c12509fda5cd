"""The one exception hierarchy of harmonizer, and the exit code of each error.

Library code (``harmonizer_cli.core``) raises these; the CLI maps them to exit
codes in one place (``harmonizer_cli.cli``). Messages are one line and name the
file they are about, so the CLI can print ``error: <file>: <what is wrong>``.

Exit codes
----------
0    success
1    an unexpected error (a bug): traceback shown
2    bad usage or configuration (``ConfigError``, and Click's own usage errors)
3    unreadable or unusable input audio (``AudioError``)
4    dataset, download or preprocessing problem (``DataError``)
5    model file missing, invalid or incompatible, or training diverged (``ModelError``)
6    output cannot be written (``OutputError``): exists without --force, is the input,
     folder not writable, disk full
7    a batch finished but some of its files failed (``BatchError``)
130  interrupted by SIGINT (Ctrl-C)
143  terminated by SIGTERM
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "HarmonizerError",
    "ConfigError",
    "AudioError",
    "DataError",
    "ModelError",
    "OutputError",
    "BatchError",
    "Interrupted",
]


class HarmonizerError(Exception):
    """Root of every error harmonizer reports to its user.

    Parameters
    ----------
    message : str
        What is wrong, in one line, without the file name.
    path : str or os.PathLike, optional
        The file or folder the error is about; shown before the message.
    """

    exit_code = 1

    def __init__(self, message: str, *, path: str | os.PathLike | None = None) -> None:
        self.message = " ".join(str(message).split())  # always one line
        self.path = None if path is None else Path(path)
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path is not None else self.message


class ConfigError(HarmonizerError):
    """Invalid option values or configuration (exit 2, like a usage error)."""

    exit_code = 2


class AudioError(HarmonizerError):
    """Input audio that is missing, unreadable, empty or otherwise unusable (exit 3)."""

    exit_code = 3


class DataError(HarmonizerError):
    """Dataset, download, manifest or shard problem (exit 4)."""

    exit_code = 4


class ModelError(HarmonizerError):
    """Model missing, invalid, incompatible, or training that diverged (exit 5)."""

    exit_code = 5


class OutputError(HarmonizerError):
    """An output that cannot or must not be written (exit 6)."""

    exit_code = 6


class BatchError(HarmonizerError):
    """Some files of a batch failed; the others were processed (exit 7)."""

    exit_code = 7


class Interrupted(BaseException):
    """Raised from a signal handler so ``finally`` blocks clean up partial outputs.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that ``except Exception``
    in library code does not swallow it. ``exit_code`` is 128 + the signal number.
    """

    def __init__(self, signal_number: int) -> None:
        self.signal_number = int(signal_number)
        self.exit_code = 128 + self.signal_number
        super().__init__(f"interrupted by signal {self.signal_number}")
