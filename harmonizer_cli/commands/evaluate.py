"""`harmonizer evaluate` (not implemented yet)."""

from __future__ import annotations

import typer

from harmonizer_cli.errors import HarmonizerError


def command(ctx: typer.Context) -> None:
    """Not implemented yet."""
    raise HarmonizerError("harmonizer evaluate is not implemented yet")
