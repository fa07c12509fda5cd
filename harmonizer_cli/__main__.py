"""``python -m harmonizer_cli`` runs the CLI."""

from harmonizer_cli.cli import main

if __name__ == "__main__":
    main()
