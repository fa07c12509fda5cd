"""Receiving an upload: the multipart body streamed into a job's folder, sniffed and capped.

``read_upload`` parses ``multipart/form-data`` as it arrives (python-multipart's
streaming parser), writes each file straight into the job's folder under a name of
our own (``input.<suffix>``, ``video.<suffix>``; the suffix from a whitelist, never
the client's name), counts bytes and stops at the cap (413), and looks at each
file's first 16 bytes to refuse what is not audio or video before anything is
queued (415). ``sniff_media`` knows the magic numbers; ``display_name`` and
``download_name`` make the client's file name safe to show and to offer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Optional

from harmonizer_cli.core.audio_io import AUDIO_SUFFIXES

__all__ = ["ApiError", "UploadedFile", "Upload", "read_upload", "sniff_media", "display_name", "download_name",
           "VIDEO_SUFFIXES", "SNIFF_BYTES", "FILE_FIELDS", "TEXT_FIELDS"]

#: Video containers accepted as the clip (PyAV reads them).
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"})

#: Bytes of a file looked at to tell media from anything else.
SNIFF_BYTES = 16

#: Multipart file fields -> the stem they are stored under in the job's folder.
FILE_FIELDS = {"file": "input", "video": "video"}
#: Multipart text fields, and the most bytes each may hold.
TEXT_FIELDS = {"seconds": 32, "duration": 32, "seed": 32, "format": 16, "fade_out": 32, "keep_original_audio": 32}
#: Most parts (fields and files) one request may have.
MAX_PARTS = 8
#: Bytes of a request beyond its files' (boundaries, part headers, text fields).
BODY_OVERHEAD_BYTES = 1 << 20

#: Kind of media -> its suffixes (the first is the default for a song, resp. a clip).
_KIND_SUFFIXES = {
    "wav": (".wav",), "aiff": (".aiff", ".aif"), "flac": (".flac",), "ogg": (".ogg", ".oga", ".opus"),
    "mp3": (".mp3",), "aac": (".aac",), "asf": (".wma",), "mp4": (".m4a", ".mp4", ".m4v", ".mov"),
    "matroska": (".webm", ".mkv"), "avi": (".avi",),
}
_VIDEO_KINDS = {"mp4": ".mp4", "matroska": ".mkv", "avi": ".avi"}
_SONG_KINDS = set(_KIND_SUFFIXES) - {"avi"}
_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
_QUICKTIME_ATOMS = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}

_NOT_AUDIO = "cannot decode: not an audio file, or a corrupt or unsupported format"  # the CLI's words
_NOT_VIDEO = "not a video file, or a container this build does not read"


class ApiError(Exception):
    """A request the API refuses: answered ``{"error": message}`` with ``status``.

    Parameters
    ----------
    status : int
        HTTP status (400, 404, 409, 410, 413, 415, 422, 503).
    message : str
        One line, shown to the user as it is.
    """

    def __init__(self, status: int, message: str) -> None:
        self.status = int(status)
        self.message = " ".join(str(message).split())
        super().__init__(self.message)


def sniff_media(head: bytes) -> Optional[str]:
    """The kind of media ``head`` (a file's first bytes) starts, or None for anything else.

    Recognises RIFF/WAVE (and RF64, BW64), AIFF/AIFC, FLAC, Ogg, MP3 (ID3 tag or MPEG
    frame sync), ADTS AAC, ASF (wma), ISO/QuickTime (``ftyp``: mp4, m4a, mov), EBML
    (Matroska, WebM) and RIFF/AVI.

    Examples
    --------
    >>> sniff_media(b"RIFF\\x24\\x00\\x00\\x00WAVEfmt "), sniff_media(b"hello, world")
    ('wav', None)
    """
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64", b"BW64"):
        return {b"WAVE": "wav", b"AVI ": "avi"}.get(head[8:12])
    if len(head) >= 12 and head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 3 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0 and (head[2] >> 2) & 0x0F < 13:
        return "aac"  # ADTS: 12-bit sync, layer 0, a valid sampling-frequency index
    if len(head) >= 3 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and (head[1] >> 3) & 3 != 1 \
            and head[1] & 0x06 and head[2] >> 4 != 0x0F and (head[2] >> 2) & 3 != 3:
        return "mp3"  # MPEG audio frame header: sync, version, layer I-III, bit rate, sample rate
    if head[:16] == _ASF_GUID:
        return "asf"
    if len(head) >= 8 and head[4:8] in _QUICKTIME_ATOMS:
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    return None


def display_name(client_name: Optional[str], *, fallback: str = "upload") -> str:
    """The client's file name, safe to show: its last path component, printable, at most 120 characters.

    Never used as a path: a name like ``../../evil.wav`` or ``..\\x.wav`` is shown as
    ``evil.wav`` or ``x.wav`` and stored as ``input.wav``.
    """
    name = re.split(r"[/\\]", client_name or "")[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()[:120]
    return name if name.strip(".") else fallback


def download_name(client_name: str, extension: str) -> str:
    """``<stem>.extended.<extension>`` from the (displayed) client name, in safe characters only."""
    stem = client_name.rsplit(".", 1)[0] if "." in client_name.lstrip(".") else client_name
    stem = re.sub(r"[^\w.()+-]+", "_", stem).strip("._")[:80] or "song"
    return f"{stem}.extended.{extension}"


def _stored_suffix(kind: str, client_name: str, *, video: bool) -> str:
    """The suffix a file of ``kind`` is stored under: the client's when it fits the kind, else the kind's own."""
    client_suffix = Path(client_name).suffix.lower()
    allowed = VIDEO_SUFFIXES if video else AUDIO_SUFFIXES | VIDEO_SUFFIXES
    if client_suffix in _KIND_SUFFIXES[kind] and client_suffix in allowed:
        return client_suffix
    return _VIDEO_KINDS[kind] if video else _KIND_SUFFIXES[kind][0]


@dataclass
class UploadedFile:
    """A file of the upload, as stored in the job's folder.

    Attributes
    ----------
    path : Path
        ``<folder>/input.<suffix>`` or ``<folder>/video.<suffix>``.
    client_name : str
        The client's file name as ``display_name`` shows it (never a path).
    kind : str
        What ``sniff_media`` saw.
    size : int
        Bytes.
    """

    path: Path
    client_name: str
    kind: str
    size: int


@dataclass
class Upload:
    """A parsed request: its text fields and its files (by field name)."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, UploadedFile] = field(default_factory=dict)


class _FilePart:
    """One file part: the first bytes held until sniffed, then everything written to the folder."""

    def __init__(self, reader: "_FormReader", field_name: str, client_name: str) -> None:
        self.reader, self.field_name, self.client_name = reader, field_name, client_name
        self.head = bytearray()
        self.handle: Optional[BinaryIO] = None
        self.path: Optional[Path] = None
        self.kind = ""
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.reader.count_file_bytes(len(chunk))
        self.size += len(chunk)
        if self.handle is not None:
            self.handle.write(chunk)
            return
        self.head += chunk
        if len(self.head) >= SNIFF_BYTES:
            self._open()

    def _open(self) -> None:
        video = self.field_name == "video"
        kind = sniff_media(bytes(self.head[:SNIFF_BYTES]))
        if kind is None or kind not in (_VIDEO_KINDS if video else _SONG_KINDS):
            raise ApiError(415, f"{self.client_name}: {_NOT_VIDEO if video else _NOT_AUDIO}")
        self.kind = kind
        self.path = self.reader.folder / (FILE_FIELDS[self.field_name] + _stored_suffix(kind, self.client_name,
                                                                                        video=video))
        self.handle = open(self.path, "xb")  # exclusive: never follows or replaces anything
        self.handle.write(self.head)
        self.head = bytearray()

    def finish(self) -> UploadedFile:
        if self.size == 0:
            raise ApiError(422, f"{self.client_name}: empty file (0 bytes)")
        if self.handle is None:
            self._open()  # shorter than SNIFF_BYTES
        self.close()
        assert self.path is not None
        return UploadedFile(path=self.path, client_name=self.client_name, kind=self.kind, size=self.size)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


class _TextPart:
    """One text field, at most ``TEXT_FIELDS[name]`` bytes."""

    def __init__(self, field_name: str) -> None:
        self.field_name = field_name
        self.data = bytearray()

    def write(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > TEXT_FIELDS[self.field_name]:
            raise ApiError(400, f"field {self.field_name!r} is too long")

    def finish(self) -> str:
        try:
            return self.data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ApiError(400, f"field {self.field_name!r} is not UTF-8 text") from None

    def close(self) -> None:
        pass


class _FormReader:
    """python-multipart's callbacks: parts routed to ``_FilePart`` / ``_TextPart``, limits enforced."""

    def __init__(self, folder: Path, *, max_file_bytes: int) -> None:
        self.folder, self.max_file_bytes = folder, max_file_bytes
        self.upload = Upload()
        self.file_bytes = 0
        self.n_parts = 0
        self.part: _FilePart | _TextPart | None = None
        self.open_parts: list[_FilePart] = []
        self._name, self._value, self._disposition = b"", b"", b""

    def count_file_bytes(self, n: int) -> None:
        self.file_bytes += n
        if self.file_bytes > self.max_file_bytes:
            raise ApiError(413, f"upload too large: this server accepts at most {_megabytes(self.max_file_bytes)}")

    def on_part_begin(self) -> None:
        self.n_parts += 1
        if self.n_parts > MAX_PARTS:
            raise ApiError(400, f"too many parts (at most {MAX_PARTS})")
        self.part, self._disposition = None, b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        if self._name.strip().lower() == b"content-disposition":
            self._disposition = self._value
        self._name, self._value = b"", b""

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name in self.upload.fields or name in self.upload.files:
            raise ApiError(400, f"field {name!r} given twice")
        if name in FILE_FIELDS:
            filename = options.get(b"filename")
            client = display_name(filename.decode("utf-8", "replace") if filename else None,
                                  fallback="song" if name == "file" else "clip")
            self.part = _FilePart(self, name, client)
            self.open_parts.append(self.part)
        elif name in TEXT_FIELDS:
            self.part = _TextPart(name)
        else:
            expected = ", ".join([*FILE_FIELDS, *TEXT_FIELDS])
            raise ApiError(400, f"unknown field {name!r} (expected {expected})")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part is not None:
            self.part.write(bytes(data[start:end]))

    def on_part_end(self) -> None:
        part, self.part = self.part, None
        if isinstance(part, _FilePart):
            self.upload.files[part.field_name] = part.finish()
        elif isinstance(part, _TextPart):
            self.upload.fields[part.field_name] = part.finish()

    def close(self) -> None:
        for part in self.open_parts:
            part.close()


def _megabytes(n_bytes: int) -> str:
    return f"{n_bytes / (1024 * 1024):g} MB" if n_bytes >= 1024 * 1024 else f"{n_bytes} bytes"


def _boundary(content_type: str) -> bytes:
    from python_multipart.multipart import parse_options_header

    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise ApiError(415, "send the files as multipart/form-data (fields 'file' and 'seconds' or 'duration')")
    return options[b"boundary"]


async def read_upload(request, folder: Path, *, max_upload_bytes: int) -> Upload:
    """Stream a ``multipart/form-data`` request's files into ``folder``, checking each as it comes.

    Parameters
    ----------
    request : starlette.requests.Request
    folder : Path
        The job's own (empty) folder.
    max_upload_bytes : int
        Most bytes of files (all together); the body may have ``BODY_OVERHEAD_BYTES`` more.

    Returns
    -------
    Upload

    Raises
    ------
    ApiError
        400 malformed or unknown fields, 413 too large (refused from ``Content-Length``
        before reading, or as soon as the count passes the cap), 415 not multipart or
        a file that is not media, 422 an empty file.
    """
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser

    boundary = _boundary(request.headers.get("content-type", ""))
    max_body = max_upload_bytes + BODY_OVERHEAD_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body:
        raise ApiError(413, f"upload too large: this server accepts at most {_megabytes(max_upload_bytes)}")
    reader = _FormReader(folder, max_file_bytes=max_upload_bytes)
    callbacks = {name: getattr(reader, name) for name in (
        "on_part_begin", "on_header_field", "on_header_value", "on_header_end", "on_headers_finished",
        "on_part_data", "on_part_end")}
    received = 0
    try:
        parser = MultipartParser(boundary, callbacks)
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_body:
                raise ApiError(413, f"upload too large: this server accepts at most {_megabytes(max_upload_bytes)}")
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise ApiError(400, f"malformed multipart body ({exc})") from exc
    finally:
        reader.close()
    if reader.part is not None:
        raise ApiError(400, "malformed multipart body (it ends inside a part)")
    return reader.upload
