"""The web app's job pool: bounded workers, one child process per job, folders that expire.

``JobPool`` keeps the jobs in a dict by id (random uuid4 hex; ids are looked up,
never joined into paths). Each job has its own folder under the pool's temporary
folder. ``settings.workers`` threads (a ``ThreadPoolExecutor``) each run one job at
a time in a child process (``worker.run_in_child``, forkserver: the process can be
terminated, which is how a job is cancelled), reading its progress from a pipe.
At most ``settings.queue_limit`` jobs wait for a worker (``submit`` raises a 503
beyond). A janitor thread removes finished jobs after their lifetime or after the
grace period that follows the first download; ``close`` terminates running jobs
and removes every folder.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harmonizer_cli.serve import worker
from harmonizer_cli.serve.settings import Settings
from harmonizer_cli.serve.upload import ApiError

__all__ = ["JobPool", "ServeJob", "QUEUED", "RUNNING", "DONE", "FAILED"]

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"

#: Modules the forkserver imports once, so each job's process starts with them loaded.
_PRELOAD = ["harmonizer_cli.serve.worker", "harmonizer_cli.core.extend", "harmonizer_cli.core.model"]
_ROOT_PREFIX = "harmonizer-serve-"
_JOB_ID = re.compile(r"[0-9a-f]{32}")


@dataclass
class ServeJob:
    """One job's state (changed under the pool's lock).

    Attributes
    ----------
    id : str
        uuid4 hex.
    folder : Path
        The job's own folder (``<pool root>/<id>``).
    spec : worker.JobSpec
    status : str
        ``queued``, ``running``, ``done`` or ``failed``.
    progress : float
        0 to 1, from the job's ``on_progress``.
    error : str or None
        The one-line message of a failed job.
    result, waveform : dict or None
        The ``--json`` record and the peak envelope of a done job.
    """

    id: str
    folder: Path
    spec: worker.JobSpec
    created: float = field(default_factory=time.monotonic)
    status: str = QUEUED
    progress: float = 0.0
    error: Optional[str] = None
    result: Optional[dict] = None
    waveform: Optional[dict] = None
    finished_at: Optional[float] = None
    downloaded_at: Optional[float] = None
    cancelled: bool = False
    process: Any = None

    @property
    def result_path(self) -> Path:
        return self.spec.output


def _remove_stale_roots(parent: Path) -> None:
    """Remove the folders of earlier servers of this user that were killed before cleaning up."""
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for entry in entries:
        match = re.fullmatch(_ROOT_PREFIX + r"(\d+)-\w+", entry.name)
        if not match or not entry.is_dir() or entry.is_symlink():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except (OSError, AttributeError):
            continue


class JobPool:
    """Jobs of one web app: submit, look up, download, delete, expire, close.

    Parameters
    ----------
    settings : Settings
        ``workers``, ``queue_limit``, ``result_ttl_seconds``, ``download_grace_seconds``,
        ``temp_root`` and ``use_model`` are used.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        parent = Path(settings.temp_root) if settings.temp_root is not None else Path(tempfile.gettempdir())
        _remove_stale_roots(parent)
        self.root = Path(tempfile.mkdtemp(prefix=f"{_ROOT_PREFIX}{os.getpid()}-", dir=parent))
        self._jobs: dict[str, ServeJob] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._stop = threading.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=settings.workers,
                                                               thread_name_prefix="harmonizer-job")
        self._context = multiprocessing.get_context("spawn" if sys.platform == "darwin" else "forkserver")
        if self._context.get_start_method() == "forkserver":
            self._context.set_forkserver_preload(_PRELOAD)
        self._janitor = threading.Thread(target=self._janitor_loop, name="harmonizer-janitor", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the janitor, and the job processes' forkserver in the background (the first job's wait)."""
        if not self._janitor.is_alive() and not self._closed:
            self._janitor.start()
            threading.Thread(target=self._warm_up, name="harmonizer-warm-up", daemon=True).start()

    def _warm_up(self) -> None:
        process = self._context.Process(target=worker.warm_up, daemon=True, name="harmonizer-warm-up")
        process.start()
        process.join()

    def close(self) -> None:
        """Cancel every job (running ones are terminated), stop the threads, remove every folder.

        Safe to call more than once, and from any thread.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            jobs = list(self._jobs.values())
            self._jobs.clear()
            for job in jobs:
                self._cancel_locked(job)
        self._stop.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
        for job in jobs:
            if job.process is not None and job.process.pid is not None:
                job.process.join(timeout=5)
                if job.process.is_alive():
                    job.process.kill()
                    job.process.join(timeout=5)
        self._executor.shutdown(wait=True)
        if self._janitor.is_alive():
            self._janitor.join(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ jobs

    def new_folder(self) -> tuple[str, Path]:
        """A fresh job id and its empty folder (private to this user).

        Raises
        ------
        ApiError
            503: the server is shutting down, or the queue is full (checked again at ``submit``).
        """
        with self._lock:
            self._check_capacity_locked()
        job_id = uuid.uuid4().hex
        folder = self.root / job_id
        folder.mkdir(mode=0o700)
        return job_id, folder

    def _check_capacity_locked(self) -> None:
        if self._closed:
            raise ApiError(503, "the server is shutting down")
        active = sum(job.status in (QUEUED, RUNNING) for job in self._jobs.values())
        if active >= self.settings.workers + self.settings.queue_limit:
            raise ApiError(503, f"the server is busy ({self.settings.queue_limit} jobs are waiting already); "
                                "try again in a moment")

    def submit(self, job_id: str, folder: Path, spec: worker.JobSpec) -> ServeJob:
        """Queue a job whose files are in ``folder``.

        Raises
        ------
        ApiError
            503: the queue is full or the server is shutting down.
        """
        job = ServeJob(id=job_id, folder=folder, spec=spec)
        with self._lock:
            self._check_capacity_locked()
            self._jobs[job_id] = job
            self._executor.submit(self._run, job)
        return job

    def get(self, job_id: str) -> Optional[ServeJob]:
        """The job with this id, or None (unknown, malformed, deleted or expired)."""
        if not _JOB_ID.fullmatch(job_id):
            return None
        with self._lock:
            return self._jobs.get(job_id)

    def describe(self, job: ServeJob) -> dict:
        """The job's state as the API shows it (see README, ``GET /api/jobs/{id}``)."""
        with self._lock:
            ahead = None
            if job.status == QUEUED:
                ahead = sum(other.status == QUEUED and other.created < job.created for other in self._jobs.values())
            done = job.status == DONE
            return {
                "id": job.id, "status": job.status, "progress": round(job.progress, 3), "error": job.error,
                "result": job.result, "input_name": job.spec.input_name,
                "queue_position": None if ahead is None else ahead + 1,
                "result_url": f"/api/jobs/{job.id}/result" if done else None,
                "waveform_url": f"/api/jobs/{job.id}/waveform" if done else None,
                "download_name": job.spec.download_name if done else None,
                "expires_in_seconds": self._expires_in_locked(job, time.monotonic()),
            }

    def counts(self) -> dict:
        """Jobs by status."""
        with self._lock:
            statuses = [job.status for job in self._jobs.values()]
        return {status: statuses.count(status) for status in (QUEUED, RUNNING, DONE, FAILED)}

    def mark_downloaded(self, job: ServeJob) -> None:
        """Start the grace period after which a downloaded result is removed (the first download only)."""
        with self._lock:
            if job.downloaded_at is None:
                job.downloaded_at = time.monotonic()

    def delete(self, job_id: str) -> bool:
        """Forget a job and remove its folder; a running job is terminated first. False: no such job."""
        job = self.get(job_id)
        if job is None:
            return False
        with self._lock:
            if self._jobs.pop(job_id, None) is None:
                return False
            running = self._cancel_locked(job)
        if not running:  # a running job's thread removes the folder once the process has exited
            shutil.rmtree(job.folder, ignore_errors=True)
        return True

    def _cancel_locked(self, job: ServeJob) -> bool:
        """Mark cancelled and terminate its process if it runs. True: its thread will remove the folder."""
        job.cancelled = True
        if job.status != RUNNING:
            return False
        if job.process is not None and job.process.pid is not None and job.process.exitcode is None:
            job.process.terminate()
        return True

    # ------------------------------------------------------------------ running

    def _run(self, job: ServeJob) -> None:
        """A worker thread: run ``job`` in a child process, follow its pipe, record the outcome."""
        receiver, sender = self._context.Pipe(duplex=False)
        process = self._context.Process(target=worker.run_in_child, args=(job.spec, sender), daemon=True,
                                        name=f"harmonizer-job-{job.id[:8]}")
        with self._lock:
            if job.cancelled or self._closed:
                receiver.close()
                sender.close()
                return
            job.status, job.process = RUNNING, process
        outcome = None
        try:
            process.start()
            with self._lock:
                if job.cancelled:
                    process.terminate()
            sender.close()  # the child holds its own end now: EOF when it exits
            while True:
                try:
                    message = receiver.recv()
                except (EOFError, OSError):
                    break
                if message[0] == "progress":
                    job.progress = float(message[1])
                else:
                    outcome = message
        finally:
            receiver.close()
            sender.close()
            if process.pid is not None:
                process.join()
            self._finish(job, outcome, process.exitcode)

    def _finish(self, job: ServeJob, outcome: Optional[tuple], exitcode: Optional[int]) -> None:
        with self._lock:
            job.finished_at = time.monotonic()
            if job.cancelled:
                shutil.rmtree(job.folder, ignore_errors=True)
                return
            if outcome is not None and outcome[0] == "done":
                job.status, job.progress, job.result, job.waveform = DONE, 1.0, outcome[1], outcome[2]
                for path in job.folder.iterdir():  # the inputs are not needed any more
                    if path != job.result_path:
                        path.unlink(missing_ok=True)
                return
            job.status = FAILED
            job.error = outcome[1] if outcome is not None else (
                f"{job.spec.input_name}: the job's process stopped unexpectedly (exit code {exitcode}); "
                "see the server's log")
            shutil.rmtree(job.folder, ignore_errors=True)

    # ------------------------------------------------------------------ expiry

    def _deadline_locked(self, job: ServeJob) -> Optional[float]:
        """When a finished job is removed (``time.monotonic()``); None while it is queued or running."""
        if job.finished_at is None:
            return None
        deadline = job.finished_at + self.settings.result_ttl_seconds
        if job.downloaded_at is not None:
            deadline = min(deadline, job.downloaded_at + self.settings.download_grace_seconds)
        return deadline

    def _expires_in_locked(self, job: ServeJob, now: float) -> Optional[float]:
        deadline = self._deadline_locked(job)
        return None if deadline is None else round(max(0.0, deadline - now), 1)

    def expire(self) -> int:
        """Remove the finished jobs whose time is up. Returns how many were removed."""
        now = time.monotonic()
        with self._lock:
            gone = [job for job in self._jobs.values()
                    if (deadline := self._deadline_locked(job)) is not None and now >= deadline]
            for job in gone:
                del self._jobs[job.id]
        for job in gone:
            shutil.rmtree(job.folder, ignore_errors=True)
        return len(gone)

    def _janitor_loop(self) -> None:
        interval = max(0.05, min(10.0, self.settings.result_ttl_seconds / 4, self.settings.download_grace_seconds / 4))
        while not self._stop.wait(interval):
            self.expire()
