"""`harmonizer extend SONG.m4a --video CLIP.mp4 -o scored.mp4`, measured as the issue checks it.

Run by hand (under a minute):

    .venv/bin/python benchmarks/video_soundtrack.py [--clip-seconds 37.5] [--song-seconds 20 134]
        [--real ../shared/music/songs/funk-casino-163105.mp3] [--out benchmarks/results/video_soundtrack.json]

1. A clip is generated with PyAV in /tmp/harmonizer-bench/video: ``--clip-seconds`` of
   H.264 (libx264, 320x240, 24 frames/s, with B-frames) with an AAC tone as its sound.
2. Songs as AAC .m4a (written by PyAV): each ``--song-seconds`` of the tests' synthesized
   song (44.1 kHz stereo), and, with ``--real``, a real song re-encoded to AAC.
3. For each song, ``harmonizer extend SONG --video CLIP -o scored.mp4 --no-model`` as a cold
   command, with audioread made unusable (no system ffmpeg is needed) and PATH without
   ffmpeg; then: are the video packets of clip and output the same bytes and times, are the
   decoded pictures the same, and how long is the music (decoded with PyAV, as a player
   gets it, and as the container declares it) against the video stream's duration.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
WORK = Path("/tmp/harmonizer-bench/video")

# audioread (the ffmpeg fallback) is made to fail, so nothing can reach a system ffmpeg
NO_FFMPEG = ("import audioread, runpy, sys\n"
             "def _none(*a, **k):\n    raise audioread.NoBackendError()\n"
             "audioread.audio_open = _none\n"
             "sys.argv = ['harmonizer'] + sys.argv[1:]\n"
             "runpy.run_module('harmonizer_cli', run_name='__main__')\n")


def make_clip(path: Path, seconds: float) -> None:
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        video.options = {"preset": "veryfast", "bf": "2"}
        audio = container.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        rng = np.random.default_rng(0)
        for index in range(int(round(seconds * 24))):
            image = np.full((240, 320, 3), 30, np.uint8)
            image[:, (index * 4) % 320] = 255
            image[100:140, 100:200] = rng.integers(0, 255, (40, 100, 3), np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode())
        t = np.arange(int(round(seconds * 48000))) / 48000
        tone = np.tile((0.2 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), (2, 1))
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, 0, Fraction(1, 48000)
        container.mux(audio.encode(frame))
        container.mux(audio.encode(None))


def measure(clip: Path, out: Path) -> dict:
    import av
    from test_media import video_frames, video_packets

    a, b = video_packets(clip), video_packets(out)
    same_packets = len(a) == len(b) and all(x[0] == y[0] and x[1] == y[1] and x[2] == y[2] for x, y in zip(a, b))
    with av.open(str(out)) as container:
        video = container.streams.video[0]
        video_seconds = float(video.duration * video.time_base)
        stream = container.streams.audio[0]
        declared = float(stream.duration * stream.time_base)
        rate = stream.codec_context.sample_rate
        n_decoded = sum(frame.samples for frame in container.decode(stream))
    return {"video_packets": len(a), "same_packets": same_packets,
            "same_pictures": video_frames(clip) == video_frames(out), "video_seconds": video_seconds,
            "music_decoded_seconds": n_decoded / rate, "music_declared_seconds": declared,
            "decoded_minus_video_ms": round((n_decoded / rate - video_seconds) * 1000, 3),
            "declared_minus_video_ms": round((declared - video_seconds) * 1000, 3), "sample_rate": rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip-seconds", type=float, default=37.5)
    parser.add_argument("--song-seconds", type=float, nargs="*", default=[20.0, 134.0])
    parser.add_argument("--real", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "video_soundtrack.json")
    args = parser.parse_args()

    from test_extension import make_song
    from test_media import write_audio

    from harmonizer_cli.core.audio_io import load_audio, save_audio

    WORK.mkdir(parents=True, exist_ok=True)
    clip = WORK / "clip.mp4"
    make_clip(clip, args.clip_seconds)
    songs = []
    for seconds in args.song_seconds:
        path = WORK / f"song_{seconds:g}s.m4a"
        write_audio(path, make_song(seconds, sample_rate=44100).samples, 44100, codec="aac", container_format="ipod")
        songs.append(path)
    if args.real is not None:
        audio = load_audio(args.real)
        songs.append(save_audio(WORK / f"{args.real.stem}.m4a", audio.samples, audio.sample_rate, overwrite=True))
    env = {**os.environ, "PATH": "/nonexistent", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    results = []
    print(f"{'song':44} {'wall s':>7} {'same packets':>12} {'pictures':>9} {'video s':>9} "
          f"{'decoded-video ms':>17} {'declared-video ms':>18}")
    for song in songs:
        out = WORK / f"{song.stem}.scored.mp4"
        started = time.perf_counter()
        run = subprocess.run([sys.executable, "-c", NO_FFMPEG, "extend", str(song), "--video", str(clip), "-o",
                              str(out), "--no-model", "--force", "--json"], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        if run.returncode != 0:
            raise SystemExit(f"{song}: exit {run.returncode}\n{run.stderr}")
        record = json.loads(run.stdout.strip().splitlines()[-1])
        row = {"song": str(song), "song_seconds": record["input_seconds"], "wall_seconds": round(wall, 2),
               "timings": record["timings"], **measure(clip, out)}
        results.append(row)
        print(f"{song.name:44} {wall:7.2f} {str(row['same_packets']):>12} {str(row['same_pictures']):>9} "
              f"{row['video_seconds']:9.4f} {row['decoded_minus_video_ms']:17.3f} {row['declared_minus_video_ms']:18.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
