"""Advisory locks on run and sweep folders: one process trains a run (or a sweep) at a time.

A lock is ``fcntl.flock`` on a ``.roadrisk.lock`` file in the folder, held for as long as the process
runs: the kernel drops it when the process ends however it ends (Ctrl-C, ``kill -9``, a lost
container), so a lock is never stale. That also answers "is the process that wrote this record still
alive?" without trusting a pid, which a container may reuse (pid 1 in every container). The file
holds who took it (pid, host, when) for the message a second process prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import time
from pathlib import Path

from .errors import RoadriskError

LOCK_FILE = ".roadrisk.lock"


class FolderLock:
    """A held lock; ``release`` (or the process's end) lets the next process in."""

    def __init__(self, folder: Path, handle):
        self.folder = folder
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            try:
                fcntl.flock(handle, fcntl.LOCK_UN)
            finally:
                with contextlib.suppress(OSError):  # nothing is buffered (unbuffered file): nothing to lose
                    handle.close()


def holder(folder: Path) -> str:
    """Who holds (or last held) the lock of ``folder``, in words."""
    try:
        who = json.loads((Path(folder) / LOCK_FILE).read_text())
        return f"pid {who['pid']} on {who['host']} since {who['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def take(folder: Path, what: str, wait: bool = False) -> FolderLock:
    """Lock ``folder`` for this process, or raise a one-line RoadriskError (exit 2) naming who holds it.
    ``wait``: block until the holder ends instead."""
    folder = Path(folder)
    try:
        handle = open(folder / LOCK_FILE, "a+b", buffering=0)  # unbuffered: a full disk fails the write, not close
    except OSError as exc:
        raise RoadriskError(f"error: {folder}: cannot open its lock file ({exc.strerror}). Fix: check the folder "
                            "is writable") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        handle.close()
        raise RoadriskError(f"error: {folder}: {what} is being trained by {holder(folder)}. Fix: wait for it to end "
                            "(or stop it: its finished folds are kept), or pass --wait to queue behind it") from None
    try:  # who holds it, for the next process's message: worth a try, not worth failing over (a full disk)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": platform.node(),
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}).encode())
    except OSError:
        pass
    return FolderLock(folder, handle)


def is_held(folder: Path) -> bool:
    """Whether some live process holds ``folder``'s lock right now (without taking it)."""
    path = Path(folder) / LOCK_FILE
    if not path.is_file():
        return False
    try:
        with open(path, "a+b", buffering=0) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    except OSError:
        return False
