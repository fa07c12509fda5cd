"""`harmonizer fetch-data` against a real HTTP server on 127.0.0.1 that injects failures.

The server (tests/fetch_server.py) mimics GitHub's contents API and raw downloads.
Files served are tiny real mp3/flac files written by soundfile, so every finished
download is decoded as in real use.
"""

from __future__ import annotations

import _thread
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from fetch_server import FakeServer
from harmonizer_cli.cli import app
from harmonizer_cli.core.research import fetch
from harmonizer_cli.core.research.fetch import FetchOptions, fetch_dataset, parse_source, safe_relative_path
from harmonizer_cli.errors import DataError

OWNER, REPO, FOLDER = "someone", "dataset", "Mix Music"
SOURCE = f"github:{OWNER}/{REPO}/{FOLDER}"


def _encode(seconds: float, *, seed: int, format: str) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 22050)) / 22050
    samples = (0.3 * np.sin(2 * np.pi * (220 + 40 * seed) * t) + 0.05 * rng.standard_normal(t.size))
    buffer = io.BytesIO()
    sf.write(buffer, samples.astype(np.float32), 22050, format=format)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def blobs() -> dict[str, bytes]:
    """Three different tiny real mp3s and one flac."""
    return {
        "a.mp3": _encode(0.5, seed=1, format="MP3"),
        "b.mp3": _encode(0.5, seed=2, format="MP3"),
        "c.mp3": _encode(0.5, seed=3, format="MP3"),
        "d.flac": _encode(0.3, seed=4, format="FLAC"),
    }


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    with FakeServer() as fake:
        yield fake


def fast(server: FakeServer, **changes: object) -> FetchOptions:
    """Options with tiny backoff so retries cost milliseconds."""
    values = dict(github_api=server.base_url, backoff_base_seconds=0.001, backoff_cap_seconds=0.01,
                  stop_grace_seconds=0.2, timeout_seconds=5.0, max_attempts=4, jobs=3)
    values.update(changes)
    return FetchOptions(**values)


def mp3s(blobs: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in blobs.items() if k.endswith(".mp3")}


def by_name(summary: fetch.FetchSummary) -> dict[str, fetch.FileResult]:
    return {r.name: r for r in summary.results}


def wait_for_workers(timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(t.name.startswith("harmonizer-fetch-") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "fetch workers did not stop"
        time.sleep(0.02)


# === GitHub listing, skip on the second run ===


def test_github_folder_downloaded_then_skipped(server: FakeServer, blobs, tmp_path: Path) -> None:
    sub = f"{FOLDER}/extra"
    server.github_folder(OWNER, REPO, sub, {"d.flac": blobs["d.flac"]})
    server.github_folder(OWNER, REPO, FOLDER, mp3s(blobs), extra_entries=[
        {"name": "README.md", "path": f"{FOLDER}/README.md", "type": "file", "size": 5,
         "sha": "0" * 40, "download_url": server.url("/readme")},
        {"name": "extra", "path": sub, "type": "dir", "size": 0, "download_url": None},
    ])
    dest = tmp_path / "raw"
    seen = []
    summary = fetch_dataset(SOURCE, dest, options=fast(server), on_progress=lambda d, t: seen.append((d, t)))
    assert sorted(r.name for r in summary.downloaded) == ["a.mp3", "b.mp3", "c.mp3", "extra/d.flac"]
    assert summary.failed == [] and summary.n_ignored == 1
    for name, data in mp3s(blobs).items():
        assert (dest / name).read_bytes() == data
    assert (dest / "extra" / "d.flac").read_bytes() == blobs["d.flac"]
    assert not list(dest.rglob("*.part"))
    assert seen[0] == (0, 4) and seen[-1] == (4, 4)
    assert not server.requests_for("/readme")

    n_requests = len(server.requests)
    again = fetch_dataset(SOURCE, dest, options=fast(server))
    assert len(again.skipped) == 4 and not again.downloaded and not again.failed
    raw = [r for r in server.requests[n_requests:] if r.path.startswith("/raw/")]
    assert raw == []  # only the listings were asked again


def test_default_source_is_the_papers_dataset() -> None:
    from harmonizer_cli.commands import fetch_data

    assert fetch_data.DEFAULT_SOURCE == fetch.DEFAULT_SOURCE
    source = parse_source(fetch.DEFAULT_SOURCE)
    assert (source.owner, source.repo, source.path) == ("Gourav052003", "Mix-Music-Splitter-Dataset", "Mix Music")


@pytest.mark.parametrize("text, expected", [
    ("github:o/r/Mix Music@dev", ("github", "o", "r", "Mix Music", "dev")),
    ("github:o/r", ("github", "o", "r", "", "")),
    ("https://github.com/o/r/tree/main/Mix%20Music", ("github", "o", "r", "Mix Music", "main")),
    ("https://example.org/data.tar.gz", ("archive_url", "", "", "", "")),
    ("https://example.org/song.mp3", ("file_url", "", "", "", "")),
])
def test_parse_source(text: str, expected: tuple) -> None:
    source = parse_source(text)
    assert (source.kind, source.owner, source.repo, source.path, source.ref) == expected


# === Failures injected by the server ===


def test_reset_mid_file_resumes_with_range(server: FakeServer, blobs, tmp_path: Path) -> None:
    server.github_folder(OWNER, REPO, FOLDER, {"a.mp3": blobs["a.mp3"]})
    raw = server.raw_path(OWNER, REPO, FOLDER, "a.mp3")
    server.script(raw, "reset")
    summary = fetch_dataset(SOURCE, tmp_path, options=fast(server))
    assert [r.name for r in summary.downloaded] == ["a.mp3"], summary.results
    assert (tmp_path / "a.mp3").read_bytes() == blobs["a.mp3"]
    first, second = server.requests_for(raw)
    assert first.range is None
    assert second.range is not None and second.range.startswith("bytes=")
    assert int(second.range[len("bytes="):-1]) > 0


def test_truncated_body_is_detected_and_resumed(server: FakeServer, blobs, tmp_path: Path) -> None:
    server.github_folder(OWNER, REPO, FOLDER, {"b.mp3": blobs["b.mp3"]})
    raw = server.raw_path(OWNER, REPO, FOLDER, "b.mp3")
    server.script(raw, "truncate", "truncate")
    summary = fetch_dataset(SOURCE, tmp_path, options=fast(server))
    assert len(summary.downloaded) == 1
    assert (tmp_path / "b.mp3").read_bytes() == blobs["b.mp3"]
    ranges = [r.range for r in server.requests_for(raw)]
    half = len(blobs["b.mp3"]) // 2
    assert ranges == [None, f"bytes={half}-", f"bytes={half + (len(blobs['b.mp3']) - half) // 2}-"]


@pytest.mark.parametrize("behaviours", [["500"], ["500", "500"], ["403-ratelimit"], ["429"]])
@pytest.mark.parametrize("where", ["file", "listing"])
def test_transient_http_errors_are_retried(server: FakeServer, blobs, tmp_path: Path,
                                           behaviours: list[str], where: str) -> None:
    api = server.github_folder(OWNER, REPO, FOLDER, {"c.mp3": blobs["c.mp3"]})
    target = api if where == "listing" else server.raw_path(OWNER, REPO, FOLDER, "c.mp3")
    server.script(target, *behaviours)
    summary = fetch_dataset(SOURCE, tmp_path, options=fast(server))
    assert len(summary.downloaded) == 1 and not summary.failed
    assert len(server.requests_for(target)) == len(behaviours) + 1


def test_retries_give_up_after_max_attempts(server: FakeServer, blobs, tmp_path: Path) -> None:
    server.github_folder(OWNER, REPO, FOLDER, {"a.mp3": blobs["a.mp3"]})
    raw = server.raw_path(OWNER, REPO, FOLDER, "a.mp3")
    server.script(raw, *["500"] * 10)
    summary = fetch_dataset(SOURCE, tmp_path, options=fast(server, max_attempts=3))
    (failed,) = summary.failed
    assert "HTTP 500" in failed.message and "3 attempts" in failed.message
    assert len(server.requests_for(raw)) == 3
    assert not (tmp_path / "a.mp3").exists()


def test_rate_limit_longer_than_max_wait_fails_at_once(server: FakeServer, blobs, tmp_path: Path) -> None:
    api = server.github_folder(OWNER, REPO, FOLDER, {"a.mp3": blobs["a.mp3"]})
    server.script(api, "403-ratelimit")
    with pytest.raises(DataError, match="rate limited.*GITHUB_TOKEN"):
        fetch_dataset(SOURCE, tmp_path, options=fast(server, max_wait_seconds=0.0))
    assert len(server.requests_for(api)) == 1


def test_404_is_not_retried_and_other_files_go_on(server: FakeServer, blobs, tmp_path: Path) -> None:
    server.github_folder(OWNER, REPO, FOLDER, mp3s(blobs))
    raw = server.raw_path(OWNER, REPO, FOLDER, "b.mp3")
    server.script(raw, "404")
    summary = fetch_dataset(SOURCE, tmp_path, options=fast(server))
    results = by_name(summary)
    assert results["b.mp3"].status == "failed" and "404" in results["b.mp3"].message
    assert results["a.mp3"].status == results["c.mp3"].status == "downloaded"
    assert len(server.requests_for(raw)) == 1
    assert not (tmp_path / "b.mp3").exists() and not (tmp_path / "b.mp3.part").exists()


def test_server_ignoring_range_restarts_the_file(server: FakeServer, blobs, tmp_path: Path) -> None:
    server.github_folder(OWNER, REPO, FOLDER, {"a.mp3": blobs["a.mp3"]})
    raw = server.raw_path(OWNER, REPO, FOLDER, "a.mp3")
    server.script(raw, "norange")
    (tmp_path / "a.mp3.part").write_bytes(b"x" * 100)  # a stale partial file
    summary = fetch_dataset(SOURCE, tmp_path, options=fast(server))
    assert len(summary.downloaded) == 1
    assert (tmp_path / "a.mp3").read_bytes() == blobs["a.mp3"]
    assert [r.range for r in server.requests_for(raw)] == ["bytes=100-"]


def test_complete_part_file_is_verified_without_downloading(server: FakeServer, blobs, tmp_path: Path) -> None:
    server.github_folder(OWNER, REPO, FOLDER, {"a.mp3": blobs["a.mp3"]})
    (tmp_path / "a.mp3.part").write_bytes(blobs["a.mp3"])
    summary = fetch_dataset(SOURCE, tmp_path, options=fast(server))
    assert len(summary.downloaded) == 1 and (tmp_path / "a.mp3").read_bytes() == blobs["a.mp3"]
    assert server.requests_for(server.raw_path(OWNER, REPO, FOLDER, "a.mp3")) == []


def test_http_416_on_a_complete_part_finishes_it(server: FakeServer, blobs, tmp_path: Path) -> None:
    url = server.add("/files/a.mp3", blobs["a.mp3"])
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"{url} {hashlib.sha256(blobs['a.mp3']).hexdigest()}\n")
    dest = tmp_path / "raw"
    dest.mkdir()
    (dest / "a.mp3.part").write_bytes(blobs["a.mp3"])
    summary = fetch_dataset(str(manifest), dest, options=fast(server))
    assert len(summary.downloaded) == 1 and (dest / "a.mp3").read_bytes() == blobs["a.mp3"]
    assert [r.range for r in server.requests_for("/files/a.mp3")] == [f"bytes={len(blobs['a.mp3'])}-"]


def test_undecodable_and_mismatching_files_fail_and_are_removed(server: FakeServer, blobs, tmp_path: Path) -> None:
    server.github_folder(OWNER, REPO, FOLDER, {"a.mp3": blobs["a.mp3"], "text.mp3": b"not audio at all\n" * 50})
    listing_path = f"/repos/{OWNER}/{REPO}/contents/{FOLDER}"
    entries = json.loads(server.files[listing_path])
    entries.append({"name": "wrong.mp3", "path": f"{FOLDER}/wrong.mp3", "type": "file",
                    "size": len(blobs["b.mp3"]), "sha": "1" * 40,
                    "download_url": server.add("/raw/wrong.mp3", blobs["b.mp3"])})
    server.files[listing_path] = json.dumps(entries).encode()
    summary = fetch_dataset(SOURCE, tmp_path, options=fast(server))
    results = by_name(summary)
    assert results["a.mp3"].status == "downloaded"
    assert results["text.mp3"].status == "failed" and "decode" in results["text.mp3"].message
    assert results["wrong.mp3"].status == "failed" and "sha1 mismatch" in results["wrong.mp3"].message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp3"]


def test_existing_different_file_needs_force(server: FakeServer, blobs, tmp_path: Path) -> None:
    server.github_folder(OWNER, REPO, FOLDER, {"a.mp3": blobs["a.mp3"]})
    (tmp_path / "a.mp3").write_bytes(blobs["b.mp3"])
    summary = fetch_dataset(SOURCE, tmp_path, options=fast(server))
    assert "--force" in summary.failed[0].message
    assert (tmp_path / "a.mp3").read_bytes() == blobs["b.mp3"]
    summary = fetch_dataset(SOURCE, tmp_path, options=fast(server, force=True))
    assert len(summary.downloaded) == 1 and (tmp_path / "a.mp3").read_bytes() == blobs["a.mp3"]


def test_token_goes_to_the_api_host_only(server: FakeServer, blobs, tmp_path: Path) -> None:
    server.github_folder(OWNER, REPO, FOLDER, {"a.mp3": blobs["a.mp3"]})
    listing_path = f"/repos/{OWNER}/{REPO}/contents/{FOLDER}"
    entries = json.loads(server.files[listing_path])
    entries[0]["download_url"] = entries[0]["download_url"].replace("127.0.0.1", "localhost")
    server.files[listing_path] = json.dumps(entries).encode()
    summary = fetch_dataset(SOURCE, tmp_path, options=fast(server, github_token="secret"))
    assert len(summary.downloaded) == 1
    (listing,) = server.requests_for(listing_path)
    assert listing.authorization == "Bearer secret"
    assert [r.authorization for r in server.requests_for(server.raw_path(OWNER, REPO, FOLDER, "a.mp3"))] == [None]


def test_full_disk_fails_the_files_and_leaves_no_final_file(server: FakeServer, blobs, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    server.github_folder(OWNER, REPO, FOLDER, mp3s(blobs))
    real_open = open

    class FullDisk:
        def __init__(self, handle) -> None:  # noqa: ANN001
            self.handle = handle

        def __enter__(self) -> "FullDisk":
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

    def fake_open(path, mode="r", *args, **kwargs):  # noqa: ANN001, ANN202
        handle = real_open(path, mode, *args, **kwargs)
        return FullDisk(handle) if str(path).endswith(".part") and "b" in mode and "r" not in mode else handle

    monkeypatch.setattr(fetch.http, "open", fake_open, raising=False)  # where .part files are written
    summary = fetch_dataset(SOURCE, tmp_path, options=fast(server))
    assert len(summary.failed) == 3
    assert all("No space left on device" in r.message for r in summary.failed)
    assert not [p for p in tmp_path.iterdir() if not p.name.endswith(".part")]


# === Listings and URLs that are refused ===


@pytest.mark.parametrize("source", ["file:///etc/passwd", "ftp://example.org/data.zip",
                                    "data:text/plain,hello", "gopher://x/song.mp3"])
def test_non_http_sources_are_rejected(source: str, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="only http and https"):
        fetch_dataset(source, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_missing_local_source_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        fetch_dataset(str(tmp_path / "nothing"), tmp_path / "raw")


def test_manifest_with_bad_sha256_and_comments(server: FakeServer, blobs, tmp_path: Path) -> None:
    urls = {name: server.add(f"/files/{name}", data) for name, data in mp3s(blobs).items()}
    good = hashlib.sha256(blobs["a.mp3"]).hexdigest()
    manifest = tmp_path / "list.txt"
    manifest.write_text(
        "# the mixes\n\n"
        f"{urls['a.mp3']}  {good}   # trailing comment\n"
        f"{urls['b.mp3']} sha256:{'ab' * 32}\n"
        f"{urls['c.mp3']}\n"
    )
    summary = fetch_dataset(str(manifest), tmp_path / "raw", options=fast(server))
    results = by_name(summary)
    assert results["a.mp3"].status == results["c.mp3"].status == "downloaded"
    assert results["b.mp3"].status == "failed" and "sha256 mismatch" in results["b.mp3"].message
    assert not (tmp_path / "raw" / "b.mp3").exists() and not (tmp_path / "raw" / "b.mp3.part").exists()


@pytest.mark.parametrize("line, match", [
    ("file:///etc/passwd", "line 2: only http and https"),
    ("ftp://example.org/a.mp3", "line 2: only http and https"),
    ("https://example.org/a.mp3 nothex", "not a sha256"),
    ("https://example.org/a.mp3 " + "0" * 64 + " extra", "expected 'URL"),
    ("https://example.org/", "no usable file name"),
    ("https://example.org/x/..", "no usable file name"),
])
def test_bad_manifest_lines_are_data_errors(line: str, match: str, tmp_path: Path) -> None:
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"# header\n{line}\n")
    with pytest.raises(DataError, match=match):
        fetch_dataset(str(manifest), tmp_path / "raw")


def test_redirects_are_bounded_and_http_only(server: FakeServer, blobs, tmp_path: Path) -> None:
    loop = server.add("/files/loop.mp3", blobs["a.mp3"], *["redirect-loop"] * 20)
    to_ftp = server.add("/files/ftp.mp3", blobs["a.mp3"], "redirect:ftp://example.org/a.mp3")
    to_file = server.add("/files/file.mp3", blobs["a.mp3"], "redirect:file:///etc/passwd")
    server.add("/files/target.mp3", blobs["b.mp3"])
    ok = server.add("/files/ok.mp3", blobs["b.mp3"], f"redirect:{server.url('/files/target.mp3')}")
    manifest = tmp_path / "list.txt"
    manifest.write_text("\n".join([loop, to_ftp, to_file, ok]))
    summary = fetch_dataset(str(manifest), tmp_path / "raw", options=fast(server, max_redirects=3))
    results = by_name(summary)
    assert results["ok.mp3"].status == "downloaded"
    for name in ("loop.mp3", "ftp.mp3", "file.mp3"):
        assert results[name].status == "failed", results[name]
    assert len(server.requests_for("/files/loop.mp3")) <= 4
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["ok.mp3"]


def test_listing_failures_are_data_errors(server: FakeServer, blobs, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found on GitHub"):
        fetch_dataset(SOURCE, tmp_path, options=fast(server))
    api = server.github_folder(OWNER, REPO, FOLDER, mp3s(blobs))
    with pytest.raises(DataError, match="larger than"):
        fetch_dataset(SOURCE, tmp_path, options=fast(server, max_listing_bytes=100))
    server.files[api] = b"<html>not json</html>"
    with pytest.raises(DataError, match="not JSON"):
        fetch_dataset(SOURCE, tmp_path, options=fast(server))


def test_unsafe_listing_names_are_refused(server: FakeServer, blobs, tmp_path: Path) -> None:
    dest = tmp_path / "raw"
    server.github_folder(OWNER, REPO, FOLDER, {"a.mp3": blobs["a.mp3"]}, extra_entries=[
        {"name": "../../evil.mp3", "path": f"{FOLDER}/../../evil.mp3", "type": "file", "size": 10,
         "download_url": server.add("/evil.mp3", blobs["b.mp3"])},
        {"name": "file.mp3", "path": f"{FOLDER}/file.mp3", "type": "file", "size": 10,
         "download_url": "file:///etc/passwd"},
    ])
    summary = fetch_dataset(SOURCE, dest, options=fast(server))
    results = by_name(summary)
    assert results["a.mp3"].status == "downloaded"
    assert results["../../evil.mp3"].status == "failed"
    assert "only http and https" in results["file.mp3"].message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]
    assert not server.requests_for("/evil.mp3")


@pytest.mark.parametrize("name", ["/abs.mp3", "../up.mp3", "a/../../up.mp3", "C:/x.mp3", "..\\win.mp3",
                                  "", ".", "a\x00.mp3", "x.mp3.part"])
def test_safe_relative_path_refuses(name: str) -> None:
    with pytest.raises(DataError, match="unsafe name"):
        safe_relative_path(name)


def test_size_caps(server: FakeServer, blobs, tmp_path: Path) -> None:
    server.github_folder(OWNER, REPO, FOLDER, mp3s(blobs))
    total = sum(len(v) for v in mp3s(blobs).values())
    with pytest.raises(DataError, match="more than the cap"):
        fetch_dataset(SOURCE, tmp_path / "one", options=fast(server, max_total_bytes=total - 1))
    summary = fetch_dataset(SOURCE, tmp_path / "two", options=fast(server, max_file_bytes=100))
    assert len(summary.failed) == 3 and all("per-file cap" in r.message for r in summary.failed)
    # Unknown sizes (a manifest): the caps stop the transfer itself.
    manifest = tmp_path / "list.txt"
    manifest.write_text(server.add("/files/a.mp3", blobs["a.mp3"]) + "\n")
    summary = fetch_dataset(str(manifest), tmp_path / "three", options=fast(server, max_total_bytes=100))
    assert "--max-bytes" in summary.failed[0].message
    assert not list((tmp_path / "three").iterdir())


# === Archives ===


def _zip_bytes(members: list[tuple[str, bytes, int | None]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.create_system = 3
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def _outside_snapshot(tmp_path: Path, dest: Path) -> list[str]:
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if dest not in (p, *p.parents))


def test_zip_with_unsafe_members_extracts_only_safe_audio(server: FakeServer, blobs, tmp_path: Path) -> None:
    data = _zip_bytes([
        ("songs/a.mp3", blobs["a.mp3"], None),
        ("../evil.mp3", blobs["b.mp3"], None),
        ("/abs.mp3", blobs["b.mp3"], None),
        ("C:/drive.mp3", blobs["b.mp3"], None),
        ("..\\win.mp3", blobs["b.mp3"], None),
        ("link.mp3", b"/etc/passwd", 0o120777),
        ("notes.txt", b"hello", None),
        ("songs/", b"", None),
    ])
    url = server.add("/archives/data.zip", data)
    dest = tmp_path / "dest"
    before = _outside_snapshot(tmp_path, dest)
    summary = fetch_dataset(url, dest, options=fast(server))
    results = by_name(summary)
    assert results["songs/a.mp3"].status == "downloaded"
    assert (dest / "songs" / "a.mp3").read_bytes() == blobs["a.mp3"]
    failed = {r.name: r.message for r in summary.failed}
    assert set(failed) == {"../evil.mp3", "/abs.mp3", "C:/drive.mp3", "..\\\\win.mp3", "link.mp3"}
    assert "symbolic link" in failed["link.mp3"]
    assert summary.n_ignored == 1
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["songs", "songs/a.mp3"]
    assert _outside_snapshot(tmp_path, dest) == before
    assert not (tmp_path.parent / "evil.mp3").exists()


def test_tar_with_links_devices_and_traversal(blobs, tmp_path: Path) -> None:
    archive = tmp_path / "data.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        def add(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.size = kind, link, len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        add("good.mp3", blobs["a.mp3"])
        add("../evil.mp3", blobs["b.mp3"])
        add("/abs.mp3", blobs["b.mp3"])
        add("link.mp3", kind=tarfile.SYMTYPE, link="../../etc/passwd")
        add("linkdir", kind=tarfile.SYMTYPE, link=str(tmp_path))
        add("linkdir/through.mp3", blobs["c.mp3"])  # would escape if linkdir were created
        add("hard.mp3", kind=tarfile.LNKTYPE, link="good.mp3")
        add("dev.mp3", kind=tarfile.CHRTYPE)
        add("fifo.mp3", kind=tarfile.FIFOTYPE)
    dest = tmp_path / "dest"
    before = _outside_snapshot(tmp_path, dest)
    summary = fetch_dataset(str(archive), dest, options=FetchOptions())
    results = by_name(summary)
    assert results["good.mp3"].status == "downloaded"
    assert results["linkdir/through.mp3"].status == "downloaded"
    assert (dest / "linkdir").is_dir() and not (dest / "linkdir").is_symlink()
    for name in ("../evil.mp3", "/abs.mp3", "link.mp3", "linkdir", "hard.mp3", "dev.mp3", "fifo.mp3"):
        assert results[name].status == "failed", name
    assert not any(p.is_symlink() for p in dest.rglob("*"))
    assert _outside_snapshot(tmp_path, dest) == before
    assert not list(dest.glob(".harmonizer-extract-*"))


def test_archive_caps_zip_bomb(blobs, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(_zip_bytes([("bomb.wav", b"\0" * (4 << 20), None), ("a.mp3", blobs["a.mp3"], None)]))
    assert bomb.stat().st_size < 64 << 10
    summary = fetch_dataset(str(bomb), tmp_path / "one", options=FetchOptions(max_file_bytes=1 << 20))
    results = by_name(summary)
    assert results["bomb.wav"].status == "failed" and "per-file cap" in results["bomb.wav"].message
    assert results["a.mp3"].status == "downloaded"
    with pytest.raises(DataError, match="max-bytes"):
        fetch_dataset(str(bomb), tmp_path / "two", options=FetchOptions(max_total_bytes=1 << 20))
    many = tmp_path / "many.zip"
    many.write_bytes(_zip_bytes([(f"{i}.txt", b"", None) for i in range(50)]))
    with pytest.raises(DataError, match="more than 20"):
        fetch_dataset(str(many), tmp_path / "three", options=FetchOptions(max_entries=20))
    assert not list((tmp_path / "three").iterdir())


def test_archive_url_second_run_skips_download(server: FakeServer, blobs, tmp_path: Path) -> None:
    url = server.add("/archives/set.tar", b"")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in blobs.items():
            info = tarfile.TarInfo(f"set/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    server.files["/archives/set.tar"] = buffer.getvalue()
    server.script("/archives/set.tar", "reset")  # the archive download itself resumes too
    dest = tmp_path / "raw"
    summary = fetch_dataset(url, dest, options=fast(server))
    assert len(summary.downloaded) == 4 and not summary.failed
    assert not list(dest.glob(".set.tar*"))  # the archive is removed once extracted
    assert server.requests_for("/archives/set.tar")[-1].range is not None
    n = len(server.requests_for("/archives/set.tar"))
    again = fetch_dataset(url, dest, options=fast(server))
    assert len(again.skipped) == 4
    assert len(server.requests_for("/archives/set.tar")) == n


def test_not_an_archive_is_a_data_error(server: FakeServer, tmp_path: Path) -> None:
    url = server.add("/archives/page.html", b"<html>nope</html>")
    with pytest.raises(DataError, match="not a zip or tar"):
        fetch_dataset(url, tmp_path / "raw", options=fast(server))
    assert not [p for p in (tmp_path / "raw").iterdir()]


def test_corrupt_archive_is_a_data_error(blobs, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in blobs.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 2 // 3])
    with pytest.raises(DataError, match="cannot extract|not a zip or tar"):
        fetch_dataset(str(archive), tmp_path / "raw")
    assert not list((tmp_path / "raw").glob(".harmonizer-extract-*"))


# === Local folder ===


def test_local_folder_copies_audio_only(blobs, tmp_path: Path) -> None:
    source = tmp_path / "music"
    (source / "sub").mkdir(parents=True)
    (source / "a.mp3").write_bytes(blobs["a.mp3"])
    (source / "sub" / "d.flac").write_bytes(blobs["d.flac"])
    (source / "notes.txt").write_text("x")
    (source / ".hidden.mp3").write_bytes(blobs["b.mp3"])
    (source / "broken.mp3").write_bytes(b"garbage" * 100)
    dest = tmp_path / "raw"
    summary = fetch_dataset(str(source), dest)
    assert sorted(r.name for r in summary.downloaded) == ["a.mp3", "sub/d.flac"]
    assert [r.name for r in summary.failed] == ["broken.mp3"]
    assert (dest / "sub" / "d.flac").read_bytes() == blobs["d.flac"]
    assert not (dest / "broken.mp3").exists() and not (dest / ".hidden.mp3").exists()
    again = fetch_dataset(str(source), dest)
    assert len(again.skipped) == 2
    with pytest.raises(DataError, match="is the destination"):
        fetch_dataset(str(source), source)


# === Interruption and resume ===


def test_interrupt_keeps_part_and_next_run_resumes(server: FakeServer, blobs, tmp_path: Path) -> None:
    server.github_folder(OWNER, REPO, FOLDER, {"a.mp3": blobs["a.mp3"], "b.mp3": blobs["b.mp3"]})
    raw_b = server.raw_path(OWNER, REPO, FOLDER, "b.mp3")
    server.script(raw_b, "stall")
    server.on_stall = lambda: (time.sleep(0.2), _thread.interrupt_main())  # Ctrl-C mid-file
    with pytest.raises(KeyboardInterrupt):
        fetch_dataset(SOURCE, tmp_path, options=fast(server, jobs=2))
    server.release.set()
    wait_for_workers()
    assert not (tmp_path / "b.mp3").exists()  # never a final-named partial file
    part = tmp_path / "b.mp3.part"
    assert 0 < part.stat().st_size < len(blobs["b.mp3"])
    summary = fetch_dataset(SOURCE, tmp_path, options=fast(server))
    assert (tmp_path / "b.mp3").read_bytes() == blobs["b.mp3"] and not part.exists()
    assert server.requests_for(raw_b)[-1].range == f"bytes={len(blobs['b.mp3']) // 2}-"
    assert {r.name for r in summary.results if r.status in ("downloaded", "skipped")} == {"a.mp3", "b.mp3"}


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_cli_signal_exits_promptly_and_resumes(server: FakeServer, blobs, tmp_path: Path,
                                                signal_number: int) -> None:
    server.github_folder(OWNER, REPO, FOLDER, {"b.mp3": blobs["b.mp3"]})
    raw_b = server.raw_path(OWNER, REPO, FOLDER, "b.mp3")
    server.script(raw_b, "stall")
    dest = tmp_path / "raw"
    env = {**os.environ, "HARMONIZER_GITHUB_API": server.base_url}
    process = subprocess.Popen(
        [sys.executable, "-c", "from harmonizer_cli.cli import main; main()", "fetch-data",
         "--source", SOURCE, "--dest", str(dest)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert server.stalled.wait(30), "the download never started"
        time.sleep(0.2)
        process.send_signal(signal_number)
        _, stderr = process.communicate(timeout=30)  # a hang guard, not a timing assertion
    finally:
        process.kill()
    assert process.returncode == 128 + signal_number, stderr
    assert "error: interrupted" in stderr and "Traceback" not in stderr
    assert not (dest / "b.mp3").exists() and (dest / "b.mp3.part").stat().st_size > 0
    server.release.set()
    summary = fetch_dataset(SOURCE, dest, options=fast(server))
    assert len(summary.downloaded) == 1 and (dest / "b.mp3").read_bytes() == blobs["b.mp3"]
    assert server.requests_for(raw_b)[-1].range == f"bytes={(dest / 'b.mp3').stat().st_size // 2}-"


# === CLI ===

runner = CliRunner()


def test_cli_json_summary_and_skip(server: FakeServer, blobs, tmp_path: Path) -> None:
    server.github_folder(OWNER, REPO, FOLDER, mp3s(blobs))
    dest = tmp_path / "raw"
    argv = ["fetch-data", "--source", SOURCE, "--dest", str(dest), "--json", "--jobs", "2"]
    env = {"HARMONIZER_GITHUB_API": server.base_url}
    result = runner.invoke(app, argv, env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["downloaded"], summary["skipped"], summary["failed"]) == (3, 0, 0)
    assert "3 downloaded" in result.stderr
    result = runner.invoke(app, argv, env=env)
    assert result.exit_code == 0 and json.loads(result.stdout)["skipped"] == 3


def test_cli_some_failed_exits_7(server: FakeServer, blobs, tmp_path: Path) -> None:
    server.github_folder(OWNER, REPO, FOLDER, mp3s(blobs))
    server.script(server.raw_path(OWNER, REPO, FOLDER, "a.mp3"), "404")
    result = runner.invoke(app, ["fetch-data", "--source", SOURCE, "--dest", str(tmp_path),
                                 "--github-api", server.base_url])
    assert result.exit_code == 7, result.output
    assert "failed: a.mp3: HTTP 404" in result.stderr
    assert "error:" in result.stderr and "1 of 3 files failed" in result.stderr


@pytest.mark.parametrize("argv, code, message", [
    (["--source", "file:///etc/passwd"], 4, "only http and https"),
    (["--source", "github:nobody/nothing/x"], 4, "not found on GitHub"),
    (["--max-bytes", "lots"], 2, "not a size"),
])
def test_cli_errors(server: FakeServer, tmp_path: Path, argv: list[str], code: int, message: str) -> None:
    result = runner.invoke(app, ["fetch-data", "--dest", str(tmp_path / "raw"), "--github-api",
                                 server.base_url, *argv])
    assert result.exit_code == code, result.output
    assert message in result.stderr
