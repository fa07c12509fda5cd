"""Trained model files shipped with harmonizer (installed as ``harmonizer_cli.models``).

See README.md in this folder for the model card.
"""
