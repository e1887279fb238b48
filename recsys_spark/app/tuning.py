"""Nightly tuning (tune.nightly): reuse the tuned parameters the newest published manifest records,
or tune model.kind by successive halving on the day's prepared data and record the winner."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from pyspark.sql import SparkSession

from recsys_spark.app.steps import item_features
from recsys_spark.config import Config
from recsys_spark.data.prepare import PreparedData
from recsys_spark.errors import SplitError
from recsys_spark.evaluation.tune import tune
from recsys_spark.evaluation.tuned import applied, halving_config, reused_record, stale_reason, tuned_record
from recsys_spark.models.registry import with_resolved_kind
from recsys_spark.storage.layout import DateLayout
from recsys_spark.storage.published import published_dates, published_manifest

log = logging.getLogger(__name__)


def latest_tuned(spark: SparkSession, cfg: Config, layout: DateLayout) -> dict | None:
    """The `tuned` record of model.kind in the newest published manifest dated within
    tune.max_age_days on or before the run date (an older date cannot hold younger parameters)."""
    oldest = (dt.date.fromisoformat(layout.run_date) - dt.timedelta(days=cfg.tune.max_age_days)).isoformat()
    for date in reversed(published_dates(spark, layout.root)):
        if not oldest < date <= layout.run_date:
            continue
        record = (published_manifest(spark, DateLayout(layout.root, date)) or {}).get("tuned") or {}
        if record.get("model_kind") == cfg.model.kind and "params" in record:
            return record
    return None


def nightly_tuned(spark: SparkSession, cfg: Config, prepared: PreparedData, layout: DateLayout,
                  run_id: str) -> tuple[Config, dict]:
    """(the config to train with, the manifest's `tuned` record): fresh parameters reused, stale
    ones tuned again within tune.budget_seconds; data too small to split trains untuned."""
    cfg = with_resolved_kind(cfg, prepared.n_items)
    record = latest_tuned(spark, cfg, layout)
    reason = stale_reason(record, cfg, layout.run_date)
    if reason is None:
        log.info("tune: reusing the parameters tuned on %s: %s", record["tuned_on"], record["params"])
        return applied(cfg, record), reused_record(record, layout.run_date)
    log.info("tune: %s; tuning model.kind=%s within %.0f s", reason, cfg.model.kind, cfg.tune.budget_seconds)
    try:
        result = tune(prepared, halving_config(cfg), item_features(spark, cfg), within_train=False)
    except SplitError as exc:
        log.warning("tune: skipped, training with the configured parameters: %s", exc)
        return cfg, {"model_kind": cfg.model.kind, "tuned_now": False, "skipped": str(exc)}
    # The winner's config, with this run's tune section (the search ran with method=halving).
    return (dataclasses.replace(result.best_config, tune=cfg.tune),
            {**tuned_record(result, cfg, layout.run_date, run_id), "reason": reason})
