"""What is published: a date's published run and manifest, the published dates, a published table.

The read side of storage/publish.py's layout (see its docstring and docs/publishing.md): `current`
names the run, a symlink locally or a file holding its id elsewhere.
"""

from __future__ import annotations

import json
import os

from pyspark.sql import DataFrame, SparkSession

from recsys_spark.storage import fs
from recsys_spark.storage.layout import MANIFEST, RUNS, DateLayout, check_run_date, check_run_id


def published_run(spark: SparkSession, layout: DateLayout) -> str | None:
    """The run id published for the date, or None."""
    local = fs.local_path(spark, layout.current)
    if local is not None:
        if os.path.islink(local):
            return check_run_id(os.path.basename(os.readlink(local)))
        if not os.path.isfile(local):
            return None
        with open(local, encoding="utf-8") as handle:
            return check_run_id(handle.read().strip())
    if fs.exists(spark, layout.current):
        return check_run_id(fs.read_text(spark, layout.current).strip())
    return None


def published_manifest(spark: SparkSession, layout: DateLayout) -> dict | None:
    """The manifest of the date's published run, or None."""
    run_id = published_run(spark, layout)
    if run_id is None:
        return None
    return json.loads(fs.read_text(spark, f"{layout.run(run_id)}/{MANIFEST}"))


def run_dates(spark: SparkSession, root: str) -> list[str]:
    """Every run date with a directory under `_runs`, oldest first."""
    dates = []
    for name in fs.list_names(spark, f"{root.rstrip('/')}/{RUNS}"):
        try:
            dates.append(check_run_date(name))
        except ValueError:
            continue
    return dates


def published_dates(spark: SparkSession, root: str) -> list[str]:
    """Run dates with a published run, oldest first."""
    return [d for d in run_dates(spark, root) if published_run(spark, DateLayout(root, d)) is not None]


def last_published_manifest(spark: SparkSession, root: str, on_or_before: str) -> dict | None:
    """The manifest of the newest published run dated on or before `on_or_before`."""
    for name in reversed(published_dates(spark, root)):
        if name <= on_or_before:
            return published_manifest(spark, DateLayout(root, name))
    return None


def previous_published_date(spark: SparkSession, root: str, before: str) -> str | None:
    """The newest published date strictly before `before`, or None."""
    earlier = [d for d in published_dates(spark, root) if d < before]
    return earlier[-1] if earlier else None


def published_manifests(spark: SparkSession, root: str) -> list[dict]:
    """The manifest of every published date, oldest first."""
    manifests = (published_manifest(spark, DateLayout(root, d)) for d in published_dates(spark, root))
    return [m for m in manifests if m is not None]


def published_table(spark: SparkSession, layout: DateLayout, table: str) -> DataFrame | None:
    """The date's published partition of `table` as SQL readers see it (a directory or a pointer
    link), or None when the date has none."""
    if not fs.present(spark, layout.partition(table)):
        return None
    return spark.read.parquet(layout.partition(table))
