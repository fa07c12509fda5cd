"""harmonizer: extend music seamlessly, and reproduce the 20-in/10-out encoder-decoder research.

The package is a thin Typer CLI (``harmonizer_cli.cli``) over a library core
(``harmonizer_cli.core``) that never prints, exits or imports the CLI.
"""

__version__ = "0.1.0"
