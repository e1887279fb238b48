"""The nightly pipeline and its stages, wired to storage. Stages themselves do no I/O.

A run is written to a hidden staging directory, audited, sealed with its manifest and `_SUCCESS`,
then published in one step (see publish.py and docs/publishing.md).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark import audit, fs, io
from recsys_spark.config import Config
from recsys_spark.factor_model import FactorModel
from recsys_spark.faults import fail_first_attempt, fault_point
from recsys_spark.layout import QUARANTINE, DateLayout, new_run_id, table_path
from recsys_spark.lock import DateLock
from recsys_spark.models.registry import train_model
from recsys_spark.prepare import PreparedData, prepare
from recsys_spark.publish import apply_retention, clean_date, last_published_manifest, publish, resolve_mode, seal
from recsys_spark.quarantine import account, profile_input, quarantine_rows, split_malformed
from recsys_spark.rules import Rules, build_rules, item_pools, served_users
from recsys_spark.schema import (ITEM_ID, ITEM_INDEX, ITEM_SIMILAR, ITEM_SIMILAR_COLUMNS, MODEL, USER_ID, USER_INDEX,
                                 USER_RECS, USER_RECS_COLUMNS)
from recsys_spark.scoring import recommend
from recsys_spark.similarity import similar_items

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
        raise ValueError(f"run date must be YYYY-MM-DD; got {value!r}") from None


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


@contextmanager
def timed(name: str, timings: dict):
    started = time.time()
    log.info("%s: start", name)
    yield
    timings[name] = round(time.time() - started, 2)
    log.info("%s: done in %.1fs", name, timings[name])


def set_checkpoint_dir(spark: SparkSession, cfg: Config, output: str) -> None:
    spark.sparkContext.setCheckpointDir(cfg.spark.checkpoint_dir or f"{output}/_checkpoints")


def private_output(spark: SparkSession, cfg: Config, output: str) -> None:
    """Files written from now on are not world-readable (Hadoop's umask for every writer)."""
    spark.sparkContext._jsc.hadoopConfiguration().set("fs.permissions.umask-mode", cfg.publish.umask)
    if not fs.exists(spark, output):
        fs.mkdirs(spark, output)
        fs.restrict_permissions(spark, output)


def user_recs_table(recs: DataFrame, model_name: str) -> DataFrame:
    return recs.withColumn(MODEL, F.lit(model_name)).select(*USER_RECS_COLUMNS)


def item_similar_table(similar: DataFrame, model_name: str) -> DataFrame:
    return similar.withColumn(MODEL, F.lit(model_name)).select(*ITEM_SIMILAR_COLUMNS)


def run_prepare(spark: SparkSession, cfg: Config, source: str | None) -> tuple[PreparedData, DataFrame]:
    """Read, split off malformed lines, prepare; returns the prepared data and the quarantine rows.

    prepared.stats gains `input` (rows read, content hash, source).
    """
    raw = io.read_interactions(spark, cfg.input, source)
    profile = profile_input(raw)
    wellformed, malformed = split_malformed(raw)
    prepared = prepare(wellformed, cfg.prepare, cfg.input.id_type)
    prepared.interactions = prepared.interactions.persist()
    prepared.stats["input"] = {"source": source or cfg.input.path, **profile}
    return prepared, quarantine_rows(malformed, prepared)


def write_quarantine(spark: SparkSession, quarantine: DataFrame, path: str, prepared: PreparedData) -> int:
    """Write the quarantine table, check the row accounting, record it in prepared.stats."""
    quarantine.write.mode("overwrite").parquet(path)
    count = spark.read.parquet(path).count()
    prepared.stats["rows"] = account(prepared.stats["input"], prepared.stats, count)
    return count


RULE_TABLES = ("exclude_items", "exclude_user_items", "include_items")


def load_rules(spark: SparkSession, cfg: Config, prepared: PreparedData) -> Rules:
    """The conf's rule tables (rules.*_path), read and mapped to the prepared indexes."""
    tables = {name: io.read_rule_table(spark, getattr(cfg.rules, f"{name}_path"), f"rules.{name}_path")
              for name in RULE_TABLES if getattr(cfg.rules, f"{name}_path")}
    return build_rules(prepared, cfg.rules, **tables)


def write_recs(cfg: Config, model: FactorModel, prepared: PreparedData, rules: Rules, path: str) -> None:
    seen = prepared.interactions.select(USER_INDEX, ITEM_INDEX)
    recs = user_recs_table(recommend(model, seen, cfg.score, rules=rules), model.kind)
    fail_first_attempt(recs).write.mode("overwrite").parquet(path)


def write_similar(cfg: Config, model: FactorModel, rules: Rules, path: str) -> None:
    similar = similar_items(model, cfg.similar, cfg.score, rules=rules)
    item_similar_table(similar, model.kind).write.mode("overwrite").parquet(path)


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


def evaluate_run(prepared: PreparedData, cfg: Config, run_id: str) -> dict | None:
    """Manifest metrics {model: {metric@k: value}} when evaluate.enabled, else None."""
    if not cfg.evaluate.enabled:
        return None
    from recsys_spark.evaluate import evaluate, manifest_metrics

    return manifest_metrics(evaluate(prepared, cfg, run_id))


def seal_and_publish(spark: SparkSession, cfg: Config, layout: DateLayout, run_id: str, manifest: dict) -> dict:
    """Quality gate, seal, publish in one step, clean the date, apply retention; returns the manifest."""
    previous = last_published_manifest(spark, layout.root, layout.run_date)
    manifest["quality_gate"] = audit.quality_gate(
        manifest.get("metrics"), (previous or {}).get("metrics"), manifest["model"].get("kind", cfg.model.kind),
        cfg.publish.gate_metric, cfg.publish.max_metric_drop)
    manifest["compared_with_run"] = (previous or {}).get("run_id")
    seal(spark, layout, run_id, manifest)
    fault_point("audited")
    replaced = publish(spark, layout, run_id, resolve_mode(spark, layout.root, cfg.publish.mode))
    clean_date(spark, layout, keep={run_id, replaced} - {None})
    apply_retention(spark, layout.root, cfg.publish.retention_days)
    return manifest


def base_manifest(cfg: Config, layout: DateLayout, run_id: str, prepared_stats: dict, model: FactorModel,
                  rules: Rules, audit_results: dict) -> dict:
    rejected = dict(prepared_stats.get("rejected", {}))
    rejected["malformed_line"] = prepared_stats.get("input", {}).get("malformed_lines", 0)
    return {
        "run_id": run_id, "run_date": layout.run_date,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "input": prepared_stats.get("input", {}), "rows": prepared_stats.get("rows", {}),
        "rejected_by_reason": rejected, "prepare": prepared_stats, "model": model.metadata,
        "rules": {**rules.summary, "fallback": cfg.rules.fallback,
                  "fallback_rows": audit_results.get(USER_RECS, {}).get("_fallback_rows", 0)},
        "config": cfg.to_dict(),
    }


def run_nightly(spark: SparkSession, cfg: Config, source: str | None, output: str, run_date: str) -> RunSummary:
    """prepare -> train -> score -> similar -> audit -> publish, for one run date."""
    layout, run_id = DateLayout(output, run_date), new_run_id()
    summary = RunSummary(RunPaths(output, run_date))
    resolve_mode(spark, output, cfg.publish.mode)
    private_output(spark, cfg, output)
    set_checkpoint_dir(spark, cfg, output)
    with DateLock(spark, layout.lock, run_id, cfg.publish.lock_stale_seconds):
        staging = layout.staging(run_id)
        with timed("prepare", summary.timings):
            prepared, quarantine = run_prepare(spark, cfg, source)
            summary.counts[QUARANTINE] = write_quarantine(spark, quarantine, table_path(staging, QUARANTINE), prepared)
            rules = load_rules(spark, cfg, prepared)
        with timed("train", summary.timings):
            model = train_model(prepared, cfg)
            model.save(f"{staging}/model")
            model = FactorModel.load(spark, f"{staging}/model")
        with timed("score", summary.timings):
            write_recs(cfg, model, prepared, rules, table_path(staging, USER_RECS))
        if cfg.similar.enabled:
            with timed("similar", summary.timings):
                write_similar(cfg, model, rules, table_path(staging, ITEM_SIMILAR))
        with timed("evaluate", summary.timings):
            metrics = evaluate_run(prepared, cfg, run_id)
        with timed("audit", summary.timings):
            results = audit_run(spark, cfg, staging, prepared, model, rules)
        summary.counts.update({t: r["_total_rows"] for t, r in results.items()})
        manifest = base_manifest(cfg, layout, run_id, prepared.stats, model, rules, results)
        manifest.update(row_counts=summary.counts, audit=results, metrics=metrics, timings=summary.timings)
        with timed("publish", summary.timings):
            summary.manifest = seal_and_publish(spark, cfg, layout, run_id, manifest)
        prepared.interactions.unpersist()
    return summary


def stage_prepare(spark: SparkSession, cfg: Config, source: str | None, paths: RunPaths) -> RunSummary:
    summary = RunSummary(paths)
    private_output(spark, cfg, paths.output)
    with timed("prepare", summary.timings):
        prepared, quarantine = run_prepare(spark, cfg, source)
        write_quarantine(spark, quarantine, table_path(paths.layout.stage, QUARANTINE), prepared)
        io.save_prepared(prepared, paths.prepared)
    summary.counts = {"interactions": prepared.stats["interactions"], "users": prepared.n_users,
                      "items": prepared.n_items, QUARANTINE: prepared.stats["rows"]["quarantined"]}
    summary.manifest = {"prepare": prepared.stats}
    return summary


def stage_train(spark: SparkSession, cfg: Config, paths: RunPaths) -> RunSummary:
    summary = RunSummary(paths)
    private_output(spark, cfg, paths.output)
    set_checkpoint_dir(spark, cfg, paths.output)
    with timed("train", summary.timings):
        prepared = io.load_prepared(spark, paths.prepared)
        model = train_model(prepared, cfg)
        model.save(paths.model)
    summary.manifest = {"model": model.metadata}
    return summary


@dataclass
class ScoringInputs:
    prepared: PreparedData
    model: FactorModel
    rules: Rules


def scoring_inputs(spark: SparkSession, cfg: Config, paths: RunPaths, model_dir: str | None) -> ScoringInputs:
    """The run date's prepared data, the model that scores it and the rules, loaded once per command.

    A model from elsewhere (--model) was indexed on other data, so the prepared data is
    re-expressed in its index space first (new users folded in).
    """
    prepared = io.load_prepared(spark, paths.prepared)
    model = FactorModel.load(spark, model_dir or paths.model)
    if model_dir and fs.qualify(spark, model_dir) != fs.qualify(spark, paths.model):
        from recsys_spark.model_space import in_model_space

        prepared, model = in_model_space(prepared, model)
    return ScoringInputs(prepared, model, load_rules(spark, cfg, prepared))


def stage_score(spark: SparkSession, cfg: Config, paths: RunPaths, model_dir: str | None) -> RunSummary:
    """Stage user_recs; publishes the date once every table it needs is staged."""
    summary = RunSummary(paths)
    private_output(spark, cfg, paths.output)
    with timed("score", summary.timings):
        inputs = scoring_inputs(spark, cfg, paths, model_dir)
        write_recs(cfg, inputs.model, inputs.prepared, inputs.rules, table_path(paths.layout.stage, USER_RECS))
    return _publish_staged(spark, cfg, paths, model_dir, inputs, summary)


def stage_similar(spark: SparkSession, cfg: Config, paths: RunPaths, model_dir: str | None) -> RunSummary:
    """Stage item_similar; publishes the date once every table it needs is staged."""
    summary = RunSummary(paths)
    private_output(spark, cfg, paths.output)
    with timed("similar", summary.timings):
        inputs = scoring_inputs(spark, cfg, paths, model_dir)
        write_similar(cfg, inputs.model, inputs.rules, table_path(paths.layout.stage, ITEM_SIMILAR))
    return _publish_staged(spark, cfg, paths, model_dir, inputs, summary)


def _publish_staged(spark: SparkSession, cfg: Config, paths: RunPaths, model_dir: str | None,
                    inputs: ScoringInputs, summary: RunSummary) -> RunSummary:
    """Audit and publish the staged tables once all are there, against the inputs that scored them."""
    layout, run_id = paths.layout, new_run_id()
    needed = [USER_RECS, ITEM_SIMILAR] if cfg.similar.enabled else [USER_RECS]
    missing = [t for t in needed if not fs.exists(spark, table_path(layout.stage, t))]
    if missing:
        log.info("%s staged; the date is published once %s is staged too", ", ".join(set(needed) - set(missing)),
                 " and ".join(missing))
        return summary
    prepared, model, rules = inputs.prepared, inputs.model, inputs.rules
    with DateLock(spark, layout.lock, run_id, cfg.publish.lock_stale_seconds):
        staging = layout.staging(run_id)
        fs.mkdirs(spark, staging)
        for name in (*needed, QUARANTINE):
            if fs.exists(spark, table_path(layout.stage, name)):
                fs.rename(spark, table_path(layout.stage, name), table_path(staging, name))
        with timed("audit", summary.timings):
            results = audit_run(spark, cfg, staging, prepared, model, rules)
        summary.counts.update({t: r["_total_rows"] for t, r in results.items()})
        manifest = base_manifest(cfg, layout, run_id, prepared.stats, model, rules, results)
        manifest.update(row_counts=summary.counts, audit=results, metrics=None, timings=summary.timings,
                        model_dir=model_dir or paths.model)
        with timed("publish", summary.timings):
            summary.manifest = seal_and_publish(spark, cfg, layout, run_id, manifest)
    return summary
