"""Turn a folder of songs into training windows: ``harmonizer preprocess``, and reading them back.

Each song is decoded, converted to 22050 Hz mono, cut into 1-second frames (the whole
song, the last frame zero-padded) and stored once as a frame sequence in its
representation: ``songs/<id>.npy``, float32, shape (n_frames, frame_size). Windows
(20 frames in, 10 out) are not duplicated on disk: window ``w`` of a song starts at
frame ``w * hop`` and ``manifest.json`` records each song's number of windows and its
split. So a corpus of 6 hours takes 22 MB as logmel (1.9 GB as waveform).

- Songs are split into train/validation/test BY SONG: the songs with at least one
  window, sorted by id, are permuted by ``numpy.random.default_rng(seed)`` and the
  first ``round(n * test)`` go to test, the next ``round(n * validation)`` to
  validation (at least one each when the fraction is non-zero and n >= 3), the rest
  to train.
- Streaming: songs are processed one at a time (per worker with ``jobs > 1``), so peak
  memory depends on the longest song, not on the corpus.
- Incremental: a song whose size, modification time and feature configuration are
  unchanged and whose shard exists is not decoded again. The split and windows are
  recomputed on every run (they are cheap).
- Resumable: beside each finished shard, ``songs/<id>.json`` records what it was made
  from, so a run that was interrupted (or failed) before writing ``manifest.json``
  does not decode its finished songs again.
- Undecodable files are reported in ``manifest["failed"]`` and skipped.
- Exclusions: files whose relative path, name or stem matches one of the ``exclude``
  glob patterns (``fnmatch``) are not read at all (``manifest["excluded"]`` lists
  them): music kept out of training, for example a benchmark's panel.
- ``test_fraction`` 1.0 puts every song in the test split: a folder of songs never
  trained on, to evaluate a model on.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from harmonizer_cli.core._typing import ProgressFn
from harmonizer_cli.core.audio_io import AUDIO_SUFFIXES
from harmonizer_cli.core.features import REPRESENTATIONS, LogMelSpec, frame_size_for, frames_for
from harmonizer_cli.core.framing import N_INPUT_FRAMES, N_OUTPUT_FRAMES, count_windows
from harmonizer_cli.errors import AudioError, ConfigError, DataError

__all__ = [
    "PreprocessConfig",
    "PreprocessResult",
    "ProcessedData",
    "find_audio_files",
    "is_excluded",
    "read_pattern_file",
    "preprocess_dataset",
    "split_songs",
    "load_processed",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "harmonizer-processed"
MANIFEST_VERSION = 1
SHARD_FOLDER = "songs"
SPLITS = ("train", "validation", "test")
#: What ``ProcessedData.songs`` also accepts: every song with a window, whatever its split.
ALL_SPLITS = "all"


@dataclass(frozen=True)
class PreprocessConfig:
    """Options of ``preprocess_dataset``.

    Attributes
    ----------
    representation : {"logmel", "waveform"}
    hop : int
        Frames (seconds) between the starts of consecutive windows of a song.
    seed : int
        Seed of the by-song split.
    validation_fraction, test_fraction : float
        Fractions of the songs held out (the rest is train).
    jobs : int
        Worker processes (1 = in this process).
    logmel : LogMelSpec
    exclude : tuple of str
        Glob patterns of files not to read (matched against the relative path, the
        file name and its stem).
    """

    representation: str = "logmel"
    hop: int = 2
    seed: int = 0
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    jobs: int = 1
    logmel: LogMelSpec = field(default_factory=LogMelSpec)
    exclude: tuple[str, ...] = ()

    def validate(self) -> "PreprocessConfig":
        if self.representation not in REPRESENTATIONS:
            raise ConfigError(f"unknown representation {self.representation!r} "
                              f"(choose from {', '.join(REPRESENTATIONS)})")
        if self.hop < 1:
            raise ConfigError(f"--hop must be a positive number of seconds, got {self.hop}")
        if self.jobs < 1:
            raise ConfigError(f"--jobs must be positive, got {self.jobs}")
        fractions = (self.validation_fraction, self.test_fraction)
        if min(fractions) < 0 or sum(fractions) > 1 + 1e-9:
            raise ConfigError(f"validation and test fractions must be >= 0 and sum to at most 1, got "
                              f"{self.validation_fraction} and {self.test_fraction}")
        self.logmel.validate()
        return self

    def feature_hash(self) -> str:
        """Hash of everything a song's shard depends on (not hop, seed or split)."""
        key = {"version": MANIFEST_VERSION, "representation": self.representation,
               "logmel": self.logmel.to_dict() if self.representation == "logmel" else None,
               "frame_length": self.logmel.frame_length, "sample_rate": self.logmel.sample_rate}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class PreprocessResult:
    """What ``preprocess_dataset`` did.

    Attributes
    ----------
    manifest : dict
        The manifest written.
    processed, skipped : int
        Songs decoded now, songs reused unchanged.
    failed : list of dict
        ``{"source", "error"}`` for each undecodable file.
    audio_seconds : float
        Seconds of audio decoded in this run.
    """

    manifest: dict
    processed: int = 0
    skipped: int = 0
    failed: list = field(default_factory=list)
    audio_seconds: float = 0.0

    def summary(self) -> dict:
        totals = self.manifest["totals"]
        return {"output": self.manifest.get("output"), "songs": len(self.manifest["songs"]),
                "processed": self.processed, "skipped_unchanged": self.skipped,
                "failed": len(self.failed), "excluded": len(self.manifest.get("excluded", [])),
                "audio_seconds_decoded": round(self.audio_seconds, 1),
                **{f"{split}_windows": totals[split]["windows"] for split in SPLITS},
                **{f"{split}_songs": totals[split]["songs"] for split in SPLITS}}


def find_audio_files(folder: str | os.PathLike) -> list[Path]:
    """Audio files under ``folder`` (recursively), sorted by relative path.

    Raises
    ------
    DataError
        If the folder does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("input folder not found", path=folder)
    found = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
             and not p.name.startswith(".")]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def is_excluded(relative: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """Whether a file's relative path, its name or its stem matches one of the glob ``patterns``.

    Examples
    --------
    >>> is_excluded("game/wesnoth-knolls.ogg", ["wesnoth-knolls"])
    True
    >>> is_excluded("game/wesnoth-knolls.ogg", ["warzone*"])
    False
    """
    name = relative.rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0]
    return any(fnmatch.fnmatchcase(text, pattern) for pattern in patterns for text in (relative, name, stem))


def read_pattern_file(path: str | os.PathLike) -> list[str]:
    """Glob patterns of a text file: one per line; blank lines and ``#`` comments are ignored.

    Raises
    ------
    ConfigError
        If the file cannot be read.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the pattern file ({exc})", path=path) from exc
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def song_id_for(relative: str) -> str:
    """A file-name-safe, unique id for a song's relative path."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", relative.rsplit(".", 1)[0])[:80].strip("._") or "song"
    return f"{stem}-{hashlib.sha256(relative.encode()).hexdigest()[:8]}"


def _process_song(task: tuple[str, str, str, PreprocessConfig]) -> dict:
    """Decode one song and write its shard; runs in a worker process. Never raises for bad audio."""
    from harmonizer_cli.core.audio_io import load_audio, to_model_view
    from harmonizer_cli.core.audio_out import atomic_output

    source, relative, shard_path, config = task
    try:
        mono = to_model_view(load_audio(source), sample_rate=config.logmel.sample_rate)
        frames = frames_for(mono, representation=config.representation, spec=config.logmel)
    except AudioError as exc:
        return {"relative": relative, "error": exc.message}
    shard_path = Path(shard_path)
    with atomic_output(shard_path, overwrite=True) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(frames, dtype=np.float32))
        tmp.chmod(0o644)
    return {"relative": relative, "n_samples": int(mono.size), "n_frames": int(frames.shape[0])}


def split_songs(song_ids: list[str], *, seed: int, validation_fraction: float,
                test_fraction: float) -> dict[str, str]:
    """Assign each song to ``train``, ``validation`` or ``test`` (see the module docstring).

    Returns
    -------
    dict
        song id -> split name.
    """
    ids = sorted(song_ids)
    n = len(ids)
    order = np.random.default_rng(seed).permutation(n)

    def count(fraction: float) -> int:
        k = int(round(n * fraction))
        return max(k, 1) if fraction > 0 and n >= 3 else k

    n_test, n_val = count(test_fraction), count(validation_fraction)
    splits = {}
    for rank, index in enumerate(order):
        splits[ids[index]] = "test" if rank < n_test else "validation" if rank < n_test + n_val else "train"
    return splits


def _sidecar_path(shard: Path) -> Path:
    return shard.with_suffix(".json")


def _write_sidecar(shard: Path, record: dict, feature_hash: str) -> None:
    """Record beside a finished shard what it was made from (see "Resumable")."""
    from harmonizer_cli.core.audio_out import atomic_output

    facts = {"relative": record["relative"], "size": record["size"], "mtime_ns": record["mtime_ns"],
             "feature_hash": feature_hash, "n_samples": record["n_samples"],
             "n_frames": record["n_frames"]}
    with atomic_output(_sidecar_path(shard), overwrite=True) as tmp:
        tmp.write_text(json.dumps(facts) + "\n")


def _read_sidecar(shard: Path, feature_hash: str) -> dict | None:
    """The facts of a finished shard made with ``feature_hash``, or None."""
    try:
        facts = json.loads(_sidecar_path(shard).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(facts, dict) or facts.get("feature_hash") != feature_hash:
        return None
    if not all(isinstance(facts.get(key), int) for key in ("size", "mtime_ns", "n_samples", "n_frames")):
        return None
    return facts


def _read_manifest(path: Path) -> dict | None:
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DataError(f"unreadable manifest ({exc})", path=path) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise DataError("not a harmonizer manifest", path=path)
    return manifest


def preprocess_dataset(
    input_folder: str | os.PathLike,
    output_folder: str | os.PathLike,
    *,
    config: PreprocessConfig = PreprocessConfig(),
    on_progress: ProgressFn = None,
) -> PreprocessResult:
    """Decode every song of ``input_folder`` into frame shards plus ``manifest.json``.

    Parameters
    ----------
    input_folder : str or os.PathLike
        Searched recursively for ``AUDIO_SUFFIXES`` files; never modified.
    output_folder : str or os.PathLike
        Created if needed; holds ``manifest.json`` and ``songs/<id>.npy``.
    config : PreprocessConfig
    on_progress : callable(done, total), optional
        Called after each song.

    Returns
    -------
    PreprocessResult

    Raises
    ------
    DataError
        Missing input folder, no audio files, or no song could be decoded.
    ConfigError
        Invalid options.
    """
    config.validate()
    input_folder = Path(input_folder)
    output_folder = Path(output_folder)
    found = find_audio_files(input_folder)
    if not found:
        raise DataError(f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})", path=input_folder)
    excluded = [p for p in found if is_excluded(p.relative_to(input_folder).as_posix(), config.exclude)]
    files = [p for p in found if p not in excluded]
    if not files:
        raise DataError(f"all {len(found)} audio files are excluded", path=input_folder)
    shard_folder = output_folder / SHARD_FOLDER
    try:
        shard_folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the output folder ({exc.strerror})", path=output_folder) from exc
    manifest_path = output_folder / MANIFEST_NAME
    previous = _read_manifest(manifest_path) or {}
    feature_hash = config.feature_hash()
    known = {song["relative"]: song for song in previous.get("songs", [])
             if previous.get("feature_hash") == feature_hash}

    result = PreprocessResult(manifest={})
    records, tasks = _plan_songs(files, input_folder, output_folder, known=known,
                                 feature_hash=feature_hash, config=config, result=result)
    _process_songs(tasks, records, output_folder, feature_hash=feature_hash, config=config,
                   result=result, total=len(files), on_progress=on_progress)
    if not records:
        raise DataError(f"none of the {len(files)} audio files could be decoded", path=input_folder)
    songs = sorted(records.values(), key=lambda r: r["id"])
    totals = _split_and_count(songs, config)
    manifest = _build_manifest(config, feature_hash=feature_hash, input_folder=input_folder,
                               output_folder=output_folder, totals=totals, songs=songs,
                               failed=result.failed,
                               excluded=[p.relative_to(input_folder).as_posix() for p in excluded])
    _write_manifest(manifest_path, manifest, shard_folder, songs)
    result.manifest = manifest
    return result


def _plan_songs(
    files: list[Path], input_folder: Path, output_folder: Path, *, known: dict, feature_hash: str,
    config: PreprocessConfig, result: PreprocessResult,
) -> tuple[dict[str, dict], list[tuple[str, str, str, PreprocessConfig]]]:
    """A record per song, reusing the unchanged ones (counted in ``result.skipped``).

    Returns
    -------
    records : dict
        relative path -> manifest record (``n_samples``/``n_frames`` set when reused).
    tasks : list
        ``_process_song`` arguments of the songs to decode.
    """
    records: dict[str, dict] = {}
    tasks = []
    for path in files:
        relative = path.relative_to(input_folder).as_posix()
        stat = path.stat()
        song_id = song_id_for(relative)
        shard = f"{SHARD_FOLDER}/{song_id}.npy"
        record = {"id": song_id, "relative": relative, "source": str(path.resolve()),
                  "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "shard": shard}
        old = known.get(relative) or _read_sidecar(output_folder / shard, feature_hash)
        if (old and old.get("size") == stat.st_size and old.get("mtime_ns") == stat.st_mtime_ns
                and (output_folder / shard).is_file()):
            record.update(n_samples=old["n_samples"], n_frames=old["n_frames"])
            records[relative] = record
            result.skipped += 1
        else:
            records[relative] = record
            tasks.append((str(path), relative, str(output_folder / shard), config))
    return records, tasks


def _song_outcomes(tasks: list, jobs: int) -> Iterator[dict]:
    """``_process_song`` of each task, in order: here, or in ``jobs`` worker processes."""
    if jobs == 1 or len(tasks) <= 1:
        yield from map(_process_song, tasks)
        return
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks))) as pool:
        yield from pool.map(_process_song, tasks, chunksize=1)


def _process_songs(
    tasks: list, records: dict[str, dict], output_folder: Path, *, feature_hash: str,
    config: PreprocessConfig, result: PreprocessResult, total: int,
    on_progress: ProgressFn,
) -> None:
    """Decode the songs of ``tasks``: complete their records, or drop them as failed."""
    done = result.skipped
    if on_progress:
        on_progress(done, total)
    for outcome in _song_outcomes(tasks, config.jobs):
        record = records[outcome["relative"]]
        if "error" in outcome:
            result.failed.append({"source": record["source"], "error": outcome["error"]})
            del records[outcome["relative"]]
        else:
            record.update(n_samples=outcome["n_samples"], n_frames=outcome["n_frames"])
            _write_sidecar(output_folder / record["shard"], record, feature_hash)
            result.processed += 1
            result.audio_seconds += outcome["n_samples"] / config.logmel.sample_rate
        done += 1
        if on_progress:
            on_progress(done, total)


def _split_and_count(songs: list[dict], config: PreprocessConfig) -> dict:
    """Set each song's duration, windows and split; return the totals per split."""
    for song in songs:
        song["duration_seconds"] = round(song["n_samples"] / config.logmel.sample_rate, 3)
        song["n_windows"] = count_windows(song["n_frames"], n_input=N_INPUT_FRAMES,
                                          n_output=N_OUTPUT_FRAMES, hop=config.hop)
    splits = split_songs([s["id"] for s in songs if s["n_windows"] > 0], seed=config.seed,
                         validation_fraction=config.validation_fraction,
                         test_fraction=config.test_fraction)
    totals = {split: {"songs": 0, "windows": 0, "seconds": 0.0} for split in SPLITS}
    for song in songs:
        song["split"] = splits.get(song["id"], "none")  # "none": shorter than one window
        if song["split"] in totals:
            totals[song["split"]]["songs"] += 1
            totals[song["split"]]["windows"] += song["n_windows"]
            totals[song["split"]]["seconds"] += song["duration_seconds"]
    return totals


def _build_manifest(
    config: PreprocessConfig, *, feature_hash: str, input_folder: Path, output_folder: Path,
    totals: dict, songs: list[dict], failed: list, excluded: list[str],
) -> dict:
    """The ``manifest.json`` document."""
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "representation": config.representation,
        "frame_size": frame_size_for(config.representation, spec=config.logmel),
        "frame_length": config.logmel.frame_length,
        "sample_rate": config.logmel.sample_rate,
        "logmel": config.logmel.to_dict(),
        "feature_hash": feature_hash,
        "n_input_frames": N_INPUT_FRAMES,
        "n_output_frames": N_OUTPUT_FRAMES,
        "hop": config.hop,
        "seed": config.seed,
        "fractions": {"train": round(1 - config.validation_fraction - config.test_fraction, 6),
                      "validation": config.validation_fraction, "test": config.test_fraction},
        "input": str(input_folder.resolve()),
        "output": str(output_folder.resolve()),
        "totals": totals,
        "songs": songs,
        "failed": failed,
        "exclude": list(config.exclude),
        "excluded": excluded,
    }


def _write_manifest(manifest_path: Path, manifest: dict, shard_folder: Path, songs: list[dict]) -> None:
    """Write ``manifest.json``, then remove the shards and sidecars it does not reference."""
    from harmonizer_cli.core.audio_out import atomic_output

    with atomic_output(manifest_path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
        tmp.chmod(0o644)
    referenced = {Path(s["shard"]).name for s in songs}
    for stale in [*shard_folder.glob("*.npy"), *shard_folder.glob("*.json")]:  # removed or failed songs
        if stale.with_suffix(".npy").name not in referenced:
            stale.unlink(missing_ok=True)


class ProcessedData:
    """Read access to a preprocessed folder: windows of a split, memory-mapped.

    Parameters
    ----------
    folder : str or os.PathLike
        Output of ``preprocess_dataset``.

    Attributes
    ----------
    manifest : dict
    representation : str
    frame_size : int
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        manifest = _read_manifest(self.folder / MANIFEST_NAME)
        if manifest is None:
            raise DataError("no manifest.json (run harmonizer preprocess first)", path=self.folder)
        if manifest.get("version") != MANIFEST_VERSION:
            raise DataError(f"unsupported manifest version {manifest.get('version')!r}",
                            path=self.folder / MANIFEST_NAME)
        self.manifest = manifest
        self.representation = manifest["representation"]
        self.frame_size = int(manifest["frame_size"])
        self.hop = int(manifest["hop"])
        self.n_input = int(manifest["n_input_frames"])
        self.n_output = int(manifest["n_output_frames"])
        self._frames: dict[str, np.ndarray] = {}

    def songs(self, split: str) -> list[dict]:
        """The manifest records of a split's songs (sorted by id); ``"all"``: every split's."""
        if split == ALL_SPLITS:
            return [s for s in self.manifest["songs"] if s["split"] in SPLITS]
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r} (choose from {', '.join(SPLITS)}, {ALL_SPLITS})")
        return [s for s in self.manifest["songs"] if s["split"] == split]

    def frames(self, song: dict) -> np.ndarray:
        """A song's frames, memory-mapped: shape (n_frames, frame_size), float32.

        Raises
        ------
        DataError
            Missing or inconsistent shard.
        """
        key = song["id"]
        if key not in self._frames:
            path = self.folder / song["shard"]
            try:
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise DataError(f"unreadable shard ({exc})", path=path) from exc
            if array.shape != (song["n_frames"], self.frame_size) or array.dtype != np.float32:
                raise DataError(f"shard has shape {array.shape} {array.dtype}, manifest says "
                                f"({song['n_frames']}, {self.frame_size}) float32", path=path)
            self._frames[key] = array
        return self._frames[key]

    def window_index(self, split: str) -> np.ndarray:
        """All windows of a split as rows ``(song position in songs(split), first frame)``.

        Returns
        -------
        np.ndarray [shape=(n_windows, 2), dtype=int64]
        """
        rows = [np.stack([np.full(s["n_windows"], i), np.arange(s["n_windows"]) * self.hop], axis=1)
                for i, s in enumerate(self.songs(split)) if s["n_windows"] > 0]
        return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 2), np.int64)

    def gather(self, split: str, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The windows of ``index`` rows (``window_index``) as arrays.

        Returns
        -------
        inputs : np.ndarray [shape=(len(index), n_input, frame_size), dtype=float32]
        targets : np.ndarray [shape=(len(index), n_output, frame_size), dtype=float32]
        """
        songs = self.songs(split)
        span = self.n_input + self.n_output
        windows = np.empty((len(index), span, self.frame_size), dtype=np.float32)
        for row, (song, start) in enumerate(index):
            windows[row] = self.frames(songs[int(song)])[int(start):int(start) + span]
        return windows[:, :self.n_input], windows[:, self.n_input:]

    def feature_statistics(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean and standard deviation over a split's frames (streamed).

        For ``waveform`` one scalar mean/std is used for every sample position.

        Returns
        -------
        mean, std : np.ndarray [shape=(frame_size,), dtype=float32]
        """
        total = np.zeros(self.frame_size, np.float64)
        total_sq = np.zeros(self.frame_size, np.float64)
        count = 0
        for song in self.songs(split):
            frames = self.frames(song)
            for start in range(0, frames.shape[0], 256):
                block = np.asarray(frames[start:start + 256], dtype=np.float64)
                total += block.sum(axis=0)
                total_sq += (block ** 2).sum(axis=0)
                count += block.shape[0]
        if count == 0:
            raise DataError(f"the {split} split has no frames", path=self.folder)
        if self.representation == "waveform":
            mean = np.full(self.frame_size, total.sum() / (count * self.frame_size))
            var = np.full(self.frame_size, total_sq.sum() / (count * self.frame_size) - mean[0] ** 2)
        else:
            mean = total / count
            var = total_sq / count - mean ** 2
        return mean.astype(np.float32), np.sqrt(np.maximum(var, 1e-12)).astype(np.float32)


def load_processed(folder: str | os.PathLike) -> ProcessedData:
    """Open a preprocessed folder (see ``ProcessedData``)."""
    return ProcessedData(folder)
