"""The nightly run: prepare -> train -> score -> similar -> evaluate -> audit -> publish, for one date,
in one process and without reloading anything between the steps."""

from __future__ import annotations

from pyspark.sql import SparkSession

from recsys_spark.app.steps import (
    RunPaths,
    RunSummary,
    Scored,
    audit_and_publish,
    date_lock,
    evaluate_run,
    load_rules,
    private_output,
    read_and_prepare,
    set_checkpoint_dir,
    timed,
    train,
    write_quarantine,
    write_recs,
    write_similar,
)
from recsys_spark.config import Config
from recsys_spark.data.schema import ITEM_SIMILAR, USER_RECS
from recsys_spark.storage.layout import QUARANTINE, DateLayout, new_run_id, table_path
from recsys_spark.storage.publish import resolve_mode
from recsys_spark.storage.stores import load_model, save_model


def run_nightly(spark: SparkSession, cfg: Config, source: str | None, output: str, run_date: str) -> RunSummary:
    """prepare -> train -> score -> similar -> evaluate -> audit -> publish, for one run date."""
    layout, run_id = DateLayout(output, run_date), new_run_id()
    summary = RunSummary(RunPaths(output, run_date))
    resolve_mode(spark, output, cfg.publish.mode)
    private_output(spark, cfg, output)
    set_checkpoint_dir(spark, cfg, output)
    with date_lock(spark, cfg, layout, run_id):
        staging = layout.staging(run_id)
        with timed("prepare", summary.timings):
            prepared, quarantine = read_and_prepare(spark, cfg, source)
            summary.counts[QUARANTINE] = write_quarantine(spark, quarantine, table_path(staging, QUARANTINE), prepared)
            rules = load_rules(spark, cfg, prepared)
        with timed("train", summary.timings):
            save_model(train(spark, cfg, prepared, layout), f"{staging}/model")
            # Scoring reads the saved factors, not the driver's in-memory frames they came from.
            model = load_model(spark, f"{staging}/model")
        with timed("score", summary.timings):
            write_recs(cfg, model, prepared, rules, table_path(staging, USER_RECS))
        if cfg.similar.enabled:
            with timed("similar", summary.timings):
                write_similar(cfg, model, rules, table_path(staging, ITEM_SIMILAR))
        with timed("evaluate", summary.timings):
            metrics = evaluate_run(spark, cfg, prepared, run_id)
        summary.manifest = audit_and_publish(spark, cfg, layout, run_id, Scored(prepared, model, rules), summary,
                                             metrics=metrics)
        prepared.interactions.unpersist()
    return summary
