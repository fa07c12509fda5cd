"""The web app (``harmonizer serve``) through a real uvicorn server on 127.0.0.1.

Upload, poll, download and the exact duration; files that are not media, empty,
oversize or corrupt; bad fields; unknown ids; traversal-looking file names;
concurrent jobs, the queue limit and cancellation; expiry; the Host and Origin
guard; video (the clip with its new soundtrack, the container it is written in, fade-out
and the clip's own sound kept under the music); and the command itself: its help, a port in
use, the warning off loopback, and a clean stop on SIGINT / SIGTERM with nothing
left in the temporary folder. The browser test is ``test_serve_browser.py``.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from harmonizer_cli.cli import app as cli_app
from harmonizer_cli.core.audio_io import OUTPUT_FORMATS
from harmonizer_cli.serve import is_loopback_host
from harmonizer_cli.serve.upload import display_name, download_name, sniff_media
from serve_server import (CLIP_TONE_HZ, CLIP_TONE_LEVEL, LiveServer, make_clip, multipart, song_bytes, tree,
                          wait_done, wait_for)

NOT_AUDIO = "cannot decode: not an audio file, or a corrupt or unsupported format"
STATIC = Path(__file__).resolve().parents[1] / "harmonizer_cli" / "serve" / "static"


@pytest.fixture(scope="module")
def song() -> bytes:
    """12 s of synthetic song, 22.05 kHz stereo WAV (1 MB)."""
    return song_bytes(12.0)


def duration_of(data: bytes) -> float:
    info = sf.info(io.BytesIO(data))
    return info.frames / info.samplerate


# --------------------------------------------------------------------------- pieces

@pytest.mark.parametrize("head, kind", [
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"), (b"RF64\xff\xff\xff\xffWAVEds64", "wav"),
    (b"FORM\x00\x00\x10\x00AIFFCOMM", "aiff"), (b"fLaC\x00\x00\x00\x22", "flac"), (b"OggS\x00\x02", "ogg"),
    (b"ID3\x04\x00\x00", "mp3"), (b"\xff\xfb\x90\x64", "mp3"), (b"\xff\xf1\x50\x80", "aac"),
    (b"\x00\x00\x00\x20ftypM4A ", "mp4"), (b"\x00\x00\x00\x14ftypqt  ", "mp4"),
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81", "matroska"), (b"RIFF\x00\x00\x00\x00AVI LIST", "avi"),
    (bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"), "asf"),
    (b"hello, world\n", None), (b"<!DOCTYPE html>", None), (b"%PDF-1.7\n", None), (b"\x89PNG\r\n\x1a\n", None),
    (b"PK\x03\x04", None), (b"RIFF\x00\x00\x00\x00WEBPVP8 ", None), (b"", None), (b"\xff\xff", None), (b"\xff\xff\xff\xff", None),
])
def test_sniff_media(head: bytes, kind) -> None:
    assert sniff_media(head) == kind


def test_names_are_never_paths() -> None:
    assert display_name("../../evil.wav") == "evil.wav"
    assert display_name("..\\x.wav") == "x.wav"
    assert display_name("/etc/passwd") == "passwd"
    assert display_name("..") == "upload" and display_name("") == "upload" and display_name(None) == "upload"
    assert display_name("a\x00b\nc.mp3") == "abc.mp3"
    assert download_name("My Song (live).mp3", "wav") == "My_Song_(live).extended.wav"
    assert download_name('x";rm -rf.wav', "flac") == "x_rm_-rf.extended.flac"
    assert download_name(".hidden", "wav") == "hidden.extended.wav"


def test_loopback_hosts() -> None:
    assert all(map(is_loopback_host, ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]", "app.localhost"]))
    assert not any(map(is_loopback_host, ["0.0.0.0", "::", "192.168.1.10", "example.com", ""]))


def test_static_page_has_no_external_resources() -> None:
    for path in STATIC.iterdir():
        text = path.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), f"{path.name} loads from outside"
        assert "innerHTML" not in text and "eval(" not in text


# --------------------------------------------------------------------------- the happy path

def test_health_page_and_headers(tmp_path) -> None:
    with LiveServer(tmp_path, workers=2, queue_limit=3) as server:
        health = server.client.get("/api/health")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "ok" and body["workers"] == 2 and body["queue_limit"] == 3
        assert body["video"] is True and body["formats"] == list(OUTPUT_FORMATS)
        page = server.client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script src="/static/app.js"' in page.text and 'type="file"' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        for name, kind in [("app.js", "javascript"), ("style.css", "text/css")]:
            static = server.client.get(f"/static/{name}")
            assert static.status_code == 200 and kind in static.headers["content-type"]
    assert tree(server.temp_root) == []


def test_extend_through_the_api(tmp_path, song) -> None:
    with LiveServer(tmp_path) as server:
        answer = server.submit(song, filename="my song.wav", seconds="20.5", format="flac", seed="3")
        assert answer.status_code == 202, answer.text
        created = answer.json()
        assert set(created) == {"id", "status_url"} and re.fullmatch(r"[0-9a-f]{32}", created["id"])
        assert created["status_url"] == f"/api/jobs/{created['id']}" == answer.headers["location"]
        state, progress = wait_done(server.client, created["status_url"])
        assert state["status"] == "done", state
        assert state["progress"] == 1.0 and state["error"] is None
        assert progress == sorted(progress) and all(0.0 <= p <= 1.0 for p in progress)
        record = state["result"]
        assert record["input"] == "my song.wav" and record["output"] == "my_song.extended.flac"
        assert record["target_seconds"] == 20.5 and record["seed"] == 3 and record["seams"]
        assert abs(record["output_seconds"] - 20.5) <= 0.010
        assert str(server.temp_root) not in repr(state)  # no temporary path reaches the client

        download = server.client.get(state["result_url"])
        assert download.status_code == 200 and download.headers["content-type"] == "audio/flac"
        assert 'filename="my_song.extended.flac"' in download.headers["content-disposition"]
        assert abs(duration_of(download.content) - 20.5) <= 0.010
        partial = server.client.get(state["result_url"], headers={"range": "bytes=0-99"})
        assert partial.status_code == 206 and len(partial.content) == 100

        waveform = server.client.get(state["waveform_url"]).json()
        assert waveform["points"] == 1000 and len(waveform["min"]) == len(waveform["max"]) == 1000
        assert abs(waveform["duration_seconds"] - 20.5) <= 0.010
        assert all(-1.0 <= lo <= hi <= 1.0 for lo, hi in zip(waveform["min"], waveform["max"]))
        assert max(waveform["max"]) > 0.3

        job_folder = server.temp_root.glob(f"*/{created['id']}")
        assert [p.name for p in next(job_folder).iterdir()] == ["result.flac"]  # the inputs are gone
        assert server.client.delete(created["status_url"]).status_code == 204
        assert server.client.get(created["status_url"]).status_code == 404
        assert server.client.get(state["result_url"]).status_code == 404
        assert list(server.temp_root.glob(f"*/{created['id']}")) == []


def test_duration_field(tmp_path, song) -> None:
    with LiveServer(tmp_path) as server:
        answer = server.submit(song_bytes(12.0, fmt="OGG"), filename="song.ogg", duration="0:25")
        assert answer.status_code == 202, answer.text
        state, _ = wait_done(server.client, answer.json()["status_url"])
        assert state["status"] == "done", state
        download = server.client.get(state["result_url"])
        assert download.headers["content-type"] == "audio/wav"  # the default format
        assert abs(duration_of(download.content) - 25.0) <= 0.010


# --------------------------------------------------------------------------- refusals

def test_bad_files(tmp_path, song) -> None:
    with LiveServer(tmp_path) as server:
        text = server.submit(b"just some words, not music at all\n" * 20, filename="song.txt", seconds="30")
        assert text.status_code == 415 and text.json() == {"error": f"song.txt: {NOT_AUDIO}"}
        renamed = server.submit(b"<!DOCTYPE html><html></html>", filename="track.mp3", seconds="30")
        assert renamed.status_code == 415 and renamed.json()["error"] == f"track.mp3: {NOT_AUDIO}"
        empty = server.submit(b"", filename="empty.wav", seconds="30")
        assert empty.status_code == 422 and empty.json() == {"error": "empty.wav: empty file (0 bytes)"}

        # passes the sniff, fails to decode: the extend job's own message is the last word
        corrupt = server.submit(b"RIFF\x00\x10\x00\x00WAVE" + os.urandom(4000), filename="broken.wav", seconds="30")
        assert corrupt.status_code == 202
        state, _ = wait_done(server.client, corrupt.json()["status_url"])
        assert state["status"] == "failed" and state["result"] is None
        assert state["error"] == f"broken.wav: {NOT_AUDIO}"
        assert server.client.get(f"{corrupt.json()['status_url']}/result").status_code == 410

        too_short = server.submit(song_bytes(1.5), filename="short.wav", seconds="30")  # under 2 s
        state, _ = wait_done(server.client, too_short.json()["status_url"])
        assert state["status"] == "failed", state
        assert state["error"] == "short.wav: too short to extend (1.5 s; at least 2 s needed)"

        assert server.client.get("/api/health").json()["status"] == "ok"  # still up, and still working
        good = server.submit(song, seconds="15").json()
        assert wait_done(server.client, good["status_url"])[0]["status"] == "done"
        assert tree(server.pool.root) == [good["id"], f"{good['id']}/result.wav"]  # failed jobs' folders: gone
    assert tree(server.temp_root) == []


def test_oversize_upload(tmp_path, song) -> None:
    with LiveServer(tmp_path, max_upload_bytes=4096) as server:
        big = server.submit(song[:100_000], seconds="20")
        assert big.status_code == 413 and "at most 4096 bytes" in big.json()["error"]
        declared = server.submit(song + song, seconds="20")  # Content-Length over the cap: refused unread
        assert declared.status_code == 413
        assert server.client.get("/api/health").json()["jobs"] == {"queued": 0, "running": 0, "done": 0,
                                                                  "failed": 0}
        assert tree(server.pool.root) == []


@pytest.mark.parametrize("fields, says", [
    ({}, "give the length as 'seconds' or as 'duration'"),
    ({"seconds": "20", "duration": "0:20"}, "one of them"),
    ({"duration": "1:99"}, "minutes and seconds must be below 60"),
    ({"duration": "soon"}, "duration must be MM:SS or HH:MM:SS"),
    ({"seconds": "abc"}, "seconds must be a number"),
    ({"seconds": "0"}, "the target duration must be more than 0"),
    ({"seconds": "99999"}, "at most 24 hours"),
    ({"seconds": "20", "format": "exe"}, "format must be one of wav, flac, ogg, mp3"),
    ({"seconds": "20", "seed": "-1"}, "seed must be a whole number"),
    ({"seconds": "20", "minutes": "3"}, "unknown field 'minutes'"),
    ({"seconds": "1" * 40}, "field 'seconds' is too long"),
    ({"seconds": "20", "fade_out": "soon"}, "fade_out must be a number"),
    ({"seconds": "20", "fade_out": "-1"}, "fade_out must be seconds, from 0 (no fade)"),
    ({"seconds": "20", "fade_out": "nan"}, "fade_out must be seconds"),
    ({"seconds": "20", "fade_out": "inf"}, "fade_out must be seconds"),
    ({"seconds": "20", "fade_out": "25"}, "fade_out must be at most the target length (20 s), got 25"),
    ({"seconds": "20", "keep_original_audio": "-12"}, "keep_original_audio needs a 'video'"),
    ({"seconds": "20", "keep_original_audio": "loud"}, "keep_original_audio must be a number"),
    ({"seconds": "20", "keep_original_audio": "6"}, "keep_original_audio must be a level in dB from -60 to 0"),
    ({"seconds": "20", "keep_original_audio": "-100"}, "keep_original_audio must be a level in dB from -60 to 0"),
])
def test_bad_fields(tmp_path, song, fields, says) -> None:
    with LiveServer(tmp_path) as server:
        answer = server.submit(song[:2000], **fields)
        assert answer.status_code == 400 and says in answer.json()["error"], answer.text
        assert tree(server.pool.root) == []


def test_bad_requests(tmp_path, song) -> None:
    with LiveServer(tmp_path) as server:
        no_file, content_type = multipart({"seconds": "20"}, [])
        answer = server.client.post("/api/jobs", content=no_file, headers={"content-type": content_type})
        assert answer.status_code == 400 and "missing the song" in answer.json()["error"]
        twice, content_type = multipart({"seconds": "20"}, [("file", "a.wav", song[:2000]), ("file", "b.wav", song)])
        answer = server.client.post("/api/jobs", content=twice, headers={"content-type": content_type})
        assert answer.status_code == 400 and "given twice" in answer.json()["error"]
        answer = server.client.post("/api/jobs", json={"seconds": 20})
        assert answer.status_code == 415 and "multipart/form-data" in answer.json()["error"]
        truncated, content_type = multipart({"seconds": "20"}, [("file", "a.wav", song[:5000])])
        answer = server.client.post("/api/jobs", content=truncated[:3000], headers={"content-type": content_type})
        assert answer.status_code == 400 and "malformed" in answer.json()["error"]
        assert server.client.put("/api/jobs").status_code == 405
        assert "error" in server.client.get("/api/nothing-here").json()
        assert tree(server.pool.root) == []


def test_unknown_ids_and_paths(tmp_path) -> None:
    with LiveServer(tmp_path) as server:
        for path in ["/api/jobs/0123456789abcdef0123456789abcdef", "/api/jobs/nope", "/api/jobs/..%2F..%2Fetc",
                     "/api/jobs/%2e%2e/result", "/api/jobs/0123456789abcdef0123456789abcdef/result",
                     "/api/jobs/0123456789abcdef0123456789abcdef/waveform"]:
            answer = server.client.get(path)
            assert answer.status_code == 404 and "error" in answer.json(), path
        assert server.client.delete("/api/jobs/0123456789abcdef0123456789abcdef").status_code == 404
        for path in ["/static/../pool.py", "/static/%2e%2e/pool.py", "/static/..%2fapp.py"]:
            assert server.client.get(path).status_code == 404, path


def test_traversal_file_names(tmp_path, song) -> None:
    with LiveServer(tmp_path, workers=2) as server:
        names = {"../../evil.wav": "evil.wav", "..\\x.wav": "x.wav", f"{tmp_path}/abs.wav": "abs.wav",
                 "../../../../../../../../tmp/deep.wav": "deep.wav", "..": "song"}
        for name, shown in names.items():
            answer = server.submit(song, filename=name, seconds="14")
            assert answer.status_code == 202, answer.text
            state, _ = wait_done(server.client, answer.json()["status_url"])
            assert state["status"] == "done", state
            assert state["result"]["input"] == shown and state["input_name"] == shown
            assert state["download_name"] == shown.replace(".wav", "") + ".extended.wav"
        assert sorted(Path(name).name for name in tree(server.pool.root) if "/" in name) == ["result.wav"] * 5
    for shown in names.values():
        assert not list(tmp_path.rglob(shown)), shown
    assert not (Path.cwd().parent.parent / "evil.wav").exists() and not (tmp_path.parent / "evil.wav").exists()
    assert not Path("/tmp/deep.wav").exists()


# --------------------------------------------------------------------------- the pool

def test_concurrent_jobs_and_queue_limit(tmp_path, song) -> None:
    with LiveServer(tmp_path, workers=2, queue_limit=1) as server:
        jobs = [server.submit(song, filename=f"s{i}.wav", seconds="120") for i in range(3)]
        assert [job.status_code for job in jobs] == [202, 202, 202]
        refused = server.submit(song, filename="s3.wav", seconds="120")
        assert refused.status_code == 503 and "busy" in refused.json()["error"]
        urls = [job.json()["status_url"] for job in jobs]
        first = [server.client.get(url).json() for url in urls]
        assert first[2]["status"] == "queued" and first[2]["queue_position"] == 1
        most_running, third_waited = 0, False
        while True:  # the health counts are one consistent snapshot
            counts = server.client.get("/api/health").json()["jobs"]
            most_running = max(most_running, counts["running"])
            third_waited |= counts == {"queued": 1, "running": 2, "done": 0, "failed": 0}
            if counts["done"] + counts["failed"] == 3:
                break
            time.sleep(0.05)
        states = [server.client.get(url).json() for url in urls]
        assert [state["status"] for state in states] == ["done"] * 3, states
        assert most_running == 2 and third_waited
        for state in states:
            assert abs(duration_of(server.client.get(state["result_url"]).content) - 120.0) <= 0.010


LONG_JOB = {"seconds": "300"}  # 12 s of synthetic song to 5 min: about 20 s of work


def test_delete_cancels_a_running_job(tmp_path, song) -> None:
    with LiveServer(tmp_path, workers=1) as server:
        long_job = server.submit(song, **LONG_JOB).json()
        wait_for(lambda: server.client.get(long_job["status_url"]).json()["progress"] > 0,
                 timeout=60, what="the job to run")
        process = server.pool.get(long_job["id"]).process
        started = time.monotonic()
        assert server.client.delete(long_job["status_url"]).status_code == 204
        assert server.client.get(long_job["status_url"]).status_code == 404
        wait_for(lambda: not process.is_alive(), timeout=20, what="the job's process to end")
        assert process.exitcode == 143 and time.monotonic() - started < 20
        wait_for(lambda: not list(server.temp_root.glob(f"*/{long_job['id']}")), timeout=10, what="its folder")
        quick = server.submit(song, seconds="13")  # the worker is free again
        assert wait_done(server.client, quick.json()["status_url"], timeout=60)[0]["status"] == "done"


def test_results_expire(tmp_path, song) -> None:
    with LiveServer(tmp_path, result_ttl_seconds=0.5) as server:
        job = server.submit(song, seconds="13").json()
        assert wait_done(server.client, job["status_url"])[0]["status"] == "done"
        wait_for(lambda: server.client.get(job["status_url"]).status_code == 404, timeout=10, what="expiry")
        assert not list(server.temp_root.glob(f"*/{job['id']}"))
    with LiveServer(tmp_path, result_ttl_seconds=3600, download_grace_seconds=0.3) as server:
        job = server.submit(song, seconds="13").json()
        state, _ = wait_done(server.client, job["status_url"])
        assert state["expires_in_seconds"] > 3000
        server.client.get(state["result_url"], headers={"range": "bytes=0-9"})  # the player: not a download
        time.sleep(0.6)
        assert server.client.get(job["status_url"]).status_code == 200
        assert server.client.get(state["result_url"]).status_code == 200  # the download
        wait_for(lambda: server.client.get(job["status_url"]).status_code == 404, timeout=10, what="the grace")
        assert not list(server.temp_root.glob(f"*/{job['id']}"))


def test_stopping_the_server_cancels_jobs_and_cleans_up(tmp_path, song) -> None:
    server = LiveServer(tmp_path, workers=1).__enter__()
    running = server.submit(song, **LONG_JOB).json()
    waiting = server.submit(song, **LONG_JOB).json()
    wait_for(lambda: server.client.get(running["status_url"]).json()["progress"] > 0, timeout=60,
             what="the job to run")
    process = server.pool.get(running["id"]).process
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 20 and not process.is_alive()
    assert tree(server.temp_root) == [] and waiting["id"]


# --------------------------------------------------------------------------- the guard

def test_host_and_origin_guard(tmp_path, song) -> None:
    with LiveServer(tmp_path) as server:
        rebound = server.client.get("/api/health", headers={"host": "attacker.example:8000"})
        assert rebound.status_code == 421 and "only on this machine" in rebound.json()["error"]
        assert server.client.get("/api/health", headers={"host": "localhost"}).status_code == 200
        body, content_type = multipart({"seconds": "20"}, [("file", "s.wav", song)])
        foreign = server.client.post("/api/jobs", content=body,
                                     headers={"content-type": content_type, "origin": "http://attacker.example"})
        assert foreign.status_code == 403 and foreign.json() == {"error": "cross-origin requests are refused"}
        same = server.client.post("/api/jobs", content=body,
                                  headers={"content-type": content_type, "origin": server.url})
        assert same.status_code == 202
        wait_done(server.client, same.json()["status_url"])


# --------------------------------------------------------------------------- video

CLIP_SECONDS = 15.0
AAC_FRAME = 1024  # samples: one AAC frame, the tolerance on the music's length


def _video_packets(path: Path) -> list[bytes]:
    import av

    with av.open(str(path)) as container:
        return [bytes(packet) for packet in container.demux(container.streams.video[0])
                if packet.pts is not None or packet.dts is not None]


def _decoded_audio(path: Path):
    """Every sample the first audio stream decodes to, as a player gets it: (samples [n, channels], rate, codec)."""
    import av
    import numpy as np

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray() for frame in container.decode(stream)]
        return np.concatenate(frames, axis=1).T, stream.codec_context.sample_rate, stream.codec_context.name


def _tone_level(samples, sample_rate: int, hz: float) -> float:
    """Amplitude of a sine at ``hz`` in the first channel."""
    import numpy as np

    t = np.arange(samples.shape[0]) / sample_rate
    x = samples[:, 0].astype(np.float64)
    return float(2 * np.hypot(np.mean(x * np.sin(2 * np.pi * hz * t)), np.mean(x * np.cos(2 * np.pi * hz * t))))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 15 s H.264 clip with an AAC tone as its sound."""
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", CLIP_SECONDS)


def _submit_video(server: LiveServer, song: bytes, clip_bytes: bytes, *, clip_name: str = "clip.mp4", **fields):
    body, content_type = multipart(fields, [("file", "song.wav", song), ("video", clip_name, clip_bytes)])
    return server.client.post("/api/jobs", content=body, headers={"content-type": content_type})


def test_video_job(tmp_path, song, clip) -> None:
    from harmonizer_cli.core.media import probe_media

    clip_seconds = probe_media(clip).duration_seconds
    assert clip_seconds == pytest.approx(CLIP_SECONDS, abs=1e-3)
    with LiveServer(tmp_path) as server:
        answer = _submit_video(server, song, clip.read_bytes(), clip_name="../clip.mp4", seed="1")
        assert answer.status_code == 202, answer.text
        state, _ = wait_done(server.client, answer.json()["status_url"])
        assert state["status"] == "done", state
        assert state["download_name"] == "clip.extended.mp4"
        record = state["result"]
        assert record["video"] == "clip.mp4" and record["output"] == "clip.extended.mp4"
        assert record["video_seconds"] == pytest.approx(clip_seconds, abs=1e-6)
        assert abs(record["output_seconds"] - clip_seconds) <= 0.010
        assert str(server.temp_root) not in repr(state)
        download = server.client.get(state["result_url"])
        assert download.status_code == 200 and download.headers["content-type"] == "video/mp4"
        assert 'filename="clip.extended.mp4"' in download.headers["content-disposition"]
        result = tmp_path / "result.mp4"
        result.write_bytes(download.content)

        info = probe_media(result)
        assert info.has_video and info.video_codec == "h264" and info.audio_codec == "aac"
        assert info.duration_seconds == pytest.approx(clip_seconds, abs=1e-6)
        assert _video_packets(result) == _video_packets(clip)  # the video is copied, packet for packet
        music, rate, _ = _decoded_audio(result)
        assert rate == 22050 == record["sample_rate"]  # the song's rate (AAC takes it)
        assert abs(music.shape[0] - clip_seconds * rate) <= AAC_FRAME  # as long as the clip, to one audio frame
        assert _tone_level(music, rate, CLIP_TONE_HZ) < 0.01  # the clip's own sound is gone

        waveform = server.client.get(state["waveform_url"]).json()  # read from the mp4's audio track
        assert waveform["points"] == 1000 and abs(waveform["duration_seconds"] - clip_seconds) <= 0.010
        assert max(waveform["max"]) > 0.3 and min(waveform["min"]) < -0.3


def test_video_job_fade_out_and_keep_original_audio(tmp_path, song, clip) -> None:
    import numpy as np

    with LiveServer(tmp_path, workers=2) as server:
        plain = _submit_video(server, song, clip.read_bytes(), seed="1")
        mixed = _submit_video(server, song, clip.read_bytes(), seed="1", fade_out="4", keep_original_audio="-20")
        assert plain.status_code == 202 and mixed.status_code == 202, mixed.text
        results = []
        for answer in (plain, mixed):
            state, _ = wait_done(server.client, answer.json()["status_url"])
            assert state["status"] == "done", state
            path = tmp_path / f"{answer.json()['id']}.mp4"
            path.write_bytes(server.client.get(state["result_url"]).content)
            results.append(_decoded_audio(path))
    (a, rate, _), (b, rate_b, _) = results
    assert a.shape == b.shape and rate == rate_b
    level = CLIP_TONE_LEVEL * 10 ** (-20 / 20)
    middle = slice(rate, a.shape[0] - 5 * rate)  # before the fade: the music plus the clip's tone at -20 dB
    assert _tone_level(b[middle] - a[middle], rate, CLIP_TONE_HZ) == pytest.approx(level, rel=0.1)
    assert _tone_level(a[middle], rate, CLIP_TONE_HZ) < 0.01
    # 2 s before the end the 4 s raised-cosine fade is at half: the music there is half as loud
    window = slice(a.shape[0] - int(2.2 * rate), a.shape[0] - int(1.8 * rate))
    t = np.arange(b.shape[0])[window] / rate
    tone = level * np.sin(2 * np.pi * CLIP_TONE_HZ * t)[:, None]
    ratio = float(np.sqrt(np.mean((b[window] - tone) ** 2) / np.mean(a[window] ** 2)))
    assert 0.4 < ratio < 0.6, ratio


def test_video_defaults_fit_the_clip(tmp_path, song, clip) -> None:
    h264_webm = make_clip(tmp_path / "h264.webm", 3.0, container_format="matroska")  # H.264 named .webm
    silent = make_clip(tmp_path / "silent.mp4", 3.0, sound=False)
    with LiveServer(tmp_path, workers=1, queue_limit=8) as server:
        answer = _submit_video(server, song, h264_webm.read_bytes(), clip_name="h264.webm")
        assert answer.status_code == 202, answer.text  # a .webm file cannot hold H.264: mkv instead
        assert server.pool.get(answer.json()["id"]).spec.download_name == "h264.extended.mkv"
        server.client.delete(answer.json()["status_url"])
        answer = _submit_video(server, song, clip.read_bytes(), format="mov", fade_out="0", keep_original_audio="0")
        assert answer.status_code == 202, answer.text  # 0: no fade; the clip's sound at full level
        assert server.pool.get(answer.json()["id"]).spec.download_name == "clip.extended.mov"
        server.client.delete(answer.json()["status_url"])

        refusals = [
            (clip, {"format": "webm"}, "format webm: a .webm file cannot hold the clip's h264 video"),
            (clip, {"format": "wav"}, "with a video, format must be one of mp4, mov, mkv, webm"),
            (clip, {"seconds": "20"}, "with a video the length is the clip's"),
            (clip, {"fade_out": "16"}, "fade_out must be at most the target length (15 s), got 16"),
            (silent, {"keep_original_audio": "-12"}, "clip.mp4: the clip has no sound to keep"),
        ]
        for path, fields, says in refusals:
            answer = _submit_video(server, song, path.read_bytes(), **fields)
            assert answer.status_code == 400 and says in answer.json()["error"], (fields, answer.text)
        wait_for(lambda: tree(server.pool.root) == [], timeout=20, what="the deleted and refused jobs' folders")

        # a clip that passes the sniff but cannot be read: the job fails with the CLI's line, the client's name
        broken = _submit_video(server, song, b"\x00\x00\x00\x20ftypisom" + bytes(4000), clip_name="broken.mp4")
        assert broken.status_code == 202, broken.text
        state, _ = wait_done(server.client, broken.json()["status_url"])
        assert state["status"] == "failed" and state["error"].startswith("broken.mp4: "), state
        assert str(server.temp_root) not in state["error"]


def test_build_extend_job_passes_the_new_fields(tmp_path, clip) -> None:
    from harmonizer_cli.serve.worker import JobSpec, build_extend_job

    shutil.copyfile(clip, tmp_path / "video.mp4")
    spec = JobSpec(folder=str(tmp_path), input="input.wav", input_name="song.wav", target_seconds=None,
                   format="mkv", seed=2, use_model=False, download_name="clip.extended.mkv", video="video.mp4",
                   video_name="clip.mp4", fade_out_seconds=3.5, keep_original_audio_db=-18.0)
    job = build_extend_job(spec)
    assert job.video == tmp_path / "video.mp4" and job.output == tmp_path / "result.mkv" and job.format == "mkv"
    assert job.target_seconds == pytest.approx(CLIP_SECONDS, abs=1e-3)
    assert job.fade_out_seconds == 3.5 and job.keep_original_audio_db == -18.0
    audio = build_extend_job(JobSpec(folder=str(tmp_path), input="input.wav", input_name="song.wav",
                                     target_seconds=20.0, format="wav", seed=0, use_model=False,
                                     download_name="song.extended.wav", fade_out_seconds=2.0))
    assert audio.video is None and audio.target_seconds == 20.0 and audio.fade_out_seconds == 2.0
    assert audio.keep_original_audio_db is None


@pytest.mark.parametrize("fmt, media_type", [("m4a", "audio/mp4"), ("opus", "audio/ogg")])
def test_pyav_formats_have_a_waveform(tmp_path, song, fmt, media_type) -> None:
    with LiveServer(tmp_path) as server:
        answer = server.submit(song, seconds="14", format=fmt)
        state, _ = wait_done(server.client, answer.json()["status_url"])
        assert state["status"] == "done", state
        assert server.client.get(state["result_url"]).headers["content-type"] == media_type
        waveform = server.client.get(state["waveform_url"]).json()
    assert waveform["points"] == 1000 and abs(waveform["duration_seconds"] - 14.0) <= 0.010
    assert max(waveform["max"]) > 0.3


def test_fade_out_of_an_audio_job(tmp_path, song) -> None:
    import numpy as np

    with LiveServer(tmp_path) as server:
        answer = server.submit(song, seconds="20", fade_out="2.5")
        assert answer.status_code == 202, answer.text
        state, _ = wait_done(server.client, answer.json()["status_url"])
        assert state["status"] == "done", state
        samples, rate = sf.read(io.BytesIO(server.client.get(state["result_url"]).content), dtype="float32")
    assert samples.shape[0] == 20 * rate
    assert np.max(np.abs(samples[-20:])) < 1e-3  # faded to silence
    assert np.max(np.abs(samples[: 15 * rate])) > 0.3


# --------------------------------------------------------------------------- the command

def test_serve_help() -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ["--host", "--port", "--jobs", "--max-upload-mb", "--queue-limit", "127.0.0.1"]:
        assert option in result.stdout
    assert "serve" in CliRunner().invoke(cli_app, ["--help"]).stdout


class ServeProcess:
    """``harmonizer serve ARGS`` in a subprocess (TMPDIR in ``tmp_path``), its stderr collected."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.temp = tmp_path / "tmp"
        self.temp.mkdir(exist_ok=True)
        env = {**os.environ, "TMPDIR": str(self.temp), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
        self.process = subprocess.Popen([sys.executable, "-m", "harmonizer_cli", "serve", *args],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(self.process.stderr.readline, "")),
                                       daemon=True)
        self.reader.start()

    def url(self) -> str:
        """The address the server printed (it is listening by then)."""
        def address():
            for line in self.lines:
                match = re.search(r"open (http://\S+)/ in a browser", line)
                if match:
                    return match.group(1)
            assert self.process.poll() is None, "the server exited:\n" + "".join(self.lines)
            return None

        return wait_for(address, timeout=60, what="the server's address")

    def stop(self, signal_number: int) -> tuple[int, str, float]:
        started = time.monotonic()
        self.process.send_signal(signal_number)
        code = self.process.wait(timeout=60)
        self.reader.join(timeout=10)
        return code, "".join(self.lines), time.monotonic() - started


def _descendants(pid: int) -> set[int]:
    """Processes below ``pid`` (from /proc: Linux only; empty elsewhere)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.mark.slow
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_serve_command_stops_cleanly(tmp_path, song, signal_number) -> None:
    import httpx

    server = ServeProcess(tmp_path, "--port", "0", "--jobs", "1")
    try:
        url = server.url()
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, timeout=60) as client:
            body, content_type = multipart(LONG_JOB, [("file", "song.wav", song)])
            job = client.post("/api/jobs", content=body, headers={"content-type": content_type}).json()
            wait_for(lambda: client.get(job["status_url"]).json()["progress"] > 0, timeout=60,
                     what="the job to run")
            assert list(server.temp.glob("harmonizer-serve-*/*/input.wav"))
        children = _descendants(server.process.pid)
    except BaseException:
        server.process.kill()
        raise
    code, stderr, seconds = server.stop(signal_number)
    assert code == 128 + signal_number, stderr
    assert seconds < 20 and "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted"), stderr
    assert list(server.temp.iterdir()) == []

    def alive() -> list[int]:
        return [pid for pid in children if Path(f"/proc/{pid}").exists()
                and "zombie" not in Path(f"/proc/{pid}/status").read_text(errors="replace").lower()]

    wait_for(lambda: not alive(), timeout=10, what=f"the server's child processes {children} to end")


def test_serve_command_port_in_use_and_warning(tmp_path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "harmonizer_cli", "serve", "--port", str(port)],
                                capture_output=True, text=True, timeout=60, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: cannot listen on 127.0.0.1:{port} (")
    assert list(tmp_path.iterdir()) == []

    server = ServeProcess(tmp_path, "--host", "0.0.0.0", "--port", "0")
    try:
        server.url()
        assert any(line.startswith("warning: listening on 0.0.0.0") for line in server.lines), server.lines
    finally:
        code, stderr, _ = server.stop(signal.SIGTERM)
    assert code == 143, stderr
