"""The steps of a run, each written once: the nightly composition (nightly.py) and the stage
commands (stages.py) call the same functions.

A run is written to a hidden staging directory here; app/publishing.py audits it, seals it with its
manifest and `_SUCCESS` and publishes it in one step (storage/publish.py and docs/publishing.md).
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
from recsys_spark.data.schema import ITEM_INDEX, ITEM_SIMILAR, USER_INDEX, USER_RECS, WEIGHT
from recsys_spark.errors import ConfigError
from recsys_spark.faults import fail_first_attempt
from recsys_spark.models.factor_model import FactorModel
from recsys_spark.models.registry import train_model, with_resolved_kind
from recsys_spark.serving.rules import RULE_COLUMNS, Rules, build_rules
from recsys_spark.serving.scoring import recommend
from recsys_spark.serving.similarity import similar_items
from recsys_spark.serving.tables import item_similar_table, user_recs_table
from recsys_spark.storage import fs, readers
from recsys_spark.storage.layout import DateLayout

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
    # Materialised here, so the indexing joins are the prepare stage's seconds (as when `recsys-spark
    # prepare` writes them), not those of the first stage that reads them (train's collection).
    prepared.interactions.count()
    prepared.stats["input"] = {"source": source or cfg.input.path, **profile, "skipped_files": skipped_files}
    return prepared, quarantine_rows(malformed, prepared)


def write_quarantine(quarantine: DataFrame, path: str, prepared: PreparedData) -> int:
    """Write the quarantine table, check the row accounting, record it in prepared.stats."""
    count = _write_observed(quarantine, path, rows=F.count(F.lit(1)))["rows"]
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
    seen = prepared.interactions.select(USER_INDEX, ITEM_INDEX, WEIGHT)
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
    with task_progress(table.sparkSession.sparkContext.statusTracker(), name):
        metrics = _write_observed(table, path, rows=F.count(F.lit(1)), lists=F.sum((F.col("rank") == 1).cast("long")))
    return metrics["rows"], metrics["lists"] or 0


def _write_observed(table: DataFrame, path: str, **aggregates) -> dict:
    """Write `table` as Parquet at `path`; returns the named aggregates over the rows written,
    computed by the write itself (an Observation: no second job)."""
    observation = Observation()
    table.observe(observation, *[value.alias(name) for name, value in aggregates.items()]) \
        .write.mode("overwrite").parquet(path)
    return observation.get


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

    # The nightly run records metrics only: the report's aggregates are for `recsys-spark evaluate`.
    return manifest_metrics(evaluate(prepared, cfg, run_id, item_features(spark, cfg, compared_models(cfg)),
                                     report=False))
