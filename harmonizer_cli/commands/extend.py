"""`harmonizer extend`: extend (or shorten) songs to an exact duration."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from harmonizer_cli.console import AppState, log, print_error, progress_for
from harmonizer_cli.jobs import Engine, ExtendRecord, OutputFormat, make_jobs, run_jobs, target_seconds_from

__all__ = ["command"]


def command(
    ctx: typer.Context,
    inputs: Annotated[list[Path], typer.Argument(
        help="Audio files, or folders (their audio files, sorted, not recursive).", show_default=False)],
    hours: Annotated[Optional[float], typer.Option("--hours", help="Target length in hours (such as 2.5; at most 24).")] = None,
    minutes: Annotated[Optional[float], typer.Option("--minutes", "-m", help="Target length in minutes.")] = None,
    seconds: Annotated[Optional[float], typer.Option("--seconds", "-s", help="Target length in seconds.")] = None,
    duration: Annotated[Optional[str], typer.Option("--duration", "-d", help="Target length as MM:SS or HH:MM:SS.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output file (one input only).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Folder for the outputs (created if missing).")] = None,
    format: Annotated[Optional[OutputFormat], typer.Option("--format", "-f", case_sensitive=False, help="Output format. Default: the extension of -o/--output, else wav (default names are <stem>.extended.wav).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed and input give the same output.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing outputs (never the input).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per input on stdout.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Files processed in parallel (processes).")] = 1,
    engine: Annotated[Engine, typer.Option("--engine", case_sensitive=False, help="guided (default): recombines the song's own beats, "
                                           "keeps its real beginning and ending. neural: the seed paper's method, "
                                           "appends model-predicted 1 s frames to the original: expect mushy, noisy "
                                           "audio; for research comparison only (needs a model).")] = Engine.guided,
    model: Annotated[Optional[Path], typer.Option("--model", help="Model folder that guides the choice of jumps "
                                                  "(guided) or generates (neural). Default: the shipped model.")] = None,
    no_model: Annotated[bool, typer.Option("--no-model", help="Guided engine on musical similarity alone.")] = False,
    video: Annotated[Optional[Path], typer.Option("--video", help="Fit the music to this clip: the target length is "
                                                  "its exact duration. With -o CLIP.mp4/.mov/.mkv/.webm (or --format), "
                                                  "the output is the clip with the music as its audio (video copied, "
                                                  "never re-encoded); with an audio output, only the music.",
                                                  rich_help_panel="Music for a video")] = None,
    fade_out: Annotated[Optional[float], typer.Option("--fade-out", metavar="SECONDS", help="Fade the music out over "
                                                      "its last SECONDS (after the extension: the real ending is "
                                                      "still there, under the fade). Default: no fade.",
                                                      rich_help_panel="Music for a video")] = None,
    keep_original_audio: Annotated[Optional[float], typer.Option("--keep-original-audio", metavar="LEVEL_DB",
                                                                 help="Mix the clip's own sound under the music at "
                                                                 "LEVEL_DB (such as -12). Default: the music alone.",
                                                                 rich_help_panel="Music for a video")] = None,
) -> None:
    """Extend (or shorten) songs to an exact duration, keeping their real beginning and ending.

    The guided engine analyses beats, bars, harmony, timbre and loudness, then
    plays the song's own beginning, a middle recomposed from its own bars
    (jumps only where the musical context matches, each seam a short
    beat-aligned crossfade) and its real ending, untouched. Every seam is
    checked against the song's own moments (sample step, spectral jump) and a
    path whose seam stands out is re-planned. The length matches
    the request within 10 ms without padding or trimming: each seam may move by
    up to 10 ms to absorb the fraction of a beat that is left, and what the
    seams cannot absorb is taken by a local, pitch-preserving time-stretch
    (WSOLA) of 2-20 s of the steadiest passage between the seams (at most
    3 %, typically 2 %; pitch unchanged; reported as "stretch" in --json:
    factor and output region). The song's first seconds and its real
    ending are never stretched. A target shorter than the song shortens it
    the same way (forward jumps).

    Short clips (from 2 s, a few bars) are looped on the beat and end with
    their own ending. Input shorter than 2 s and digital silence are errors
    (exit 3); music without a detectable pulse (or fewer than 8 beats) is cut
    on a fixed 0.5 s grid with longer (80 ms) crossfades whose seams may move
    freely ("fallback": "no-pulse" in --json).

    --video CLIP fits the music to a clip: the target is the clip's exact
    duration; -o scored.mp4 (or .mov: AAC audio; .mkv, .webm: Opus) writes the
    clip with the music as its only audio, its video copied packet for packet.

    --json prints, per input, one line: input, output, input_seconds,
    output_seconds, target_seconds, sample_rate, channels, seams (output times,
    s), segments (source_start, source_end, output_start, s), engine, model,
    fallback, tempo_bpm, beats_per_bar, stretch ({"factor", "region_seconds"}
    or null), seed, timings (s), video and video_seconds (the clip, or null).

    The neural engine needs a model; it only extends, appending frames after
    the untouched original (no real ending: that is the paper's method).
    """
    state: AppState = ctx.obj if isinstance(ctx.obj, AppState) else AppState()
    # one BLAS thread (set before numpy loads; a user's setting wins): the matrices here
    # are small, and threads only contend with each other and with --jobs workers
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    job_list = make_jobs(inputs, target_seconds=target_seconds_from(minutes, seconds, duration, video=video, hours=hours),
                         output=output, out_dir=out_dir, format=format.value if format is not None else None,
                         seed=seed, force=force, engine=engine.value, model=model, use_model=not no_model,
                         video=video, fade_out_seconds=fade_out, keep_original_audio_db=keep_original_audio)

    def report(record: ExtendRecord) -> None:
        if as_json:
            print(json.dumps(record.to_json()), flush=True)
        log(state, f"{record.input} -> {record.output} ({record.output_seconds:.2f} s, {len(record.seams)} seams)")

    single = len(job_list) == 1
    label = f"extending {job_list[0].input.name}" if single else "extending"
    with progress_for(state, label, batch=not single) as update:
        done = run_jobs(job_list, workers=jobs, on_record=report, on_error=print_error, on_progress=update)
    if not single:
        log(state, f"{done} of {len(job_list)} files extended")
