"""Publish an audited run of a date in one step, clean up, apply retention.

Two modes (publish.mode; auto picks pointer on a local/POSIX output, rename elsewhere):

- pointer: `_runs/D/current` is a symlink to the run directory, and each table partition
  `TABLE/run_date=D` is a symlink to `../_runs/D/current/TABLE`. Publishing replaces `current`
  with rename(2), which is atomic: readers resolve both tables and the manifest through it, so
  they see the old run or the new one whole, and the date never goes missing.
- rename: (HDFS and other file systems without symlinks) each table directory is renamed into
  its partition, after moving the old one back into its run directory, then `current` (a file
  holding the run id) is rewritten. Each rename is atomic on HDFS, but a table's date is absent
  between its two renames and the two tables switch one after the other. See docs/publishing.md.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os

from pyspark.sql import SparkSession

from recsys_spark.errors import ConfigError
from recsys_spark.faults import fault_point
from recsys_spark.storage import fs
from recsys_spark.storage.layout import (
    CURRENT,
    MANIFEST,
    RUNS,
    STAGING_PREFIX,
    SUCCESS,
    TABLES,
    DateLayout,
    check_run_date,
    check_run_id,
    table_path,
)

log = logging.getLogger(__name__)

RUN_ID_FILE = "_RUN_ID"


def resolve_mode(spark: SparkSession, root: str, mode: str) -> str:
    """pointer or rename for the output root (auto: pointer when the root is on a local file system)."""
    local = fs.local_path(spark, root) is not None
    if mode == "pointer" and not local:
        raise ConfigError(f"publish.mode pointer needs a local (POSIX) output; {root} is not: use rename or auto")
    return mode if mode != "auto" else ("pointer" if local else "rename")


def published_run(spark: SparkSession, layout: DateLayout) -> str | None:
    """The run id published for the date, or None."""
    local = fs.local_path(spark, layout.current)
    if local is not None and os.path.islink(local):
        return check_run_id(os.path.basename(os.readlink(local)))
    if fs.exists(spark, layout.current):
        return check_run_id(fs.read_text(spark, layout.current).strip())
    return None


def published_manifest(spark: SparkSession, layout: DateLayout) -> dict | None:
    """The manifest of the date's published run, or None."""
    run_id = published_run(spark, layout)
    if run_id is None:
        return None
    return json.loads(fs.read_text(spark, f"{layout.run(run_id)}/{MANIFEST}"))


def published_dates(spark: SparkSession, root: str) -> list[str]:
    """Run dates with a published run, oldest first."""
    dates = []
    for name in fs.list_names(spark, f"{root.rstrip('/')}/{RUNS}"):
        try:
            layout = DateLayout(root, check_run_date(name))
        except ValueError:
            continue
        if published_run(spark, layout) is not None:
            dates.append(name)
    return dates


def last_published_manifest(spark: SparkSession, root: str, on_or_before: str) -> dict | None:
    """The manifest of the newest published run dated on or before `on_or_before`."""
    for name in reversed(published_dates(spark, root)):
        if name <= on_or_before:
            return published_manifest(spark, DateLayout(root, name))
    return None


def seal(spark: SparkSession, layout: DateLayout, run_id: str, manifest: dict) -> str:
    """Write the manifest and _SUCCESS into the audited staging directory, restrict its
    permissions, and rename it to the run directory (still invisible to readers)."""
    staging = layout.staging(run_id)
    for table in TABLES:
        if fs.exists(spark, table_path(staging, table)):
            fs.write_text(spark, f"{table_path(staging, table)}/{RUN_ID_FILE}", run_id)
    fs.write_text(spark, f"{staging}/{MANIFEST}", json.dumps(manifest, indent=2, sort_keys=True, default=str))
    fs.write_text(spark, f"{staging}/{SUCCESS}", "")
    fs.restrict_permissions(spark, staging)
    fs.rename(spark, staging, layout.run(run_id))
    return layout.run(run_id)


def publish(spark: SparkSession, layout: DateLayout, run_id: str, mode: str) -> str | None:
    """Make the sealed run `run_id` the date's visible run; returns the run it replaced."""
    previous = published_run(spark, layout)
    run_dir = layout.run(run_id)
    if not fs.exists(spark, f"{run_dir}/{SUCCESS}"):
        raise RuntimeError(f"{run_dir} is not a sealed run (no {SUCCESS}); refusing to publish it")
    tables = [t for t in TABLES if fs.exists(spark, table_path(run_dir, t))]
    if mode == "pointer":
        _flip_pointer(spark, layout, run_id, tables)
    else:
        _swap_directories(spark, layout, run_id, tables)
    log.info("published run %s of %s (replacing %s)", run_id, layout.run_date, previous or "nothing")
    return previous


def _flip_pointer(spark: SparkSession, layout: DateLayout, run_id: str, tables: list[str]) -> None:
    current = fs.local_path(spark, layout.current)
    staged_link = f"{current}.{run_id}"
    if os.path.lexists(staged_link):
        os.unlink(staged_link)
    os.symlink(run_id, staged_link)
    fault_point("publish_swap")
    os.replace(staged_link, current)  # the one atomic step: both tables and the manifest switch together
    _fsync_dir(os.path.dirname(current))
    for table in TABLES:
        link = fs.local_path(spark, layout.partition(table))
        if table in tables and not os.path.lexists(link):
            os.makedirs(os.path.dirname(link), mode=0o750, exist_ok=True)
            os.symlink(os.path.join("..", RUNS, layout.run_date, CURRENT, table), link)
        elif table not in tables and os.path.lexists(link):
            os.unlink(link)


def _swap_directories(spark: SparkSession, layout: DateLayout, run_id: str, tables: list[str]) -> None:
    for table in tables:
        target = layout.partition(table)
        if fs.exists(spark, target):
            marker = f"{target}/{RUN_ID_FILE}"
            owner = fs.read_text(spark, marker).strip() if fs.exists(spark, marker) else None
            home = table_path(layout.run(owner), table) if owner else f"{layout.runs}/.retired-{run_id}-{table}"
            fs.delete(spark, home)
            fs.rename(spark, target, home)
        fs.mkdirs(spark, layout.table_root(table))
        fs.rename(spark, table_path(layout.run(run_id), table), target)
        fault_point("publish_swap")
    fs.write_text(spark, layout.current, run_id)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clean_date(spark: SparkSession, layout: DateLayout, keep: set[str]) -> list[str]:
    """Remove staging directories and runs of the date other than `keep` (the published run and
    the one it replaced, which queries started before the swap may still be reading)."""
    removed = []
    local = fs.local_path(spark, layout.runs)
    # Hadoop's local file system does not see dangling symlinks, so list and unlink those with os.
    names = sorted(os.listdir(local)) if local and os.path.isdir(local) else fs.list_names(spark, layout.runs)
    for name in names:
        run_id = name[len(STAGING_PREFIX):] if name.startswith(STAGING_PREFIX) else name
        leftover = name.startswith((".retired-", f"{CURRENT}."))
        if leftover or (_is_run_id(run_id) and (name != run_id or run_id not in keep)):
            if local is not None and os.path.islink(os.path.join(local, name)):
                os.unlink(os.path.join(local, name))
            else:
                fs.delete(spark, f"{layout.runs}/{name}")
            removed.append(name)
    return removed


def _is_run_id(name: str) -> bool:
    try:
        check_run_id(name)
    except ValueError:
        return False
    return True


def apply_retention(spark: SparkSession, root: str, retention_days: int) -> list[str]:
    """Remove the dates older than the newest published date minus `retention_days` (0 keeps all).

    The table partitions go first, so readers never see a date whose run directory is half gone.
    A date whose lock is held is left alone.
    """
    dates = published_dates(spark, root)
    if retention_days <= 0 or not dates:
        return []
    oldest_kept = (dt.date.fromisoformat(dates[-1]) - dt.timedelta(days=retention_days)).isoformat()
    removed = []
    for name in dates:
        layout = DateLayout(root, name)
        if name >= oldest_kept or fs.exists(spark, layout.lock):
            continue
        for table in TABLES:
            link = fs.local_path(spark, layout.partition(table))
            if link is not None and os.path.islink(link):
                os.unlink(link)
            else:
                fs.delete(spark, layout.partition(table))
        fs.delete(spark, layout.runs)
        removed.append(name)
    if removed:
        log.info("retention (%d days): removed %s", retention_days, ", ".join(removed))
    return removed
