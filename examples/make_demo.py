"""Synthesize the demo piece ``examples/demo.ogg``: 42 s, 44.1 kHz stereo, made here.

A small song at 96 BPM in 4/4 with an intro, two contrasting sections, a return
and a real ending (a held chord that rings out), so that ``harmonizer extend`` has
a beginning, an end and a middle to recompose. Drums, bass, chords and a melody
are built from sines and seeded noise; the same command always writes the same
file.

    python examples/make_demo.py [--output examples/demo.ogg]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 44100
BPM = 96.0
BEAT = 60.0 / BPM  # seconds
BAR = 4 * BEAT

# Chords as MIDI notes (C major): I vi IV V and IV V iii vi.
SECTION_A = [(60, 64, 67), (57, 60, 64), (53, 57, 60), (55, 59, 62)]
SECTION_B = [(53, 57, 60), (55, 59, 62), (52, 55, 59), (57, 60, 64)]
MELODY_A = [72, 74, 76, 79, 76, 74, 72, 69, 72, 71, 69, 67, 69, 71, 72, 74]
MELODY_B = [77, 76, 74, 72, 74, 76, 77, 79, 76, 74, 72, 71, 72, 74, 76, 72]


def midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12)


def envelope(n: int, *, attack: float, decay: float) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    return np.minimum(1.0, t / max(attack, 1e-4)) * np.exp(-t / decay)


def tone(note: float, seconds: float, *, harmonics: int, attack: float, decay: float) -> np.ndarray:
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f = midi_hz(note)
    wave = sum(np.sin(2 * np.pi * f * k * t) / k**1.3 for k in range(1, harmonics + 1))
    return (wave * envelope(n, attack=attack, decay=decay)).astype(np.float32)


def kick(rng: np.random.Generator) -> np.ndarray:
    n = int(0.35 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    phase = 2 * np.pi * (45 * t + 60 * (1 - np.exp(-t / 0.04)) * 0.04 * 25)
    return (np.sin(phase) * np.exp(-t / 0.12)).astype(np.float32)


def snare(rng: np.random.Generator) -> np.ndarray:
    n = int(0.2 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    noise = rng.standard_normal(n) * np.exp(-t / 0.05)
    body = np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.07)
    return (0.5 * noise + 0.6 * body).astype(np.float32)


def hat(rng: np.random.Generator) -> np.ndarray:
    n = int(0.06 * SAMPLE_RATE)
    noise = np.diff(rng.standard_normal(n + 1))  # a first difference brightens the noise
    return (noise * np.exp(-np.arange(n) / SAMPLE_RATE / 0.015) * 0.35).astype(np.float32)


def place(track: np.ndarray, sound: np.ndarray, seconds: float, gain: float, pan: float = 0.0) -> None:
    start = int(round(seconds * SAMPLE_RATE))
    end = min(track.shape[0], start + sound.shape[0])
    left, right = np.cos((pan + 1) * np.pi / 4), np.sin((pan + 1) * np.pi / 4)
    track[start:end, 0] += gain * left * sound[: end - start]
    track[start:end, 1] += gain * right * sound[: end - start]


def render_demo(seed: int = 7) -> np.ndarray:
    """The demo song, shape (n_samples, 2), float32, peak 0.9."""
    rng = np.random.default_rng(seed)
    plan = (["intro"] * 2 + ["A"] * 4 + ["B"] * 4 + ["A"] * 4 + ["end"] * 2)
    total = len(plan) * BAR + 3.0  # the last chord rings out
    song = np.zeros((int(total * SAMPLE_RATE), 2), dtype=np.float32)
    for bar_index, part in enumerate(plan):
        start = bar_index * BAR
        chords = SECTION_B if part == "B" else SECTION_A
        chord = chords[bar_index % 4] if part != "end" else SECTION_A[0]
        # pad chords, long in the last bars
        length = BAR * (2.5 if bar_index == len(plan) - 1 else 1.05)
        for k, note in enumerate(chord):
            place(song, tone(note, length, harmonics=4, attack=0.08, decay=1.6 if part != "end" else 2.5),
                  start, 0.10, pan=(k - 1) * 0.5)
        if part == "end" and bar_index == len(plan) - 1:
            place(song, tone(chord[0] - 24, length, harmonics=3, attack=0.01, decay=2.0), start, 0.3)
            place(song, kick(rng), start, 0.8)
            continue
        # bass on beats 1 and 3, root an octave or two down
        for beat in (0, 2):
            place(song, tone(chord[0] - 24, BEAT * 1.8, harmonics=3, attack=0.005, decay=0.5),
                  start + beat * BEAT, 0.32)
        # drums
        for beat in range(4):
            at = start + beat * BEAT
            if part != "intro" or beat % 2 == 0:
                place(song, kick(rng), at, 0.75 if beat % 2 == 0 else 0.45)
            if part != "intro" and beat % 2 == 1:
                place(song, snare(rng), at, 0.35, pan=0.1)
            for half in (0.0, 0.5):
                place(song, hat(rng), at + half * BEAT, 0.5 if half == 0 else 0.3, pan=0.4)
        # melody: four eighth-ish notes per bar in the sections
        if part in ("A", "B"):
            notes = MELODY_B if part == "B" else MELODY_A
            for step in range(4):
                note = notes[(bar_index * 4 + step) % 16]
                place(song, tone(note, BEAT * 0.95, harmonics=6, attack=0.004, decay=0.35),
                      start + step * BEAT, 0.16, pan=-0.3)
    return (song * (0.9 / np.max(np.abs(song)))).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("demo.ogg"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    song = render_demo(args.seed)
    with sf.SoundFile(args.output, "w", SAMPLE_RATE, 2, format="OGG", subtype="VORBIS") as handle:
        for start in range(0, song.shape[0], 1 << 16):  # in blocks: see audio_io.save_audio
            handle.write(song[start : start + (1 << 16)])
    print(f"wrote {args.output} ({song.shape[0] / SAMPLE_RATE:.1f} s, {args.output.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
