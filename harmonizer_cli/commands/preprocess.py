"""`harmonizer preprocess` (not implemented yet)."""

from __future__ import annotations

import typer

from harmonizer_cli.errors import HarmonizerError


def command(ctx: typer.Context) -> None:
    """Not implemented yet."""
    raise HarmonizerError("harmonizer preprocess is not implemented yet")
