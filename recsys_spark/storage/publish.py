"""Publish an audited run of a date and finish a publish that was interrupted (what is published is
read by storage/published.py; clean-up and retention are storage/cleanup.py).

Two layouts (publish.mode; auto is rename):

- rename (the default): each table partition `TABLE/run_date=D` is a real directory, the table
  directory of the published run moved there, so every reader that lists files sees it (Spark,
  DuckDB, pyarrow, Trino/Hive external tables). On a local file system each table is switched by one atomic exchange of the two directories
  (Linux renameat2 RENAME_EXCHANGE), so its date is never missing; elsewhere (HDFS) by two
  renames. The tables switch one after the other, and `current` last.
- pointer: each partition is a symlink to `../_runs/D/current/TABLE`, so one rename(2) of
  `current` switches both tables and the manifest; only readers that follow directory symlinks
  see the tables (Spark does, DuckDB does not).

`_runs/D/current` names the published run: a symlink to its directory on a local file system, a
file holding its id elsewhere. A date's layout is read from what is on disk, never assumed, so a
date published in one mode is published in the other by converting each path in place. Before the first change the run id
and mode are written to `_runs/D/.publishing`; an exception rolls back to the previous run, and
a publish killed half-way is finished by `repair`, which every command taking the date's lock
runs first. See docs/publishing.md.
"""

from __future__ import annotations

import json
import logging
import os
import secrets

from pyspark.sql import SparkSession

from recsys_spark.errors import ConfigError
from recsys_spark.faults import fault_point
from recsys_spark.storage import fs
from recsys_spark.storage.layout import (
    CURRENT,
    MANIFEST,
    RUNS,
    SUCCESS,
    TABLES,
    DateLayout,
    check_run_id,
    table_path,
    under,
)
from recsys_spark.storage.published import published_run

log = logging.getLogger(__name__)

RUN_ID_FILE = "_RUN_ID"
INTENT = ".publishing"
RETIRED_PREFIX = ".retired-"
LINK_PREFIX = ".link-"  # a partition symlink being created, inside the table root
MODES = ("auto", "rename", "pointer")


def resolve_mode(spark: SparkSession, root: str, mode: str) -> str:
    """rename or pointer for the output root (auto: rename); pointer needs a local file system."""
    if mode == "pointer" and fs.local_path(spark, root) is None:
        raise ConfigError(f"publish.mode pointer needs a local (POSIX) output; {root} is not: use rename or auto")
    return "rename" if mode == "auto" else mode


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
    """Make the sealed run `run_id` the date's visible run in `mode` (rename or pointer), whatever
    layout the date had; returns the run it replaced. On an error the previous run is put back."""
    previous = published_run(spark, layout)
    previous_mode = _layout_mode(spark, layout)
    if not fs.exists(spark, f"{layout.run(run_id)}/{SUCCESS}"):
        raise RuntimeError(f"{layout.run(run_id)} is not a sealed run (no {SUCCESS}); refusing to publish it")
    fs.write_text(spark, f"{layout.runs}/{INTENT}", json.dumps({"run_id": run_id, "mode": mode}))
    try:
        _switch(spark, layout, run_id, mode)
    except Exception:
        _roll_back(spark, layout, previous, previous_mode or mode)
        raise
    fs.delete(spark, f"{layout.runs}/{INTENT}")
    log.info("published run %s of %s (replacing %s)", run_id, layout.run_date, previous or "nothing")
    return previous


def repair(spark: SparkSession, layout: DateLayout) -> str | None:
    """Finish a publish of the date that was killed half-way (its run is sealed and audited); returns
    its run id, or None when there was nothing to finish. Call under the date's lock."""
    intent_path = f"{layout.runs}/{INTENT}"
    if not fs.exists(spark, intent_path):
        return None
    intent = json.loads(fs.read_text(spark, intent_path))
    run_id, mode = check_run_id(intent["run_id"]), intent["mode"]
    log.warning("finishing the interrupted publish of run %s of %s", run_id, layout.run_date)
    _switch(spark, layout, run_id, mode)
    fs.delete(spark, intent_path)
    return run_id


def _switch(spark: SparkSession, layout: DateLayout, run_id: str, mode: str) -> None:
    """Bring every path of the date to show `run_id` in `mode`; each step may be repeated."""
    tables = [t for t in TABLES if _table_location(spark, layout, run_id, t) is not None]
    if mode == "pointer":
        # current first: the partitions then resolve through it, or are converted to do so
        _set_current(spark, layout, run_id)
        fault_point("publish_current")
        for table in TABLES:
            if table in tables:
                _link_partition(spark, layout, table)
            else:
                _withdraw(spark, layout, table)
            fault_point("publish_swap")
    else:
        for table in TABLES:
            if table in tables:
                _move_into_partition(spark, layout, run_id, table)
            else:
                _withdraw(spark, layout, table)
            fault_point("publish_swap")
        fault_point("publish_current")
        _set_current(spark, layout, run_id)


def _roll_back(spark: SparkSession, layout: DateLayout, previous: str | None, mode: str) -> None:
    try:
        if previous is None:
            for table in TABLES:
                _withdraw(spark, layout, table)
            fs.delete(spark, layout.current)
        else:
            _switch(spark, layout, previous, mode)
        fs.delete(spark, f"{layout.runs}/{INTENT}")
    except Exception:  # the intent stays: the next command on the date finishes the publish
        log.exception("could not put run %s of %s back; the next run of the date will finish the publish",
                      previous, layout.run_date)


def _layout_mode(spark: SparkSession, layout: DateLayout) -> str | None:
    """pointer when the date's partitions are symlinks, rename when they are directories."""
    for table in TABLES:
        if fs.is_link(spark, layout.partition(table)):
            return "pointer"
        if fs.present(spark, layout.partition(table)):
            return "rename"
    return None


def _table_location(spark: SparkSession, layout: DateLayout, run_id: str, table: str) -> str | None:
    """Where the table of `run_id` is now: its run directory, its partition, or nowhere."""
    home = table_path(layout.run(run_id), table)
    if fs.exists(spark, home) and not fs.is_link(spark, home):
        return home
    partition = layout.partition(table)
    if not fs.is_link(spark, partition) and _owner(spark, partition) == run_id:
        return partition
    return None


def _owner(spark: SparkSession, table_dir: str) -> str | None:
    """The run that wrote the table directory (its _RUN_ID), following links; None if absent."""
    marker = f"{table_dir}/{RUN_ID_FILE}"
    local = fs.local_path(spark, marker)
    if local is not None:
        if not os.path.isfile(local):
            return None
        with open(local, encoding="utf-8") as handle:
            return handle.read().strip()
    return fs.read_text(spark, marker).strip() if fs.exists(spark, marker) else None


def _move_into_partition(spark: SparkSession, layout: DateLayout, run_id: str, table: str) -> None:
    partition, source = layout.partition(table), table_path(layout.run(run_id), table)
    if not fs.is_link(spark, partition) and _owner(spark, partition) == run_id:
        return
    fs.mkdirs(spark, layout.table_root(table))
    if not fs.present(spark, partition):
        fs.rename(spark, source, partition)
        return
    owner = None if fs.is_link(spark, partition) else _owner(spark, partition)
    local_source, local_partition = fs.local_path(spark, source), fs.local_path(spark, partition)
    if local_source is not None and fs.exchange(local_source, local_partition):
        # source now holds what the partition held: the old run's directory, or a pointer-mode link
        _put_away(spark, layout, source, owner, table)
        return
    # No atomic exchange here (HDFS, or not Linux): the date is missing between the two renames.
    aside = under(layout.runs, f"{RETIRED_PREFIX}{secrets.token_hex(4)}-{table}")
    if fs.is_link(spark, partition):
        os.unlink(local_partition)
    else:
        fs.rename(spark, partition, aside)
    fs.rename(spark, source, partition)
    _put_away(spark, layout, aside, owner, table)


def _link_partition(spark: SparkSession, layout: DateLayout, table: str) -> None:
    partition = fs.local_path(spark, layout.partition(table))
    target = os.path.join("..", RUNS, layout.run_date, CURRENT, table)
    if os.path.islink(partition) and os.readlink(partition) == target:
        return
    os.makedirs(os.path.dirname(partition), mode=0o750, exist_ok=True)
    link = os.path.join(os.path.dirname(partition), f"{LINK_PREFIX}{layout.run_date}-{secrets.token_hex(4)}")
    os.symlink(target, link)
    if not os.path.lexists(partition):
        os.replace(link, partition)
        return
    owner = None if os.path.islink(partition) else _owner(spark, layout.partition(table))
    if not fs.exchange(link, partition):
        if os.path.islink(partition):
            os.replace(link, partition)
            return
        aside = fs.local_path(spark, under(layout.runs, f"{RETIRED_PREFIX}{secrets.token_hex(4)}-{table}"))
        os.rename(partition, aside)
        os.replace(link, partition)
        link = aside
    _put_away(spark, layout, f"file:{link}", owner, table)


def _withdraw(spark: SparkSession, layout: DateLayout, table: str) -> None:
    """The run has no such table: take the date's partition away (back into its run, if any)."""
    partition = layout.partition(table)
    if fs.present(spark, partition):
        owner = None if fs.is_link(spark, partition) else _owner(spark, partition)
        _put_away(spark, layout, partition, owner, table)


def _put_away(spark: SparkSession, layout: DateLayout, path: str, owner: str | None, table: str) -> None:
    """Remove a link, or move a table directory back into the run that wrote it (or delete it)."""
    if fs.is_link(spark, path):
        os.unlink(fs.local_path(spark, path))
        return
    home = table_path(layout.run(owner), table) if owner and fs.exists(spark, layout.run(owner)) else None
    if home is None:
        fs.delete(spark, path)
        return
    fs.delete(spark, home)
    fs.rename(spark, path, home)


def _set_current(spark: SparkSession, layout: DateLayout, run_id: str) -> None:
    """`current` names the run: a symlink to its directory locally (so `current/manifest.json`
    works), a file holding its id elsewhere."""
    current = fs.local_path(spark, layout.current)
    if current is None:
        fs.write_text(spark, layout.current, run_id)
        return
    staged = f"{current}.{run_id}"
    if os.path.lexists(staged):
        os.unlink(staged)
    os.symlink(run_id, staged)
    os.replace(staged, current)  # atomic, whether current was a file (an older layout), a symlink or absent
    _fsync_dir(os.path.dirname(current))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


