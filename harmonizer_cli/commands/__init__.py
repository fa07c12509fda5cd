"""One module per ``harmonizer`` subcommand.

Each exposes ``command``, a thin Typer function: parse options, call the core,
report. Only Typer and the standard library are imported at module level so that
``harmonizer --help`` stays fast; core modules are imported inside ``command``.
"""
