"""The nightly pipeline and its stages, wired to storage. Stages themselves do no I/O."""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark import io
from recsys_spark.config import Config
from recsys_spark.factor_model import FactorModel
from recsys_spark.models.registry import train_model
from recsys_spark.prepare import PreparedData, prepare
from recsys_spark.publish import write_partition
from recsys_spark.schema import (ITEM_INDEX, ITEM_SIMILAR, ITEM_SIMILAR_COLUMNS, MODEL, USER_INDEX,
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
    """Where one run date's tables and working files live under the output directory."""
    output: str
    run_date: str

    @property
    def run_dir(self) -> str:
        return f"{self.output}/_runs/{self.run_date}"

    @property
    def prepared(self) -> str:
        return f"{self.run_dir}/prepared"

    @property
    def model(self) -> str:
        return f"{self.run_dir}/model"

    @property
    def manifest(self) -> str:
        return f"{self.run_dir}/manifest.json"

    def table(self, name: str) -> str:
        return f"{self.output}/{name}"


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


def user_recs_table(recs: DataFrame, model_name: str) -> DataFrame:
    return recs.withColumn(MODEL, F.lit(model_name)).select(*USER_RECS_COLUMNS)


def item_similar_table(similar: DataFrame, model_name: str) -> DataFrame:
    return similar.withColumn(MODEL, F.lit(model_name)).select(*ITEM_SIMILAR_COLUMNS)


def run_prepare(spark: SparkSession, cfg: Config, source: str | None) -> PreparedData:
    raw = io.read_interactions(spark, cfg.input, source)
    prepared = prepare(raw, cfg.prepare, cfg.input.id_type)
    prepared.interactions = prepared.interactions.persist()
    return prepared


def publish_recs(spark, cfg: Config, paths: RunPaths, model: FactorModel, seen: DataFrame, summary: RunSummary):
    recs = user_recs_table(recommend(model, seen, cfg.score), model.kind)
    target = write_partition(recs, paths.table(USER_RECS), paths.run_date)
    summary.counts[USER_RECS] = spark.read.parquet(target).count()


def publish_similar(spark, cfg: Config, paths: RunPaths, model: FactorModel, summary: RunSummary):
    similar = item_similar_table(similar_items(model, cfg.similar, cfg.score), model.kind)
    target = write_partition(similar, paths.table(ITEM_SIMILAR), paths.run_date)
    summary.counts[ITEM_SIMILAR] = spark.read.parquet(target).count()


def run_nightly(spark: SparkSession, cfg: Config, source: str | None, output: str, run_date: str) -> RunSummary:
    """prepare -> train -> score -> similar -> write, for one run date."""
    paths = RunPaths(output, run_date)
    summary = RunSummary(paths)
    set_checkpoint_dir(spark, cfg, output)
    with timed("prepare", summary.timings):
        prepared = run_prepare(spark, cfg, source)
    with timed("train", summary.timings):
        model = train_model(prepared, cfg)
        model.save(paths.model)
        model = FactorModel.load(spark, paths.model)
    with timed("score", summary.timings):
        publish_recs(spark, cfg, paths, model, prepared.interactions.select(USER_INDEX, ITEM_INDEX), summary)
    if cfg.similar.enabled:
        with timed("similar", summary.timings):
            publish_similar(spark, cfg, paths, model, summary)
    summary.manifest = {
        "run_date": run_date, "input": source or cfg.input.path, "prepare": prepared.stats,
        "model": model.metadata, "row_counts": summary.counts, "timings": summary.timings,
        "config": cfg.to_dict(),
    }
    io.write_json(spark, paths.manifest, summary.manifest)
    prepared.interactions.unpersist()
    return summary


def stage_prepare(spark: SparkSession, cfg: Config, source: str | None, paths: RunPaths) -> RunSummary:
    summary = RunSummary(paths)
    with timed("prepare", summary.timings):
        prepared = run_prepare(spark, cfg, source)
        io.save_prepared(prepared, paths.prepared)
    summary.counts = {"interactions": prepared.stats["interactions"], "users": prepared.n_users, "items": prepared.n_items}
    summary.manifest = {"prepare": prepared.stats}
    return summary


def stage_train(spark: SparkSession, cfg: Config, paths: RunPaths) -> RunSummary:
    summary = RunSummary(paths)
    set_checkpoint_dir(spark, cfg, paths.output)
    with timed("train", summary.timings):
        prepared = io.load_prepared(spark, paths.prepared)
        model = train_model(prepared, cfg)
        model.save(paths.model)
    summary.manifest = {"model": model.metadata}
    return summary


def stage_score(spark: SparkSession, cfg: Config, paths: RunPaths, model_dir: str | None) -> RunSummary:
    summary = RunSummary(paths)
    with timed("score", summary.timings):
        model = FactorModel.load(spark, model_dir or paths.model)
        prepared = io.load_prepared(spark, paths.prepared)
        publish_recs(spark, cfg, paths, model, prepared.interactions.select(USER_INDEX, ITEM_INDEX), summary)
    return summary


def stage_similar(spark: SparkSession, cfg: Config, paths: RunPaths, model_dir: str | None) -> RunSummary:
    summary = RunSummary(paths)
    with timed("similar", summary.timings):
        publish_similar(spark, cfg, paths, FactorModel.load(spark, model_dir or paths.model), summary)
    return summary
