"""The one place that owns terminal output: the stderr console and progress display.

Commands ask ``progress_for(state, ...)`` for a context manager that yields an
``on_progress(done, total)`` callback, and pass that callback to the core. The
bar is shown only when stderr is a terminal and ``--quiet`` is off.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import Callable, Iterator

from rich.console import Console

__all__ = ["AppState", "stderr", "progress_for", "log", "print_error"]

#: Every human-readable message goes to stderr; stdout carries only data (--json).
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class AppState:
    """App-wide options from the ``harmonizer`` callback, kept in ``ctx.obj``."""

    quiet: bool = False
    verbose: bool = False
    debug: bool = False

    @property
    def show_progress(self) -> bool:
        return not self.quiet and stderr.is_terminal


def log(state: AppState, message: str, *, verbose_only: bool = False) -> None:
    """Print an informational line on stderr unless quiet (or not verbose)."""
    if state.quiet or (verbose_only and not state.verbose):
        return
    stderr.print(message, markup=False)


def print_error(message: object) -> None:
    """``error: <message>`` on one line of stderr, always (``--quiet`` silences only the rest)."""
    print(f"error: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def progress_for(
    state: AppState, description: str, *, batch: bool = False
) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr, yielded as a callback ``update(done, total, text=None)``.

    Parameters
    ----------
    state : AppState
        Decides whether anything is shown.
    description : str
        Shown left of the bar.
    batch : bool
        Counts files (``3/12``) instead of a percentage.
    """
    if not state.show_progress:
        yield lambda done, total, text=None: None
        return
    from rich.progress import (
        BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskProgressColumn,
        TextColumn, TimeElapsedColumn, TimeRemainingColumn,
    )

    columns = [
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn() if batch else TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=stderr, transient=not batch) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int, text: str | None = None) -> None:
            progress.update(task, completed=done, total=total or None,
                            description=text if text is not None else description)

        yield update
