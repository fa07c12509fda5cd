"""The web app: ``create_app(settings)`` builds a FastAPI app from two routers and a guard.

* ``api`` (``/api``): health, and jobs (create from an upload, state, result file,
  waveform summary, delete). Routes only parse, enqueue and report; the extension
  runs in the ``JobPool`` (``Depends(get_pool)``), off the event loop.
* ``page`` (``/``): the static page from the package (``static/``: HTML, CSS, JS;
  nothing from a CDN).
* ``Guard``: security headers on every answer; when bound to a loopback address,
  requests whose ``Host`` is not a loopback name are refused (DNS rebinding), and
  state-changing requests from another origin always are.

Every refusal is JSON ``{"error": "<one line>"}`` with its status code.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from pathlib import Path
from typing import Annotated, Optional
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from harmonizer_cli import __version__
from harmonizer_cli.core.audio_out import OUTPUT_FORMATS
from harmonizer_cli.errors import ConfigError, HarmonizerError
from harmonizer_cli.jobs import MAX_CLIP_SECONDS, MAX_TARGET_SECONDS, target_seconds_from
from harmonizer_cli.serve import worker
from harmonizer_cli.serve.pool import DONE, FAILED, JobPool, ServeJob
from harmonizer_cli.serve.settings import Settings, is_loopback_host
from harmonizer_cli.serve.upload import ApiError, Upload, download_name, read_upload

__all__ = ["create_app", "get_pool", "get_settings", "VIDEO_FORMATS", "MEDIA_TYPES"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Containers a clip's result may be written in (the clip's own when it is one of them).
VIDEO_FORMATS = ("mp4", "mov", "mkv", "webm")
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "mp3": "audio/mpeg",
               "m4a": "audio/mp4", "opus": "audio/ogg",
               "mp4": "video/mp4", "mov": "video/quicktime", "mkv": "video/x-matroska", "webm": "video/webm"}
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'self'; media-src 'self' blob:; img-src 'self' data:; "
                                 b"object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"),
]


def get_pool(request: Request) -> JobPool:
    """The app's job pool (a dependency)."""
    return request.app.state.pool


def get_settings(request: Request) -> Settings:
    """The app's settings (a dependency)."""
    return request.app.state.settings


Pool = Annotated[JobPool, Depends(get_pool)]
AppSettings = Annotated[Settings, Depends(get_settings)]


def _job_or_404(pool: JobPool, job_id: str) -> ServeJob:
    job = pool.get(job_id)
    if job is None:
        raise ApiError(404, "no such job (unknown id, deleted, or its result expired)")
    return job


# ---------------------------------------------------------------------------- the request's fields

def _target_seconds(fields: dict[str, str]) -> float:
    """``seconds`` or ``duration`` (MM:SS, HH:MM:SS), exactly one, in range."""
    seconds, duration = fields.get("seconds") or None, fields.get("duration") or None
    if (seconds is None) == (duration is None):
        raise ApiError(400, "give the length as 'seconds' or as 'duration' (MM:SS), one of them "
                            "(or a 'video' to fit)")
    try:
        value = float(seconds) if seconds is not None else None
    except ValueError:
        raise ApiError(400, f"seconds must be a number, got {seconds!r}") from None
    try:
        return target_seconds_from(None, value, duration)
    except ConfigError as exc:
        raise ApiError(400, exc.message.replace("--", "")) from None


def _number(fields: dict[str, str], name: str, *, low: float, high: float, says: str) -> Optional[float]:
    """The optional number field ``name`` (None when absent or empty), finite and in [low, high]."""
    text = fields.get(name) or None
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, f"{name} must be a number ({says}), got {text!r}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise ApiError(400, f"{name} must be {says}, got {text!r}")
    return value


def _probe_clip(path: Path):
    """The clip's ``MediaInfo``, or None where it cannot be probed (the job then fails with the reason)."""
    from harmonizer_cli.core.media import probe_media

    try:
        return probe_media(path)
    except HarmonizerError:
        return None


def _clip_format(info, requested: Optional[str], clip: Path) -> str:
    """The container of a clip's result: the one asked for, else the clip's own (mp4, mov, mkv, webm), else mp4.

    The default falls back to mkv where its container cannot hold the clip's video
    codec without re-encoding it (H.264 in a .webm file); a ``format`` asked for that
    cannot is refused (400).
    """
    from harmonizer_cli.core.video import check_can_mux

    if requested is not None:
        if requested not in VIDEO_FORMATS:
            raise ApiError(400, f"with a video, format must be one of {', '.join(VIDEO_FORMATS)}, got {requested!r}")
        if info is not None:
            try:
                check_can_mux(info, requested)
            except ConfigError as exc:
                raise ApiError(400, f"format {requested}: {exc.message.replace('use .mkv', 'use mkv')}") from None
        return requested
    own = clip.suffix.lstrip(".").lower()
    fmt = own if own in VIDEO_FORMATS else "mp4"
    if info is not None:
        try:
            check_can_mux(info, fmt)
        except ConfigError:
            fmt = "mkv"
    return fmt


def _spec_from_upload(upload: Upload, folder: Path, settings: Settings) -> worker.JobSpec:
    """The job the request asks for, its fields checked (the clip probed: run it off the event loop).

    Raises
    ------
    ApiError
        400 for a missing song, a missing or bad target, seed, format, fade or level, a
        clip longer than the longest target, a clip's sound to keep where it has none.
    """
    fields = upload.fields
    song = upload.files.get("file")
    if song is None:
        raise ApiError(400, "missing the song: send it as the multipart file field 'file'")
    clip = upload.files.get("video")
    seed_text = fields.get("seed") or "0"
    if not seed_text.isdigit() or int(seed_text) >= 2**32:
        raise ApiError(400, f"seed must be a whole number from 0 to {2**32 - 1}, got {seed_text!r}")
    fmt = (fields.get("format") or "").lower() or None
    fade = _number(fields, "fade_out", low=0.0, high=MAX_TARGET_SECONDS,
                   says="seconds, from 0 (no fade) to the target length")
    keep_db = _number(fields, "keep_original_audio", low=-60.0, high=0.0, says="a level in dB from -60 to 0")
    if clip is None:
        if keep_db is not None:
            raise ApiError(400, "keep_original_audio needs a 'video': the clip whose own sound it keeps")
        target: Optional[float] = _target_seconds(fields)
        fmt = fmt or "wav"
        if fmt not in OUTPUT_FORMATS:
            raise ApiError(400, f"format must be one of {', '.join(OUTPUT_FORMATS)}, got {fmt!r}")
        length: Optional[float] = target
    else:
        if fields.get("seconds") or fields.get("duration"):
            raise ApiError(400, "with a video the length is the clip's: leave out 'seconds' and 'duration'")
        target = None
        info = _probe_clip(clip.path)
        fmt = _clip_format(info, fmt, clip.path)
        length = None if info is None else info.duration_seconds
        if length is not None and length > MAX_CLIP_SECONDS:
            raise ApiError(400, f"{clip.client_name}: the clip is {length / 60:.1f} minutes long; clips of at "
                                f"most {MAX_CLIP_SECONDS // 60} minutes are accepted")
        if keep_db is not None and info is not None and not info.has_audio:
            raise ApiError(400, f"{clip.client_name}: the clip has no sound to keep (keep_original_audio)")
    if fade is not None and length is not None and fade > length:
        raise ApiError(400, f"fade_out must be at most the target length ({length:g} s), got {fade:g}")
    offered = download_name(clip.client_name if clip is not None else song.client_name, fmt)
    return worker.JobSpec(folder=str(folder), input=song.path.name, input_name=song.client_name,
                          target_seconds=target, format=fmt, seed=int(seed_text), use_model=settings.use_model,
                          download_name=offered, video=clip.path.name if clip is not None else None,
                          video_name=clip.client_name if clip is not None else None,
                          fade_out_seconds=fade or None, keep_original_audio_db=keep_db)


# ---------------------------------------------------------------------------- routers

api = APIRouter(prefix="/api")
page = APIRouter()


@api.get("/health")
def health(pool: Pool, settings: AppSettings) -> dict:
    """Liveness, version, what this build can do and the limits the page checks before uploading."""
    return {"status": "ok", "version": __version__, "video": True,
            "formats": list(OUTPUT_FORMATS), "video_formats": list(VIDEO_FORMATS),
            "max_upload_bytes": settings.max_upload_bytes, "max_target_seconds": MAX_TARGET_SECONDS,
            "workers": settings.workers, "queue_limit": settings.queue_limit,
            "result_ttl_seconds": settings.result_ttl_seconds, "jobs": pool.counts()}


@api.post("/jobs", status_code=202)
async def create_job(request: Request, pool: Pool, settings: AppSettings) -> JSONResponse:
    """Receive a song (and optionally a clip) and queue its extension: 202 ``{"id", "status_url"}``."""
    job_id, folder = pool.new_folder()
    try:
        upload = await read_upload(request, folder, max_upload_bytes=settings.max_upload_bytes)
        spec = await run_in_threadpool(_spec_from_upload, upload, folder, settings)
        job = pool.submit(job_id, folder, spec)
    except ClientDisconnect:
        shutil.rmtree(folder, ignore_errors=True)
        raise ApiError(400, "the upload was interrupted") from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    status_url = f"/api/jobs/{job.id}"
    return JSONResponse({"id": job.id, "status_url": status_url}, status_code=202,
                        headers={"location": status_url})


@api.get("/jobs/{job_id}")
def job_status(job_id: str, pool: Pool) -> dict:
    """``{"status", "progress", "error", "result", ...}`` of a job."""
    return pool.describe(_job_or_404(pool, job_id))


@api.get("/jobs/{job_id}/result")
def job_result(job_id: str, request: Request, pool: Pool) -> FileResponse:
    """The result file (byte ranges supported, for the player). A whole-file download starts the grace period."""
    job = _job_or_404(pool, job_id)
    if job.status == FAILED:
        raise ApiError(410, f"the job failed, there is no result: {job.error}")
    if job.status != DONE:
        raise ApiError(409, f"the job is {job.status}: no result yet")
    if not job.result_path.is_file():
        raise ApiError(404, "no such job (its result expired)")
    if "range" not in request.headers:
        pool.mark_downloaded(job)
    return FileResponse(job.result_path, media_type=MEDIA_TYPES.get(job.spec.format, "application/octet-stream"),
                        filename=job.spec.download_name, headers={"cache-control": "no-store"})


@api.get("/jobs/{job_id}/waveform")
def job_waveform(job_id: str, pool: Pool) -> dict:
    """The result's peak envelope: ``{"points", "duration_seconds", "min", "max"}`` (null lists if unreadable)."""
    job = _job_or_404(pool, job_id)
    if job.status != DONE:
        raise ApiError(409 if job.status != FAILED else 410, f"the job is {job.status}: no waveform")
    return job.waveform or {"points": 0, "duration_seconds": (job.result or {}).get("output_seconds"),
                            "min": None, "max": None}


@api.delete("/jobs/{job_id}", status_code=204)
def delete_job(job_id: str, pool: Pool) -> Response:
    """Cancel a job if it runs, forget it and remove its files: 204."""
    if not pool.delete(job_id):
        raise ApiError(404, "no such job (unknown id, deleted, or its result expired)")
    return Response(status_code=204)


@page.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"cache-control": "no-cache"})


# ---------------------------------------------------------------------------- guard and errors

def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Guard:
    """ASGI middleware: security headers, loopback ``Host`` check, same-origin writes.

    Parameters
    ----------
    app : ASGI app
    loopback_only : bool
        Refuse (421) requests whose ``Host`` header is not a loopback name or address.
    """

    def __init__(self, app, *, loopback_only: bool) -> None:
        self.app, self.loopback_only = app, loopback_only

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        refusal = None
        if self.loopback_only and not is_loopback_host(_host_name(host)):
            refusal = (421, f"this server answers only on this machine (localhost, 127.0.0.1), not {host!r}")
        elif scope["method"] not in ("GET", "HEAD", "OPTIONS") and "origin" in headers \
                and urlsplit(headers["origin"]).netloc != host:
            refusal = (403, "cross-origin requests are refused")
        if refusal is not None:
            response = JSONResponse({"error": refusal[1]}, status_code=refusal[0])
            await response(scope, receive, self._with_headers(send))
            return
        await self.app(scope, receive, self._with_headers(send))

    @staticmethod
    def _with_headers(send):
        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *_SECURITY_HEADERS]}
            await send(message)
        return send_with_headers


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"error": exc.message}, status_code=exc.status)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = (exc.errors() or [{}])[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)


def create_app(settings: Optional[Settings] = None) -> FastAPI:
    """The web app for ``settings`` (its own job pool and temporary folder).

    The pool's janitor starts with the app (lifespan start-up); at shut-down every
    running job is terminated and every job folder removed.

    Examples
    --------
    >>> app = create_app(Settings(temp_root=Path("/tmp")))  # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    settings = settings or Settings()
    pool = JobPool(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        pool.start()
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(title="harmonizer", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings, app.state.pool = settings, pool
    app.include_router(api)
    app.include_router(page)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(Guard, loopback_only=settings.loopback_only)
    return app
