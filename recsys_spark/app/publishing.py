"""Audit, gate and publish a staged run, under the date's lock: the audit's counts and churn, the
manifest, the quality and churn gates, the seal, the switch (storage/publish.py), the catalog's
partitions and the clean-up. `run` and `publish` both end here (docs/publishing.md).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from recsys_spark.app.steps import RunSummary, table_rows, timed
from recsys_spark.config import Config
from recsys_spark.data.prepare import PreparedData
from recsys_spark.data.schema import ITEM_ID, ITEM_INDEX, ITEM_SIMILAR, RUNS_TABLE, USER_ID, USER_INDEX, USER_RECS
from recsys_spark.evaluation.stability import item_similar_stability, user_recs_stability
from recsys_spark.faults import fault_point
from recsys_spark.models.factor_model import FactorModel
from recsys_spark.serving.rules import Rules, item_pools, served_users
from recsys_spark.storage import audit, catalog, fs
from recsys_spark.storage.cleanup import apply_retention, clean_date, remove_leftovers
from recsys_spark.storage.layout import TABLES, DateLayout, table_path
from recsys_spark.storage.lock import DateLock
from recsys_spark.storage.manifest import base_manifest
from recsys_spark.storage.publish import publish, repair, resolve_mode, seal
from recsys_spark.storage.published import (
    last_published_manifest,
    previous_published_date,
    published_run,
    published_table,
)


@contextmanager
def date_lock(spark: SparkSession, cfg: Config, layout: DateLayout, run_id: str):
    """Hold the date's lock; first finish a publish that was killed half-way and remove what
    killed or failed runs of the date left behind; yields what was finished and removed."""
    with DateLock(spark, layout.lock, run_id, cfg.publish.lock_stale_seconds):
        finished = repair(spark, layout)
        removed = remove_leftovers(spark, layout)
        sync_catalog(spark, cfg, layout)
        yield {"finished": finished, "removed": removed}


def sync_catalog(spark: SparkSession, cfg: Config, layout: DateLayout) -> None:
    """With output.database set: the date's catalog partitions made to match its published run (what a
    publish killed between its switch and its catalog step, or a metastore that failed then, left
    undone). Idempotent; every command taking the date's lock runs it after `repair`."""
    tables = catalog.CatalogTables.of(cfg.output)
    if tables is None:
        return
    published = [] if published_run(spark, layout) is None else \
        [table for table in TABLES if fs.exists(spark, layout.partition(table))]
    catalog.publish_partitions(spark, tables, layout, published)


def staged_tables(spark: SparkSession, run_dir: str) -> dict:
    """user_recs and item_similar as staged in `run_dir`, each read once for the audit and the
    stability (a table not staged is left out)."""
    return {table: spark.read.parquet(table_path(run_dir, table)) for table in (USER_RECS, ITEM_SIMILAR)
            if fs.exists(spark, table_path(run_dir, table))}


def audit_run(cfg: Config, staged: dict, prepared: PreparedData, model: FactorModel, rules: Rules) -> dict:
    """Audit the staged tables (staged_tables) against the prepared data, the model and the rules;
    raises AuditError."""
    results = {}
    items = item_pools(rules, prepared.item_ids, model.item_factors).persist()
    restricted = rules.include_items is not None or rules.exclude_items is not None
    if USER_RECS in staged:
        results[USER_RECS] = audit_user_recs(staged[USER_RECS], cfg, prepared, model, rules, items)
    if ITEM_SIMILAR in staged:
        neighbours = None
        if restricted:
            neighbours = (items.filter("allowed")
                          .join(model.item_factors.select(ITEM_INDEX, ITEM_ID), ITEM_INDEX).select(ITEM_ID))
        results[ITEM_SIMILAR] = audit.audit_similar(staged[ITEM_SIMILAR], model.item_factors.select(ITEM_ID),
                                                    cfg.similar.top_k, neighbours)
    items.unpersist()
    audit.require_clean(results)
    return results


def audit_user_recs(recs: DataFrame, cfg: Config, prepared: PreparedData, model: FactorModel, rules: Rules,
                    items: DataFrame) -> dict:
    """Audit counts of user_recs; items: rules.item_pools of the catalog."""
    seen = prepared.interactions.select(USER_INDEX, ITEM_INDEX)
    blocked = seen
    if rules.exclude_user_items is not None:
        blocked = seen.unionByName(rules.exclude_user_items.select(USER_INDEX, ITEM_INDEX)).distinct()
    expected = audit.expected_list_lengths(served_users(rules, model.user_factors), items, blocked, cfg.score.top_n)

    def with_ids(pairs: DataFrame) -> DataFrame:
        return pairs.join(prepared.user_ids, USER_INDEX).join(prepared.item_ids, ITEM_INDEX).select(USER_ID, ITEM_ID)

    restricted = rules.include_items is not None or rules.exclude_items is not None
    allowed = items.filter("model_pool OR fallback_pool").join(prepared.item_ids, ITEM_INDEX).select(ITEM_ID)
    return audit.audit_recs(recs, expected, with_ids(seen),
                            excluded=None if rules.exclude_user_items is None else with_ids(rules.exclude_user_items),
                            allowed_items=allowed if restricted else None)


def run_stability(spark: SparkSession, cfg: Config, layout: DateLayout, staged: dict) -> dict:
    """How much the staged tables (staged_tables) changed against the previous published date (the
    newest strictly before this run's): evaluation/stability.py per table, or why not."""
    previous = previous_published_date(spark, layout.root, layout.run_date)
    if previous is None:
        return {"compared_with": None, "reason": f"no date published before {layout.run_date}"}
    earlier = DateLayout(layout.root, previous)
    record = {"compared_with": previous, "compared_with_run": published_run(spark, earlier),
              "top_n": cfg.score.top_n, "top_k": cfg.similar.top_k}
    for table, measure, n in ((USER_RECS, user_recs_stability, cfg.score.top_n),
                              (ITEM_SIMILAR, item_similar_stability, cfg.similar.top_k)):
        old = published_table(spark, earlier, table)
        if table not in staged or old is None:
            record[table] = None  # this run or the earlier date has no such table
            continue
        record[table] = measure(staged[table], old, n)
    return record


@dataclass
class Scored:
    """What scored a run's tables, and what the audit checks them against."""
    prepared: PreparedData
    model: FactorModel
    rules: Rules


def audit_and_publish(spark: SparkSession, cfg: Config, layout: DateLayout, run_id: str, scored: Scored,
                      summary: RunSummary, **manifest_extra) -> dict:
    """Audit the run staged under layout.staging(run_id), write its manifest, pass the quality gate,
    seal and publish it in one step, clean the date and apply retention; returns the manifest.

    Called under the date's lock, by `run` and by `publish` alike.
    """
    staging = layout.staging(run_id)
    with timed("audit", summary.timings) as stage:
        staged = staged_tables(spark, staging)
        results = audit_run(cfg, staged, scored.prepared, scored.model, scored.rules)
        stability = run_stability(spark, cfg, layout, staged)
        stage.rows = table_rows({t: r["_total_rows"] for t, r in results.items()}) + " passed"
    summary.counts.update({t: r["_total_rows"] for t, r in results.items()})
    manifest = base_manifest(cfg, layout, run_id, scored.prepared.stats, scored.model, scored.rules, results)
    manifest.update(row_counts=summary.counts, audit=results, stability=stability, timings=summary.timings,
                    **manifest_extra)
    tables = catalog.CatalogTables.of(cfg.output)
    if tables is not None:
        manifest["catalog"] = tables.record()
    with timed("publish", summary.timings) as stage:
        previous = last_published_manifest(spark, layout.root, layout.run_date)
        manifest["quality_gate"] = audit.quality_gate(
            manifest.get("metrics"), (previous or {}).get("metrics"), manifest["model"].get("kind", cfg.model.kind),
            cfg.publish.gate_metric, cfg.publish.max_metric_drop)
        manifest["compared_with_run"] = (previous or {}).get("run_id")
        manifest["churn_gate"] = audit.churn_gate(stability, cfg.publish.max_churn)
        staged = {}
        if tables is not None:
            write_runs_row(spark, manifest, staging)
            staged = staged_schemas(spark, staging)
            catalog.prepare_tables(spark, tables, layout.root, staged)  # schema drift: an error, nothing published
        seal(spark, layout, run_id, manifest)
        fault_point("audited")
        replaced = publish(spark, layout, run_id, resolve_mode(spark, layout.root, cfg.publish.mode))
        fault_point("published")
        if tables is not None:  # the last step of the publish: the catalog sees the date's partitions
            catalog.publish_partitions(spark, tables, layout, list(staged))
        stage.rows = f"run {run_id}: {table_rows(summary.counts)}"
        clean_date(spark, layout, keep={run_id, replaced} - {None})
        apply_retention(spark, layout.root, cfg.publish.retention_days, layout.run_date,
                        before_removing=None if tables is None else
                        lambda date: catalog.drop_partitions(spark, tables, date))
    return manifest


def write_runs_row(spark: SparkSession, manifest: dict, staging: str) -> None:
    """The runs table's one row for this run, staged with the other tables so it is published with them."""
    row = spark.createDataFrame([catalog.runs_row(manifest)], catalog.RUNS_SCHEMA)
    row.coalesce(1).write.mode("overwrite").parquet(table_path(staging, RUNS_TABLE))


def staged_schemas(spark: SparkSession, run_dir: str) -> dict:
    """Table directory name -> schema of each table staged in `run_dir`."""
    return {table: spark.read.parquet(table_path(run_dir, table)).schema
            for table in TABLES if fs.exists(spark, table_path(run_dir, table))}
