"""The stage commands: `prepare`, `train`, `score`, `similar` and `publish`, one process each.

Each keeps what it made under OUTPUT/_runs/DATE/ for the next: prepared data, the model, and
the tables `score` and `similar` stage (in any order) until `publish` audits and publishes them.
"""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession

from recsys_spark.app.publishing import Scored, audit_and_publish, date_lock
from recsys_spark.app.steps import (
    RunPaths,
    RunSummary,
    load_rules,
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
from recsys_spark.config import Config
from recsys_spark.data.schema import ITEM_SIMILAR, USER_RECS
from recsys_spark.errors import NotFoundError, UserError
from recsys_spark.models.reindex import in_model_space
from recsys_spark.storage import fs
from recsys_spark.storage.layout import QUARANTINE, DateLayout, new_run_id, table_path
from recsys_spark.storage.published import run_dates
from recsys_spark.storage.stores import load_model, load_prepared, read_json, save_model, save_prepared, write_json

log = logging.getLogger(__name__)


def stage_prepare(spark: SparkSession, cfg: Config, source: str | None, paths: RunPaths) -> RunSummary:
    """Prepare the input and keep it (and its quarantine) for the date's later stages."""
    summary = RunSummary(paths)
    private_output(spark, cfg, paths.output)
    with timed("prepare", summary.timings) as stage:
        prepared, quarantine = read_and_prepare(spark, cfg, source)
        quarantined = write_quarantine(quarantine, table_path(paths.layout.pending, QUARANTINE), prepared)
        save_prepared(prepared, paths.prepared)
        stage.rows = prepared_rows(prepared, quarantined)
    summary.counts = {"interactions": prepared.stats["interactions"], "users": prepared.n_users,
                      "items": prepared.n_items, QUARANTINE: prepared.stats["rows"]["quarantined"]}
    summary.manifest = {"prepare": prepared.stats}
    return summary


def stage_train(spark: SparkSession, cfg: Config, paths: RunPaths) -> RunSummary:
    """Train model.kind on the date's prepared data and keep the model."""
    summary = RunSummary(paths)
    private_output(spark, cfg, paths.output)
    set_checkpoint_dir(spark, cfg, paths.output)
    with timed("train", summary.timings):
        model = train(spark, cfg, load_prepared(spark, paths.prepared), paths.layout)
        save_model(model, paths.model)
    summary.manifest = {"model": model.metadata}
    return summary


def scoring_inputs(spark: SparkSession, cfg: Config, paths: RunPaths, model_dir: str | None) -> Scored:
    """The run date's prepared data, the model that scores it and the rules, loaded once per command.

    A model from elsewhere (--model) was indexed on other data, so the prepared data is
    re-expressed in its index space first (new users folded in).
    """
    prepared = load_prepared(spark, paths.prepared)
    model = load_model(spark, model_dir or paths.model)
    if model_dir and fs.qualify(spark, model_dir) != fs.qualify(spark, paths.model):
        prepared, model = in_model_space(prepared, model)
    return Scored(prepared, model, load_rules(spark, cfg, prepared))


def stage_score(spark: SparkSession, cfg: Config, paths: RunPaths, model_dir: str | None) -> RunSummary:
    """Stage user_recs for `publish`."""
    summary = RunSummary(paths)
    private_output(spark, cfg, paths.output)
    with timed("score", summary.timings) as stage:
        scored = scoring_inputs(spark, cfg, paths, model_dir)
        stage.rows = _stage(spark, paths, USER_RECS, model_dir,
                            lambda path: write_recs(cfg, scored.model, scored.prepared, scored.rules, path))
    return summary


def stage_similar(spark: SparkSession, cfg: Config, paths: RunPaths, model_dir: str | None) -> RunSummary:
    """Stage item_similar for `publish`."""
    summary = RunSummary(paths)
    private_output(spark, cfg, paths.output)
    with timed("similar", summary.timings) as stage:
        scored = scoring_inputs(spark, cfg, paths, model_dir)
        stage.rows = _stage(spark, paths, ITEM_SIMILAR, model_dir,
                            lambda path: write_similar(cfg, scored.model, scored.rules, path))
    return summary


def score_new_input(spark: SparkSession, cfg: Config, paths: RunPaths, model_dir: str, source: str) -> RunSummary:
    """Prepare `source`, fold its new users into the model at `model_dir`, stage user_recs.

    The re-indexed data and the folded-in model become the date's prepared data and model, so
    `similar` and `publish` of the date use them as they would a trained model.
    """
    if fs.qualify(spark, model_dir) == fs.qualify(spark, paths.model):
        raise NotFoundError(f"--model {model_dir} is the run date's own model directory, which scoring new "
                            "input rewrites; pass the model of an earlier run (e.g. OUTPUT/_runs/DATE/model)")
    summary = RunSummary(paths)
    private_output(spark, cfg, paths.output)
    with timed("prepare", summary.timings) as stage:
        prepared, quarantine = read_and_prepare(spark, cfg, source)
        quarantined = write_quarantine(quarantine, table_path(paths.layout.pending, QUARANTINE), prepared)
        stage.rows = prepared_rows(prepared, quarantined)
    with timed("fold-in", summary.timings):
        prepared, model = in_model_space(prepared, load_model(spark, model_dir))
        save_model(model, paths.model)
        save_prepared(prepared, paths.prepared)
    with timed("score", summary.timings) as stage:
        rules = load_rules(spark, cfg, prepared)
        stage.rows = _stage(spark, paths, USER_RECS, None, lambda path: write_recs(cfg, model, prepared, rules, path))
    return summary


def _stage(spark: SparkSession, paths: RunPaths, table: str, model_dir: str | None, write) -> str:
    """Write one table into the date's pending directory, with the model that scored it; returns
    what `write` returns (its rows)."""
    pending = paths.layout.pending
    rows = write(table_path(pending, table))
    write_json(spark, f"{pending}/{table}.json", {"model_dir": model_dir or paths.model})
    log.info("%s staged for %s; `recsys-spark publish` audits and publishes the date", table, paths.run_date)
    return rows


def stage_publish(spark: SparkSession, cfg: Config, paths: RunPaths) -> RunSummary:
    """Audit the tables `score` and `similar` staged for the date and publish them in one step."""
    summary = RunSummary(paths)
    layout = paths.layout
    private_output(spark, cfg, paths.output)
    needed = [USER_RECS, ITEM_SIMILAR] if cfg.similar.enabled else [USER_RECS]
    missing = [t for t in needed if not fs.exists(spark, table_path(layout.pending, t))]
    if missing:
        commands = {USER_RECS: "score", ITEM_SIMILAR: "similar"}
        raise NotFoundError(f"nothing to publish for {paths.run_date}: {' and '.join(missing)} not staged; run "
                            + " and ".join(f"`recsys-spark {commands[t]}`" for t in missing) + " for the date first"
                            + (" (or set similar.enabled=false)" if ITEM_SIMILAR in missing else ""))
    model_dirs = {t: _scored_with(spark, layout.pending, t, paths.model) for t in needed}
    if len({fs.qualify(spark, d) for d in model_dirs.values()}) > 1:
        raise UserError("the staged tables were made by different models ("
                        + ", ".join(f"{t}: {d}" for t, d in model_dirs.items())
                        + "); stage them again with the same --model")
    model_dir = model_dirs[USER_RECS]
    scored = scoring_inputs(spark, cfg, paths, model_dir)
    run_id = new_run_id()
    with date_lock(spark, cfg, layout, run_id):
        staging = layout.staging(run_id)
        fs.mkdirs(spark, staging)
        for name in (*needed, QUARANTINE):
            if fs.exists(spark, table_path(layout.pending, name)):
                fs.rename(spark, table_path(layout.pending, name), table_path(staging, name))
        for name in needed:
            fs.delete(spark, f"{layout.pending}/{name}.json")
        summary.manifest = audit_and_publish(spark, cfg, layout, run_id, scored, summary, metrics=None,
                                             model_dir=model_dir)
    return summary


def _scored_with(spark: SparkSession, pending: str, table: str, default: str) -> str:
    record = f"{pending}/{table}.json"
    return read_json(spark, record)["model_dir"] if fs.exists(spark, record) else default


def stage_clean(spark: SparkSession, cfg: Config, output: str, run_date: str | None) -> RunSummary:
    """Under each date's lock (one date, or every date of the output): finish a publish that was
    killed half-way and remove what killed or failed runs left; published runs stay."""
    summary = RunSummary(RunPaths(output, run_date or "every date"))
    for date in [run_date] if run_date else run_dates(spark, output):
        with date_lock(spark, cfg, DateLayout(output, date), new_run_id()) as tidied:
            summary.counts[f"{date} cleaned"] = len(tidied["removed"]) + (tidied["finished"] is not None)
    return summary
