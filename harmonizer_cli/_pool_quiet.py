"""Imported by the batch pool's fork server: a worker that is still starting when the
batch is interrupted finds the parent's semaphores gone (``FileNotFoundError``) or its
pipe closed; it exits without a traceback on the user's terminal. Any other error in
the fork server is printed as usual."""

import sys

_default_hook = sys.excepthook


def _quiet_startup_races(kind, value, traceback) -> None:
    if issubclass(kind, (FileNotFoundError, EOFError, BrokenPipeError, ConnectionResetError)):
        return
    _default_hook(kind, value, traceback)


sys.excepthook = _quiet_startup_races
