"""The library core: audio I/O, framing, analysis, extension, the model and its pipeline.

Nothing here imports Typer or rich, prints, or exits: errors are raised as
``harmonizer_cli.errors.HarmonizerError`` subclasses and progress is reported
through ``on_progress(done, total)`` callbacks. Heavy modules (TensorFlow) are
imported only inside the functions that need them.
"""
