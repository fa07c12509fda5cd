"""The fixed music panels of the quality benchmarks (from ../shared/music).

``songs``   the 12 songs the engine was tuned on (``songs/``).
``unseen``  music the engine is never tuned on: every 4th track of ``train/`` (sorted by
            name, starting with the first; ``wesnoth-main-menu`` left out, an earlier
            session tuned on it), and one short clip of each of the 12 songs (3, 5, 7, 9,
            11 or 13 s in turn, from 40 % into the song): jingles, loops, a chorus cut.
            Report it beside ``songs``; never change a weight because of it.
``dev``     music to tune on that is in neither panel: the 11 tracks of ``train/`` earlier
            sessions tuned on, the 2nd of every 4 other tracks shorter than 6 minutes,
            and clips of 2-12 s cut from 30 % into other ``train/`` tracks.
``loops``   short clips to tune the looping of clips on: two of each of the 12 songs, from
            25 % and 55 % into it (7, 9, 11 or 13 s in turn; never the unseen clips' 40 %).

``materialize(panel, folder)`` links the tracks and writes the clips (16-bit WAV at the
song's own rate and channels) into ``folder`` and returns their paths, sorted.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MUSIC = REPO.parent / "shared" / "music"
PANELS = ("songs", "unseen", "dev", "loops")

#: Tracks an earlier session tuned the engine on ("held out" then; not unseen now).
EARLIER_TUNING = ("wesnoth-sad", "wesnoth-transience", "wesnoth-main-menu", "wesnoth-battle-epic",
                  "wesnoth-revelation", "wesnoth-frantic-old", "wesnoth-love-theme", "wesnoth-underground",
                  "wesnoth-frantic", "wesnoth-loyalists", "warzone2100-menu")
UNSEEN_CLIP_SECONDS = (3.0, 5.0, 7.0, 9.0, 11.0, 13.0)
DEV_CLIP_SECONDS = (2.0, 4.0, 6.0, 8.0, 10.0, 12.0)
LOOP_CLIP_SECONDS = (7.0, 9.0, 11.0, 13.0)


def _train() -> list[Path]:
    return sorted((MUSIC / "train").glob("*.ogg"))


def _songs() -> list[Path]:
    return sorted(p for p in (MUSIC / "songs").glob("*.mp3"))


def panel_sources(panel: str) -> tuple[list[Path], list[tuple[Path, float, float]]]:
    """Whole tracks and clips ``(source, start fraction, seconds)`` of a panel."""
    import soundfile as sf

    train = _train()
    if panel == "songs":
        return _songs(), []
    if panel == "unseen":
        tracks = [p for i, p in enumerate(train) if i % 4 == 0 and p.stem not in EARLIER_TUNING]
        clips = [(song, 0.4, UNSEEN_CLIP_SECONDS[i % len(UNSEEN_CLIP_SECONDS)]) for i, song in enumerate(_songs())]
        return tracks, clips
    if panel == "dev":
        tracks = [p for p in train if p.stem in EARLIER_TUNING]
        tracks += [p for i, p in enumerate(train) if i % 4 == 2 and p.stem not in EARLIER_TUNING
                   and sf.info(str(p)).duration < 360][::2]
        others = [p for i, p in enumerate(train) if i % 4 in (1, 3)]
        clips = [(p, 0.3, DEV_CLIP_SECONDS[i % len(DEV_CLIP_SECONDS)]) for i, p in enumerate(others[::5])]
        return tracks, clips
    if panel == "loops":
        n = len(LOOP_CLIP_SECONDS)
        clips = [(song, fraction, LOOP_CLIP_SECONDS[(i + 2 * j) % n])
                 for i, song in enumerate(_songs()) for j, fraction in enumerate((0.25, 0.55))]
        return [], clips
    raise ValueError(f"unknown panel {panel!r} (choose from {', '.join(PANELS)})")


def materialize(panel: str, folder: Path) -> list[Path]:
    """The panel's files in ``folder``: tracks linked, clips written as 16-bit WAV."""
    sys.path.insert(0, str(REPO))
    from harmonizer_cli.core.audio_io import load_audio, save_audio

    folder.mkdir(parents=True, exist_ok=True)
    tracks, clips = panel_sources(panel)
    out = []
    for track in tracks:
        link = folder / track.name
        if not link.exists():
            link.symlink_to(track.resolve())
        out.append(link)
    for source, fraction, seconds in clips:
        path = folder / f"clip{seconds:02.0f}s-{source.stem}.wav"
        if not path.exists():
            audio = load_audio(source)
            start = int(fraction * audio.n_samples)
            save_audio(path, audio.samples[start:start + int(seconds * audio.sample_rate)], audio.sample_rate)
        out.append(path)
    return sorted(out)


if __name__ == "__main__":
    for name in PANELS:
        tracks, clips = panel_sources(name)
        print(f"{name}: {len(tracks)} tracks, {len(clips)} clips")
        for track in tracks:
            print(f"  {track.name}")
        for source, fraction, seconds in clips:
            print(f"  clip {seconds:g} s from {fraction:.0%} of {source.name}")
