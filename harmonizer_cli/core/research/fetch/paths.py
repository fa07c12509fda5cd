"""Untrusted names and finished files: safe paths under the destination, hashes, decoding.

``safe_relative_path`` refuses names that would leave the destination and ``_inside``
refuses paths that reach outside it through a link. A finished ``.part`` file is
checked against the listing's size and hashes and decoded (``verify_audio``) before
it gets its final name (``_verify_part``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from harmonizer_cli.core.audio_io import AUDIO_SUFFIXES
from harmonizer_cli.core.research.fetch.options import RemoteFile, _PermanentError
from harmonizer_cli.errors import AudioError, DataError

if TYPE_CHECKING:
    from harmonizer_cli.core.research.fetch.http import _Context

PART_SUFFIX = ".part"

_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_relative_path(name: str) -> str:
    """Check that an untrusted name stays inside the destination; return it normalised.

    Backslashes count as separators; ``.`` and empty components are dropped.

    Raises
    ------
    DataError
        An empty name, an absolute path, a drive letter, a ``..`` component, control
        characters, or a name ending in ``.part`` (reserved for partial files).

    Examples
    --------
    >>> safe_relative_path("Mix Music/./a.mp3")
    'Mix Music/a.mp3'
    """
    text = str(name).replace("\\", "/")
    shown = repr(str(name))
    if any(ord(c) < 32 for c in text):
        raise DataError(f"unsafe name {shown}: control characters")
    if text.startswith("/"):
        raise DataError(f"unsafe name {shown}: absolute path")
    if _DRIVE.match(text):
        raise DataError(f"unsafe name {shown}: drive letter")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DataError(f"unsafe name {shown}: '..' leads outside the destination")
    if not parts:
        raise DataError(f"unsafe name {shown}: empty")
    if parts[-1].endswith(PART_SUFFIX):
        raise DataError(f"unsafe name {shown}: '{PART_SUFFIX}' is reserved for partial files")
    return "/".join(parts)


def _inside(dest: Path, relative: str) -> Path:
    """``dest / relative``, refusing a result outside ``dest`` (e.g. through a symlinked folder)."""
    target = dest / relative
    root = dest.resolve()
    parent = target.parent.resolve()
    if parent != root and root not in parent.parents:
        raise _PermanentError(f"would be written outside {dest} (through a link)")
    return target


def _is_audio_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in AUDIO_SUFFIXES


def git_blob_sha1(path: str | os.PathLike) -> str:
    """The git blob sha1 of a file (what GitHub's contents API calls ``sha``)."""
    path = Path(path)
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    _hash_file(path, digest)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    _hash_file(path, digest)
    return digest.hexdigest()


def _hash_file(path: Path, digest: "hashlib._Hash") -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def verify_audio(path: str | os.PathLike) -> None:
    """Decode a file from start to end, block by block (memory stays bounded).

    Formats libsndfile reads are streamed; others (m4a) go through ``load_audio``.

    Raises
    ------
    AudioError
        The file does not decode, holds no samples, or holds NaN/infinite samples.
    """
    import numpy as np
    import soundfile as sf

    from harmonizer_cli.core.audio_io import load_audio

    path = Path(path)
    try:
        n_frames = 0
        with sf.SoundFile(str(path)) as handle:
            while True:
                block = handle.read(1 << 16, dtype="float32")
                if len(block) == 0:
                    break
                if not np.isfinite(block).all():
                    raise AudioError("contains NaN or infinite samples", path=path)
                n_frames += len(block)
    except (sf.LibsndfileError, RuntimeError, ValueError, EOFError):
        load_audio(path)  # audioread (ffmpeg) fallback; raises AudioError
        return
    if n_frames == 0:
        raise AudioError("contains no audio samples", path=path)


def _part_path(final: Path) -> Path:
    return final.with_name(final.name + PART_SUFFIX)


def _matches(final: Path, item: RemoteFile) -> str | None:
    """None when ``final`` is the listed file; otherwise what differs."""
    size = final.stat().st_size
    if item.size is not None and size != item.size:
        return f"size {size} differs from the source's {item.size}"
    if item.sha256 is not None and _sha256(final) != item.sha256:
        return "sha256 differs from the source's"
    if item.git_sha1 is not None and git_blob_sha1(final) != item.git_sha1:
        return "git sha1 differs from the source's"
    return None


def _verify_part(item: RemoteFile, part: Path, ctx: _Context) -> None:
    """Check a complete ``.part`` file; remove it and raise ``_PermanentError`` if wrong."""
    try:
        size = part.stat().st_size
        if item.size is not None and size != item.size:
            raise _PermanentError(f"downloaded {size} bytes, the listing says {item.size}")
        if item.sha256 is not None:
            got = _sha256(part)
            if got != item.sha256:
                raise _PermanentError(f"sha256 mismatch (expected {item.sha256[:12]}..., got {got[:12]}...)")
        if item.git_sha1 is not None:
            got = git_blob_sha1(part)
            if got != item.git_sha1:
                raise _PermanentError(f"git sha1 mismatch (expected {item.git_sha1[:12]}..., got {got[:12]}...)")
        if item.check_audio and ctx.options.verify_audio:
            try:
                verify_audio(part)
            except AudioError as exc:
                raise _PermanentError(f"does not decode as audio ({exc.message})") from None
    except _PermanentError:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise
