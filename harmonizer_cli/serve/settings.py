"""The web app's settings: one frozen dataclass, built by ``harmonizer serve`` or by a test.

``Settings`` holds everything ``create_app`` needs (address, worker count, limits,
lifetimes, where job folders go); nothing is read from the environment here.
``is_loopback_host`` says whether an address only this machine can reach.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

__all__ = ["Settings", "is_loopback_host", "DEFAULT_HOST", "DEFAULT_PORT"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


@dataclass(frozen=True)
class Settings:
    """What the web app is allowed to do.

    Attributes
    ----------
    host : str
        Address the server listens on (127.0.0.1: this machine only).
    port : int
        TCP port (0: any free one).
    workers : int
        Jobs that run at once, each in its own process (``--jobs``).
    max_upload_bytes : int
        Most bytes of files one request may upload (all its files together): 413 beyond.
    queue_limit : int
        Jobs that may wait for a free worker; a job beyond it is answered 503.
    result_ttl_seconds : float
        A finished job (its result or its error) is removed this long after it finished.
    download_grace_seconds : float
        ... or this long after its result was first downloaded, whichever comes first.
    temp_root : Path or None
        Folder in which the server makes its own temporary folder (one sub-folder per
        job); None: the system's temporary folder (``TMPDIR``).
    use_model : bool
        False: extend on musical similarity alone (``--no-model``).
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = 1
    max_upload_bytes: int = 200 * 1024 * 1024
    queue_limit: int = 8
    result_ttl_seconds: float = 3600.0
    download_grace_seconds: float = 600.0
    temp_root: Optional[Path] = None
    use_model: bool = True

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")
        if self.max_upload_bytes < 1:
            raise ValueError(f"max_upload_bytes must be positive, got {self.max_upload_bytes}")
        if self.queue_limit < 0:
            raise ValueError(f"queue_limit must be 0 or more, got {self.queue_limit}")
        if not (self.result_ttl_seconds > 0 and self.download_grace_seconds > 0):
            raise ValueError("result_ttl_seconds and download_grace_seconds must be positive")

    @property
    def loopback_only(self) -> bool:
        """True when only this machine can reach the server (the default)."""
        return is_loopback_host(self.host)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``, optionally ``[::1]``-bracketed) is this machine's own.

    Examples
    --------
    >>> is_loopback_host("127.0.0.1"), is_loopback_host("[::1]"), is_loopback_host("0.0.0.0")
    (True, True, False)
    """
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
