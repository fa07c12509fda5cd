"""Recognising a ``--source`` and listing its files.

``parse_source`` tells a GitHub folder, a file or archive URL, a manifest, an
archive file and a local folder apart; ``list_source`` lists the audio files of the
github, manifest, folder and single-file kinds (archives are listed by extracting
them, see ``archive``). Names from listings are checked with ``safe_relative_path``.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from pathlib import Path, PurePosixPath

from harmonizer_cli.core.research.fetch.archive import _archive_kind
from harmonizer_cli.core.research.fetch.http import _check_url, _Context, _get_bytes
from harmonizer_cli.core.research.fetch.options import FetchOptions, FileResult, RemoteFile, Source, _format_bytes, _PermanentError
from harmonizer_cli.core.research.fetch.paths import _is_audio_name, safe_relative_path
from harmonizer_cli.errors import DataError

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")


def parse_source(text: str) -> Source:
    """Recognise a ``--source``.

    Parameters
    ----------
    text : str
        ``github:OWNER/REPO[/PATH][@REF]``, ``https://github.com/OWNER/REPO/tree/REF/PATH``,
        an http(s) URL, an existing file (archive or manifest) or an existing folder.

    Raises
    ------
    DataError
        A URL with another scheme (``file:``, ``ftp:``...), or a path that does not exist.
    """
    text = str(text).strip()
    if text.startswith("github:"):
        return _parse_github(text[len("github:"):], text)
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]+):", text)
    if scheme and not Path(text).exists():
        _check_url(text)
        parts = urllib.parse.urlsplit(text)
        url_path = urllib.parse.unquote(parts.path)
        if parts.netloc.lower() in ("github.com", "www.github.com"):
            match = re.match(r"^/([^/]+)/([^/]+)/tree/([^/]+)/?(.*)$", url_path)
            if match:
                owner, repo, ref, path = match.groups()
                return _parse_github(f"{owner}/{repo}/{path}".rstrip("/") + f"@{ref}", text)
        lowered = url_path.lower()
        if _is_audio_name(lowered):
            return Source("file_url", text)
        return Source("archive_url", text)
    path = Path(text).expanduser()
    if path.is_dir():
        return Source("folder", str(path))
    if path.is_file():
        if _archive_kind(path) is not None:
            return Source("archive_file", str(path))
        return Source("manifest", str(path))
    raise DataError(
        "no such file or folder (a source is github:OWNER/REPO/PATH, an http(s) URL, "
        "a manifest or archive file, or a folder)",
        path=text,
    )


def _parse_github(spec: str, original: str) -> Source:
    ref = ""
    head, _, last = spec.rpartition("/")
    if "@" in last:
        last, _, ref = last.partition("@")
        spec = f"{head}/{last}" if head else last
    parts = [p for p in spec.split("/") if p]
    if len(parts) < 2:
        raise DataError("a GitHub source is github:OWNER/REPO[/PATH][@REF]", path=original)
    owner, repo, path = parts[0], parts[1], "/".join(parts[2:])
    return Source("github", original, owner=owner, repo=repo, path=path, ref=ref)


def list_source(
    source: Source, *, options: FetchOptions | None = None, dest: Path | None = None
) -> tuple[list[RemoteFile], list[FileResult], int]:
    """List the files of a github, manifest, folder or single-file source.

    Returns
    -------
    files : list of RemoteFile
    rejected : list of FileResult
        Entries refused before any download (unsafe names), as ``failed`` results.
    n_ignored : int
        Entries that are not audio files.

    Raises
    ------
    DataError
        The listing cannot be fetched, read or understood.
    """
    options = options or FetchOptions()
    ctx = _Context(Path(dest or "."), options)
    if source.kind == "github":
        return _list_github(source, ctx)
    if source.kind == "manifest":
        return _read_manifest(Path(source.location), options), [], 0
    if source.kind == "folder":
        return _list_folder(Path(source.location), dest, options)
    if source.kind == "file_url":
        name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(source.location).path)).name
        return [RemoteFile(safe_relative_path(name), url=source.location)], [], 0
    raise DataError(f"{source.location}: cannot list a source of kind {source.kind}")


def _list_github(source: Source, ctx: _Context) -> tuple[list[RemoteFile], list[FileResult], int]:
    api = ctx.options.github_api.rstrip("/")
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    query = f"?ref={urllib.parse.quote(source.ref, safe='')}" if source.ref else ""
    quote = lambda text: urllib.parse.quote(text, safe="/")  # noqa: E731
    base = f"{api}/repos/{quote(source.owner)}/{quote(source.repo)}/contents/"
    files: list[RemoteFile] = []
    rejected: list[FileResult] = []
    n_ignored = 0
    folders = [source.path.strip("/")]
    while folders:
        folder = folders.pop(0)
        url = base + quote(folder) + query
        try:
            raw = _get_bytes(ctx, url, headers, "the GitHub listing")
        except _PermanentError as exc:
            if "HTTP 404" in str(exc):
                raise DataError(
                    "not found on GitHub (check the owner, repository and folder)", path=str(source)
                ) from None
            raise DataError(f"cannot list the GitHub folder {folder!r}: {exc}", path=str(source)) from None
        try:
            entries = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{url}: the GitHub listing is not JSON ({exc})") from None
        if isinstance(entries, dict):
            entries = [entries]  # the path is a single file
        if not isinstance(entries, list):
            raise DataError(f"{url}: the GitHub listing is not a list of entries")
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise DataError(f"{url}: the GitHub listing holds an entry without a name")
            if len(files) + len(rejected) + n_ignored + len(folders) >= ctx.options.max_entries:
                raise DataError(f"{url}: the GitHub listing has more than {ctx.options.max_entries} entries")
            entry_path = entry.get("path") if isinstance(entry.get("path"), str) else entry["name"]
            prefix = source.path.strip("/")
            if not prefix:
                relative = entry_path
            elif entry_path.startswith(prefix + "/"):
                relative = entry_path[len(prefix) + 1:]
            else:
                relative = entry["name"]
            if entry.get("type") == "dir":
                if entry_path.count("/") - prefix.count("/") > 8:
                    raise DataError(f"{url}: the GitHub folder is nested too deeply")
                folders.append(entry_path)
                continue
            if entry.get("type") != "file" or not _is_audio_name(entry["name"]):
                n_ignored += 1
                continue
            try:
                name = safe_relative_path(relative)
            except DataError as exc:
                rejected.append(FileResult(str(relative), "failed", message=exc.message))
                continue
            download_url = entry.get("download_url")
            if not isinstance(download_url, str):
                rejected.append(FileResult(name, "failed", message="no download_url in the listing"))
                continue
            size = entry.get("size")
            sha = entry.get("sha")
            files.append(RemoteFile(
                name, url=download_url,
                size=size if isinstance(size, int) and size >= 0 else None,
                git_sha1=sha.lower() if isinstance(sha, str) and _HEX40.match(sha) else None,
            ))
    return files, rejected, n_ignored


def _read_manifest(path: Path, options: FetchOptions) -> list[RemoteFile]:
    try:
        if path.stat().st_size > options.max_listing_bytes:
            raise DataError(f"manifest larger than {_format_bytes(options.max_listing_bytes)}", path=path)
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError("manifest is not UTF-8 text", path=path) from None
    except OSError as exc:
        raise DataError(f"cannot read the manifest ({exc.strerror})", path=path) from None
    files: list[RemoteFile] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if "#" in [t[:1] for t in tokens]:
            tokens = tokens[: [t[:1] for t in tokens].index("#")]
        if not tokens:
            continue
        where = f"line {number}"
        if len(tokens) > 2:
            raise DataError(f"{where}: expected 'URL [SHA256]', got {len(tokens)} fields", path=path)
        url = tokens[0]
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise DataError(
                f"{where}: only http and https URLs are accepted, not {scheme + ':' if scheme else repr(url)}",
                path=path,
            )
        sha256 = None
        if len(tokens) == 2:
            digest = tokens[1].removeprefix("sha256:")
            if not _HEX64.match(digest):
                raise DataError(f"{where}: {tokens[1]!r} is not a sha256 (64 hex digits)", path=path)
            sha256 = digest.lower()
        raw_name = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
        try:
            name = safe_relative_path(raw_name)
        except DataError as exc:
            raise DataError(f"{where}: no usable file name in the URL ({exc.message})", path=path) from None
        if name in seen:
            raise DataError(f"{where}: file name {name!r} already used on line {seen[name]}", path=path)
        seen[name] = number
        if len(files) >= options.max_entries:
            raise DataError(f"more than {options.max_entries} entries", path=path)
        files.append(RemoteFile(name, url=url, sha256=sha256))
    return files


def _list_folder(
    folder: Path, dest: Path | None, options: FetchOptions
) -> tuple[list[RemoteFile], list[FileResult], int]:
    root = folder.resolve()
    skip = dest.resolve() if dest is not None else None
    if skip == root:
        raise DataError("the source folder is the destination", path=folder)
    files: list[RemoteFile] = []
    n_ignored = 0
    for current, subfolders, names in os.walk(root):
        here = Path(current)
        subfolders[:] = sorted(
            d for d in subfolders
            if not d.startswith(".") and (skip is None or (here / d).resolve() != skip)
        )
        for name in sorted(names):
            path = here / name
            if name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            if not _is_audio_name(name):
                n_ignored += 1
                continue
            if len(files) >= options.max_entries:
                raise DataError(f"more than {options.max_entries} audio files", path=folder)
            relative = path.relative_to(root).as_posix()
            files.append(RemoteFile(safe_relative_path(relative), local_path=path,
                                    size=path.stat().st_size))
    return files, [], n_ignored
