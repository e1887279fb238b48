"""Clean up after runs: what killed or failed runs of a date left, runs no longer needed, and the dates
past retention. Every function here runs under the date's lock (storage/lock.py), after
storage/publish.repair.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Callable

from pyspark.sql import SparkSession

from recsys_spark.storage import fs
from recsys_spark.storage.layout import CURRENT, STAGING_PREFIX, TABLES, DateLayout, check_run_id, under
from recsys_spark.storage.publish import LINK_PREFIX, RETIRED_PREFIX
from recsys_spark.storage.published import published_dates
from recsys_spark.storage.writable import PROBE_PREFIX

log = logging.getLogger(__name__)


def remove_leftovers(spark: SparkSession, layout: DateLayout) -> list[str]:
    """Remove what killed or failed runs of the date left: staging directories, half-made
    `current` pointers, tables set aside, partition links being made. Call under the date's lock,
    after `repair`."""
    removed = []
    for name in fs.entries(spark, layout.runs):
        if name.startswith((STAGING_PREFIX, RETIRED_PREFIX, f"{CURRENT}.", PROBE_PREFIX)):
            fs.remove_entry(spark, under(layout.runs, name))
            removed.append(name)
    for table in TABLES:
        for name in fs.entries(spark, layout.table_root(table)):
            if name.startswith(f"{LINK_PREFIX}{layout.run_date}-"):
                fs.remove_entry(spark, under(layout.table_root(table), name))
                removed.append(f"{table}/{name}")
    if removed:
        log.info("removed leftovers of earlier runs of %s: %s", layout.run_date, ", ".join(removed))
    return removed


def clean_date(spark: SparkSession, layout: DateLayout, keep: set[str]) -> list[str]:
    """Remove leftovers and the runs of the date other than `keep` (the published run and the one
    it replaced, which queries started before the swap may still be reading)."""
    removed = remove_leftovers(spark, layout)
    for name in fs.entries(spark, layout.runs):
        if _is_run_id(name) and name not in keep:
            fs.remove_entry(spark, under(layout.runs, name))
            removed.append(name)
    return removed


def apply_retention(spark: SparkSession, root: str, retention_days: int, published_date: str,
                    before_removing: Callable[[str], None] | None = None) -> list[str]:
    """Remove the dates older than both the newest published date minus `retention_days` (0 keeps
    all) and `published_date`, the date just published: a backfill never removes a newer date.

    The table partitions go first, so readers never see a date whose run directory is half gone;
    before them, `before_removing(date)` (the catalog's partitions of the date). A date whose lock
    is held is left alone.
    """
    dates = published_dates(spark, root)
    if retention_days <= 0 or not dates:
        return []
    oldest_kept = (dt.date.fromisoformat(dates[-1]) - dt.timedelta(days=retention_days)).isoformat()
    if published_date < oldest_kept:
        log.warning("run date %s is older than retention keeps (%s and later); the next run after it removes it",
                    published_date, oldest_kept)
    removed = []
    for name in dates:
        layout = DateLayout(root, name)
        if name >= oldest_kept or name >= published_date or fs.exists(spark, layout.lock):
            continue
        if before_removing is not None:
            before_removing(name)
        for table in TABLES:
            if fs.present(spark, layout.partition(table)):
                fs.remove_entry(spark, layout.partition(table))
        fs.delete(spark, layout.runs)
        removed.append(name)
    if removed:
        log.info("retention (%d days): removed %s", retention_days, ", ".join(removed))
    return removed



def _is_run_id(name: str) -> bool:
    try:
        check_run_id(name)
    except ValueError:
        return False
    return True


