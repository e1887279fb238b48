"""One run per run date: an exclusive lock file, refreshed while the run lives, reclaimed when stale.

The lock is `OUTPUT/_runs/DATE/.lock`, created atomically (O_EXCL locally, create-without-overwrite
on HDFS) and holding who took it. A background thread touches it every few seconds; a lock whose
file was not touched for `publish.lock_stale_seconds`, or whose process on this host is gone, is
stale: it is renamed aside (only one reclaimer can win that rename) and taken afresh.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

from pyspark.sql import SparkSession

from recsys_spark.errors import LockedError
from recsys_spark.storage import fs

log = logging.getLogger(__name__)


class DateLock:
    """Context manager holding the lock at `path` for `run_id`."""

    def __init__(self, spark: SparkSession, path: str, run_id: str, stale_seconds: int):
        self.spark, self.path, self.run_id, self.stale_seconds = spark, path, run_id, stale_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "DateLock":
        owner = json.dumps({"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
                            "started": time.time()})
        if not fs.create_exclusive(self.spark, self.path, owner):
            self._reclaim_if_stale()
            if not fs.create_exclusive(self.spark, self.path, owner):
                raise LockedError(f"another run holds {self.path}; wait for it to finish "
                                  f"(a lock is reclaimed once stale for {self.stale_seconds}s)")
        interval = max(1.0, min(30.0, self.stale_seconds / 4))
        self._thread = threading.Thread(target=self._heartbeat, args=(interval,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        fs.delete(self.spark, self.path)

    def _heartbeat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                fs.touch(self.spark, self.path)
            except Exception:  # a missed beat only makes the lock look older
                log.warning("could not refresh %s", self.path, exc_info=True)

    def _reclaim_if_stale(self) -> None:
        reason = self._stale_reason()
        if reason is None:
            return
        aside = f"{self.path}.stale-{self.run_id}"
        try:
            fs.rename(self.spark, self.path, aside)
        except OSError:
            return  # someone else reclaimed it first
        fs.delete(self.spark, aside)
        log.warning("reclaimed the stale lock %s (%s)", self.path, reason)

    def _stale_reason(self) -> str | None:
        modified = fs.modified_seconds(self.spark, self.path)
        if modified is None:
            return "gone"
        if time.time() - modified > self.stale_seconds:
            return f"not refreshed for {time.time() - modified:.0f}s"
        try:
            owner = json.loads(fs.read_text(self.spark, self.path))
        except Exception:  # being written or removed right now: not stale
            return None
        if owner.get("host") == socket.gethostname() and not _alive(int(owner.get("pid", -1))):
            return f"process {owner.get('pid')} on this host is gone"
        return None


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
