"""Offline studies: `recsys-spark evaluate` and `recsys-spark tune`, wired to storage."""

from __future__ import annotations

from recsys_spark.app.steps import RunPaths, RunSummary, item_features, read_and_prepare, timed
from recsys_spark.config import Config
from recsys_spark.evaluation.holdout import compared_models, evaluate, manifest_metrics
from recsys_spark.evaluation.tune import tune
from recsys_spark.storage.published import published_manifests
from recsys_spark.storage.reports import write_evaluation, write_tune


def report_dir_of(paths: RunPaths, report_dir: str | None) -> str:
    """Where `evaluate` writes report.md and its plots (--report-dir, default ./reports/RUN_DATE)."""
    return report_dir or f"reports/{paths.run_date}"


def best_conf_of(paths: RunPaths, best_conf: str | None) -> str:
    """Where `tune` writes the best conf (--best-conf, default OUTPUT/tune/best.yaml)."""
    return best_conf or f"{paths.output}/tune/best.yaml"


def run_evaluate(spark, cfg: Config, source: str | None, paths: RunPaths, report_dir: str | None) -> RunSummary:
    """Split, train and score every compared model; write OUTPUT/metrics and the report (with the
    churn of the output's published dates)."""
    summary = RunSummary(paths)
    with timed("prepare", summary.timings):
        prepared, _ = read_and_prepare(spark, cfg, source)
    with timed("evaluate", summary.timings):
        result = evaluate(prepared, cfg, paths.run_date, item_features(spark, cfg, compared_models(cfg)))
    with timed("write", summary.timings):
        files = write_evaluation(result, f"{paths.output}/metrics", report_dir_of(paths, report_dir),
                                 published_manifests(spark, paths.output))
    summary.manifest = {"metrics": manifest_metrics(result), "files": files}
    return summary


def run_tune(spark, cfg: Config, source: str | None, paths: RunPaths, best_conf: str | None) -> RunSummary:
    """Grid or random search on a validation split; write the best conf and the trials."""
    summary = RunSummary(paths)
    with timed("prepare", summary.timings):
        prepared, _ = read_and_prepare(spark, cfg, source)
    with timed("tune", summary.timings):
        result = tune(prepared, cfg, item_features(spark, cfg))
    files = write_tune(spark, result, best_conf_of(paths, best_conf), f"{paths.output}/tune/trials")
    summary.manifest = {"best": {result.objective: result.best_value, **result.best_overrides}, "files": files,
                        "trials": result.trials}
    return summary
