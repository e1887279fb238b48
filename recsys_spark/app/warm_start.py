"""Which model the nightly training starts from (model.warm_start): the last model published for an
earlier date, when it is of the same kind and latent dimension; otherwise a cold start, and why."""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession

from recsys_spark.config import WARM_START_KINDS, Config
from recsys_spark.models.warm_start import WarmStart, unusable_reason
from recsys_spark.storage.layout import DateLayout
from recsys_spark.storage.stores import earlier_model, earlier_published_model

log = logging.getLogger(__name__)


def warm_start_plan(spark: SparkSession, cfg: Config, layout: DateLayout) -> WarmStart:
    """off: cold. auto and on: the earlier published model when it fits, else cold; `on` says so
    with a WARNING (auto at INFO), since it was asked for."""
    mode, kind, rank = cfg.model.warm_start, cfg.model.kind, cfg.model.rank
    if mode == "off":
        return WarmStart(mode, reason="model.warm_start is off")
    if kind not in WARM_START_KINDS:
        return _cold(mode, f"model.kind {kind} has no warm start")
    found = earlier_published_model(spark, layout.root, layout.run_date)
    if found is None:
        return _cold(mode, f"no model published before {layout.run_date}")
    model = earlier_model(spark, found["path"])  # its metadata; the trainer reads its rows or tables
    source = {**found, "kind": model.kind, "latent_dim": model.info.latent_dim,
              "created_at": model.metadata.get("created_at")}
    reason = unusable_reason(model.metadata, kind, rank)
    if reason is not None:
        return _cold(mode, f"the model of {found['run_date']} (run {found['run_id']}) does not fit: {reason}", source)
    log.info("warm start: %s from the model of %s (run %s)", kind, found["run_date"], found["run_id"])
    return WarmStart(mode, model, source)


def _cold(mode: str, reason: str, source: dict | None = None) -> WarmStart:
    log.log(logging.WARNING if mode == "on" else logging.INFO, "warm start: cold start, %s", reason)
    return WarmStart(mode, source=source, reason=reason)
