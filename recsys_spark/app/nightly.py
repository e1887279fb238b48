"""The nightly run: prepare -> [tune] -> train -> score -> similar -> evaluate -> audit -> publish, for
one date, in one process and without reloading anything between the steps."""

from __future__ import annotations

from pyspark.sql import SparkSession

from recsys_spark.app.publishing import Scored, audit_and_publish, date_lock
from recsys_spark.app.steps import (
    RunPaths,
    RunSummary,
    evaluate_run,
    evaluated_rows,
    load_rules,
    model_rows,
    prepared_rows,
    private_output,
    read_and_prepare,
    set_checkpoint_dir,
    timed,
    train,
    write_quarantine,
    write_recs,
    write_similar,
)
from recsys_spark.app.tuning import nightly_tuned
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
        with timed("prepare", summary.timings) as stage:
            prepared, quarantine = read_and_prepare(spark, cfg, source)
            summary.counts[QUARANTINE] = write_quarantine(quarantine, table_path(staging, QUARANTINE), prepared)
            rules = load_rules(spark, cfg, prepared)
            stage.rows = prepared_rows(prepared, summary.counts[QUARANTINE])
        tuned = {}
        if cfg.tune.nightly:  # the day's config becomes the tuned one: train, evaluate and the manifest use it
            with timed("tune", summary.timings):
                cfg, record = nightly_tuned(spark, cfg, prepared, layout, run_id)
                tuned = {"tuned": record}
        with timed("train", summary.timings) as stage:
            save_model(train(spark, cfg, prepared, layout), f"{staging}/model")
            # Scoring reads the saved factors, not the driver's in-memory frames they came from.
            model = load_model(spark, f"{staging}/model")
            stage.rows = model_rows(model, prepared)
        with timed("score", summary.timings) as stage:
            stage.rows = write_recs(cfg, model, prepared, rules, table_path(staging, USER_RECS))
        if cfg.similar.enabled:
            with timed("similar", summary.timings) as stage:
                stage.rows = write_similar(cfg, model, rules, table_path(staging, ITEM_SIMILAR))
        with timed("evaluate", summary.timings) as stage:
            metrics = evaluate_run(spark, cfg, prepared, run_id)
            stage.rows = evaluated_rows(metrics)
        summary.manifest = audit_and_publish(spark, cfg, layout, run_id, Scored(prepared, model, rules), summary,
                                             metrics=metrics, **tuned)
        prepared.interactions.unpersist()
    return summary
