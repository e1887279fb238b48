"""The steps of a run, each written once: the nightly composition (nightly.py) and the stage
commands (stages.py) call the same functions.

A run is written to a hidden staging directory, audited, sealed with its manifest and `_SUCCESS`,
then published in one step (storage/publish.py and docs/publishing.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from recsys_spark.app.progress import task_progress
from recsys_spark.app.warm_start import warm_start_plan
from recsys_spark.config import Config
from recsys_spark.data.prepare import PreparedData, prepare
from recsys_spark.data.quarantine import account, profile_input, quarantine_rows, split_malformed
from recsys_spark.data.schema import ITEM_ID, ITEM_INDEX, ITEM_SIMILAR, RUNS_TABLE, USER_ID, USER_INDEX, USER_RECS
from recsys_spark.errors import ConfigError
from recsys_spark.evaluation.stability import item_similar_stability, user_recs_stability
from recsys_spark.faults import fail_first_attempt, fault_point
from recsys_spark.models.factor_model import FactorModel
from recsys_spark.models.registry import train_model, with_resolved_kind
from recsys_spark.serving.rules import RULE_COLUMNS, Rules, build_rules, item_pools, served_users
from recsys_spark.serving.scoring import recommend
from recsys_spark.serving.similarity import similar_items
from recsys_spark.serving.tables import item_similar_table, user_recs_table
from recsys_spark.storage import audit, catalog, fs, readers
from recsys_spark.storage.layout import TABLES, DateLayout, table_path
from recsys_spark.storage.lock import DateLock
from recsys_spark.storage.manifest import base_manifest
from recsys_spark.storage.publish import (
    apply_retention,
    clean_date,
    last_published_manifest,
    previous_published_date,
    publish,
    published_run,
    published_table,
    remove_leftovers,
    repair,
    resolve_mode,
    seal,
)

log = logging.getLogger(__name__)

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_run_date(value: str | None) -> str:
    """The run date as YYYY-MM-DD (today in UTC when not given); rejects anything else."""
    if value is None:
        return dt.datetime.now(dt.timezone.utc).date().isoformat()
    try:
        if not _DATE.match(value):
            raise ValueError
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise ConfigError(f"run date must be YYYY-MM-DD; got {value!r}") from None


@dataclass
class RunPaths:
    """The output root and run date of a command (paths themselves: layout.DateLayout)."""
    output: str
    run_date: str

    @property
    def layout(self) -> DateLayout:
        return DateLayout(self.output, self.run_date)

    @property
    def prepared(self) -> str:
        return self.layout.prepared

    @property
    def model(self) -> str:
        return self.layout.model


@dataclass
class RunSummary:
    paths: RunPaths
    timings: dict = field(default_factory=dict)
    counts: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)


@dataclass
class Stage:
    """What a timed stage says in its last log line besides its seconds: its rows, e.g.
    `2,000 user_recs rows for 200 users` (set by the block)."""
    rows: str = ""


@contextmanager
def timed(name: str, timings: dict):
    """Log `NAME: start`, run the block, record its seconds in `timings` and log one line
    `NAME: done in 12.3s, <rows>`; yields the Stage whose rows the block sets."""
    started = time.time()
    log.info("%s: start", name)
    stage = Stage()
    yield stage
    timings[name] = round(time.time() - started, 2)
    log.info("%s: done in %.1fs%s", name, timings[name], f", {stage.rows}" if stage.rows else "")


def prepared_rows(prepared: PreparedData, quarantined: int | None = None) -> str:
    """The prepare stage's rows: interactions, users, items (and rows quarantined)."""
    rows = (f"{prepared.stats['interactions']:,} interactions, {prepared.n_users:,} users, "
            f"{prepared.n_items:,} items")
    return rows if quarantined is None else f"{rows}, {quarantined:,} rows quarantined"


def model_rows(model: FactorModel, prepared: PreparedData) -> str:
    """The train stage's rows: the model's kind and what it was fitted on."""
    return (f"{model.kind} latent dim {model.info.latent_dim} on {prepared.stats['interactions']:,} "
            f"interactions ({prepared.n_users:,} users x {prepared.n_items:,} items)")


def table_rows(counts: dict) -> str:
    """`user_recs 2,000 rows, item_similar 800 rows`."""
    return ", ".join(f"{table} {rows:,} rows" for table, rows in counts.items())


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


def set_checkpoint_dir(spark: SparkSession, cfg: Config, output: str) -> None:
    spark.sparkContext.setCheckpointDir(cfg.spark.checkpoint_dir or f"{output}/_checkpoints")


def private_process(cfg: Config) -> None:
    """What this process, and the processes it starts from now on (a local JVM, its Python
    workers), create honours publish.umask: reports, lock files, local directories."""
    os.umask(cfg.publish.umask_bits)


def private_output(spark: SparkSession, cfg: Config, output: str) -> None:
    """Files and directories written from now on honour publish.umask, whoever writes them: this
    process (private_process) and Hadoop's writers on every file system (fs.permissions.umask-mode,
    which the JVM's writers and fs.restrict_permissions read); the output root is created so."""
    private_process(cfg)
    fs.set_umask(spark, cfg.publish.umask)
    if not fs.exists(spark, output):
        fs.mkdirs(spark, output)
        fs.restrict_permissions(spark, output)


# -- prepare ---------------------------------------------------------------------------------

def read_and_prepare(spark: SparkSession, cfg: Config, source: str | None) -> tuple[PreparedData, DataFrame]:
    """Read, split off malformed lines, prepare; returns the prepared data and the quarantine rows.

    prepared.stats gains `input` (rows read, content hash, source, the files of an input directory
    that input.glob skipped), which the manifest records as its `input`.
    """
    raw, skipped_files = readers.read_interactions(spark, cfg.input, source)
    profile = profile_input(raw)
    wellformed, malformed = split_malformed(raw)
    prepared = prepare(wellformed, cfg.prepare, cfg.input.id_type)
    prepared.interactions = prepared.interactions.persist()
    prepared.stats["input"] = {"source": source or cfg.input.path, **profile, "skipped_files": skipped_files}
    return prepared, quarantine_rows(malformed, prepared)


def write_quarantine(spark: SparkSession, quarantine: DataFrame, path: str, prepared: PreparedData) -> int:
    """Write the quarantine table, check the row accounting, record it in prepared.stats."""
    quarantine.write.mode("overwrite").parquet(path)
    count = spark.read.parquet(path).count()
    prepared.stats["rows"] = account(prepared.stats["input"], prepared.stats, count)
    return count


def load_rules(spark: SparkSession, cfg: Config, prepared: PreparedData) -> Rules:
    """The conf's rule tables (rules.*_path), read and mapped to the prepared indexes."""
    tables = {name: readers.read_rule_table(spark, getattr(cfg.rules, f"{name}_path"), f"rules.{name}_path",
                                            columns, cfg.input)
              for name, columns in RULE_COLUMNS.items() if getattr(cfg.rules, f"{name}_path")}
    return build_rules(prepared, cfg.rules, **tables)


# -- train -----------------------------------------------------------------------------------

def item_features(spark: SparkSession, cfg: Config, kinds: list[str] | None = None) -> DataFrame | None:
    """The item features file (model.content.features_path) when a trainer of `kinds` (default
    model.kind) uses it, else None."""
    kinds = kinds or [cfg.model.kind]
    if not any(cfg.model.uses_item_features(kind) for kind in kinds) or not cfg.model.content.features_path:
        return None
    return readers.read_item_features(spark, cfg.model.content.features_path, cfg.model.content.features_format,
                                      cfg.input)


def train(spark: SparkSession, cfg: Config, prepared: PreparedData, layout: DateLayout | None = None) -> FactorModel:
    """Train model.kind on the prepared data, with item features when the trainer uses them; with the
    run's `layout`, warm-started as model.warm_start says (app/warm_start.py)."""
    cfg = with_resolved_kind(cfg, prepared.n_items)  # auto warm-starts when it trains wals
    warm = None if layout is None else warm_start_plan(spark, cfg, layout)
    return train_model(prepared, cfg, item_features(spark, cfg), warm)


# -- score and similar -----------------------------------------------------------------------

def write_recs(cfg: Config, model: FactorModel, prepared: PreparedData, rules: Rules, path: str) -> str:
    """Score every user into user_recs at `path`; returns its rows, e.g. `2,000 user_recs rows for 200 users`."""
    seen = prepared.interactions.select(USER_INDEX, ITEM_INDEX)
    recs = user_recs_table(recommend(model, seen, cfg.score, rules=rules), model.kind)
    rows, lists = _write_counted(fail_first_attempt(recs), path, "score")
    return f"{rows:,} {USER_RECS} rows for {lists:,} users"


def write_similar(cfg: Config, model: FactorModel, rules: Rules, path: str) -> str:
    """The neighbours of every item into item_similar at `path`; returns its rows, as write_recs."""
    similar = similar_items(model, cfg.similar, cfg.score, rules=rules)
    rows, lists = _write_counted(item_similar_table(similar, model.kind), path, "similar")
    return f"{rows:,} {ITEM_SIMILAR} rows for {lists:,} items"


def _write_counted(table: DataFrame, path: str, name: str) -> tuple[int, int]:
    """Write a ranked table (task progress logged as it goes); returns (rows, lists: rows of rank 1),
    counted by the write itself (an Observation: no second job)."""
    observation = Observation()
    counted = table.observe(observation, F.count(F.lit(1)).alias("rows"),
                            F.sum((F.col("rank") == 1).cast("long")).alias("lists"))
    with task_progress(table.sparkSession.sparkContext.statusTracker(), name):
        counted.write.mode("overwrite").parquet(path)
    metrics = observation.get
    return metrics["rows"], metrics["lists"] or 0


def evaluated_rows(metrics: dict | None) -> str:
    """The evaluate stage's rows: how many metrics of which models, or off."""
    if metrics is None:
        return "off (evaluate.enabled is false)"
    return f"{sum(len(values) for values in metrics.values())} metrics of {', '.join(metrics)}"


def evaluate_run(spark: SparkSession, cfg: Config, prepared: PreparedData, run_id: str) -> dict | None:
    """Manifest metrics {model: {metric@k: value}} when evaluate.enabled, else None."""
    if not cfg.evaluate.enabled:
        return None
    from recsys_spark.evaluation.holdout import compared_models, evaluate, manifest_metrics

    return manifest_metrics(evaluate(prepared, cfg, run_id, item_features(spark, cfg, compared_models(cfg))))


# -- audit and publish -----------------------------------------------------------------------

def audit_run(spark: SparkSession, cfg: Config, run_dir: str, prepared: PreparedData, model: FactorModel,
              rules: Rules) -> dict:
    """Audit the tables staged in `run_dir` against the prepared data, the model and the rules;
    raises AuditError."""
    results = {}
    items = item_pools(rules, prepared.item_ids, model.item_factors).persist()
    restricted = rules.include_items is not None or rules.exclude_items is not None
    if fs.exists(spark, table_path(run_dir, USER_RECS)):
        results[USER_RECS] = audit_user_recs(spark.read.parquet(table_path(run_dir, USER_RECS)), cfg, prepared,
                                             model, rules, items)
    if fs.exists(spark, table_path(run_dir, ITEM_SIMILAR)):
        neighbours = None
        if restricted:
            neighbours = (items.filter("allowed")
                          .join(model.item_factors.select(ITEM_INDEX, ITEM_ID), ITEM_INDEX).select(ITEM_ID))
        results[ITEM_SIMILAR] = audit.audit_similar(spark.read.parquet(table_path(run_dir, ITEM_SIMILAR)),
                                                    model.item_factors.select(ITEM_ID), cfg.similar.top_k,
                                                    neighbours)
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


def run_stability(spark: SparkSession, cfg: Config, layout: DateLayout, run_dir: str) -> dict:
    """How much the tables staged in `run_dir` changed against the previous published date (the
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
        if not fs.exists(spark, table_path(run_dir, table)) or old is None:
            record[table] = None  # this run or the earlier date has no such table
            continue
        record[table] = measure(spark.read.parquet(table_path(run_dir, table)), old, n)
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
        results = audit_run(spark, cfg, staging, scored.prepared, scored.model, scored.rules)
        stability = run_stability(spark, cfg, layout, staging)
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
