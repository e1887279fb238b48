"""Whether the output can be written: a probe before the expensive work, and the one mapping of a
failed write (permission denied, read-only or full file system; raised in Python, or in the JVM
and seen through Py4J) to OutputError, the documented exit code."""

from __future__ import annotations

import errno
import os
import posixpath
import re
import uuid
from urllib.parse import urlparse

from pyspark.sql import SparkSession

from recsys_spark.errors import OutputError
from recsys_spark.storage import fs

PROBE_PREFIX = ".write-probe-"  # a killed run can leave one; cleanup.remove_leftovers removes it
_FULL_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}
_DENIED_ERRNOS = {errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
                  errno.EROFS: "read-only file system"}
# What the JVM says for the same failures (java.io, java.nio.file, Hadoop's local and HDFS clients).
_FULL_TEXTS = {"No space left on device": "no space left on device", "Disk quota exceeded": "disk quota exceeded",
               "DSQuotaExceededException": "disk quota exceeded"}
_DENIED_TEXTS = {"Read-only file system": "read-only file system", "AccessDeniedException": "permission denied",
                 "AccessControlException": "permission denied", "Permission denied": "permission denied",
                 "Operation not permitted": "operation not permitted",
                 "Mkdirs failed to create": "cannot create a directory"}
# Where a Java message names the path it failed on.
_JAVA_PATHS = (re.compile(r"Mkdirs failed to create (\S+)"), re.compile(r"AccessDeniedException: (\S+)"),
               re.compile(r'inode="([^"]+)"'), re.compile(r"writing rows to (\S+?)\.?(?:\s|$)"),
               re.compile(r"(\S+) \((?:Permission denied|Read-only file system|Operation not permitted)\)"))


def check_writable(spark: SparkSession, directory: str) -> None:
    """Create `directory` if needed and a file in it, then remove the file; OutputError if refused."""
    probe = f"{directory.rstrip('/')}/{PROBE_PREFIX}{uuid.uuid4().hex[:12]}"
    try:
        fs.mkdirs(spark, directory)
        fs.write_text(spark, probe, "recsys-spark write probe\n")
        fs.delete(spark, probe)
    except OutputError:
        raise
    except Exception as exc:
        error = output_error(exc, [directory])
        if error is None:
            raise
        raise error from None


def output_error(exc: BaseException, targets: list[str]) -> OutputError | None:
    """The OutputError for `exc` when it is a failed write: a full disk or quota anywhere, or
    permission denied / read-only file system on a path under one of `targets` (the output, the
    report directory, ...); None for anything else (a denied read of the input stays what it is)."""
    if isinstance(exc, OutputError):
        return exc
    found = _classify(exc)
    if found is None:
        return None
    full, reason, path = found
    if not full and path is not None and not any(_under(path, target) for target in targets):
        return None
    where = path or (targets[0] if targets else "the output")
    if full:
        return OutputError(f"cannot write {where}: {reason} (on the output or in Spark's scratch space, "
                           "spark.local.dir); free space or write elsewhere")
    return OutputError(f"cannot write {where}: {reason}; make it writable or write elsewhere (--output)")


def _classify(exc: BaseException) -> tuple[bool, str, str | None] | None:
    """(is the disk full, reason, path or None) for a failed write, else None."""
    if isinstance(exc, OSError) and exc.errno in {**_FULL_ERRNOS, **_DENIED_ERRNOS}:
        full = exc.errno in _FULL_ERRNOS
        return full, {**_FULL_ERRNOS, **_DENIED_ERRNOS}[exc.errno], str(exc.filename) if exc.filename else None
    text = _java_text(exc)
    if text is None:
        return None
    path = next((m.group(1) for pattern in _JAVA_PATHS for m in [pattern.search(text)] if m), None)
    for texts, full in ((_FULL_TEXTS, True), (_DENIED_TEXTS, False)):
        for marker, reason in texts.items():
            if marker in text:
                return full, reason, path
    return None


def _java_text(exc: BaseException) -> str | None:
    """Class names and messages of a Py4J error's Java exception and its causes; None if not one."""
    java = getattr(exc, "java_exception", None)
    if java is None:
        return None
    parts = []
    try:
        while java is not None and len(parts) < 40:
            parts.append(f"{java.getClass().getName()}: {java.getMessage()}")
            java = java.getCause()
    except Exception:  # the JVM is gone: what Py4J printed is all there is
        parts.append(str(exc))
    return "\n".join(parts)


def _under(path: str, root: str) -> bool:
    return _normal(path) == _normal(root) or _normal(path).startswith(_normal(root).rstrip("/") + "/")


def _normal(path: str) -> str:
    """The path part of a local path or URI, absolute and normalised (file:/a/../b -> /b)."""
    parsed = urlparse(path)
    part = parsed.path if parsed.scheme else os.path.abspath(path)
    return posixpath.normpath(part)
