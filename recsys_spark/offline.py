"""Offline studies wired to storage: `recsys-spark evaluate` and `recsys-spark tune`."""

from __future__ import annotations

from recsys_spark.config import Config
from recsys_spark.evaluate import evaluate, manifest_metrics, write_evaluation
from recsys_spark.pipeline import RunPaths, RunSummary, run_prepare, timed
from recsys_spark.tune import tune, write_tune


def run_evaluate(spark, cfg: Config, source: str | None, paths: RunPaths, report_dir: str | None) -> RunSummary:
    """Split, train and score every compared model; write OUTPUT/metrics and the report."""
    summary = RunSummary(paths)
    with timed("prepare", summary.timings):
        prepared, _ = run_prepare(spark, cfg, source)
    with timed("evaluate", summary.timings):
        result = evaluate(prepared, cfg, run_id=paths.run_date)
    with timed("write", summary.timings):
        files = write_evaluation(result, f"{paths.output}/metrics", report_dir or f"reports/{paths.run_date}")
    summary.manifest = {"metrics": manifest_metrics(result), "files": files}
    return summary


def run_tune(spark, cfg: Config, source: str | None, paths: RunPaths, best_conf: str | None) -> RunSummary:
    """Grid or random search on a validation split; write the best conf and the trials."""
    summary = RunSummary(paths)
    with timed("prepare", summary.timings):
        prepared, _ = run_prepare(spark, cfg, source)
    with timed("tune", summary.timings):
        result = tune(prepared, cfg)
    files = write_tune(spark, result, best_conf or f"{paths.output}/tune/best.yaml", f"{paths.output}/tune/trials")
    summary.manifest = {"best": {result.objective: result.best_value, **result.best_overrides}, "files": files,
                        "trials": result.trials}
    return summary
