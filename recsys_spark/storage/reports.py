"""Writing the offline studies' results: the metrics table, the report files, the tuned conf."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from pyspark.sql import SparkSession

from recsys_spark.evaluation.holdout import EvaluationResult
from recsys_spark.evaluation.report import churn_history, render_report
from recsys_spark.evaluation.tune import TuneResult
from recsys_spark.storage import fs


def write_report(out_dir: str | Path, metrics: pd.DataFrame, profiles: pd.DataFrame, histograms: pd.DataFrame,
                 title: str = "Evaluation", details: dict | None = None,
                 churn: pd.DataFrame | None = None) -> list[Path]:
    """Write report.md and its PNG plots under the local directory `out_dir`; returns the files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in render_report(metrics, profiles, histograms, title, details, churn).items():
        (out / name).write_bytes(content)
        written.append(out / name)
    return written


def write_evaluation(result: EvaluationResult, metrics_path: str, report_dir: str,
                     manifests: list[dict] | None = None) -> list[str]:
    """Write the metrics table (Parquet partitioned by run_id; only this run's partition is
    replaced) and the Markdown report with its plots under the local directory `report_dir`;
    `manifests` (of the output's published dates) give the churn plot."""
    (result.metrics.write.mode("overwrite").option("partitionOverwriteMode", "dynamic")
     .partitionBy("run_id").parquet(metrics_path))
    metrics = result.metrics.drop("run_id").toPandas()
    files = write_report(report_dir, metrics, result.profiles, result.histograms,
                         title=f"Evaluation {result.details.get('run_id', '')}".strip(), details=result.details,
                         churn=churn_history(manifests or []))
    return [metrics_path, *map(str, files)]


def write_tune(spark: SparkSession, result: TuneResult, best_conf_path: str, trials_path: str) -> list[str]:
    """Write the best conf as YAML (loadable with --conf; secret-looking keys redacted, to be set
    again) and the trials as Parquet (overwrites both)."""
    header = (f"# best {result.objective} = {result.best_value:.4f} on the validation split with "
              + ", ".join(f"{k}={v}" for k, v in result.best_overrides.items()) + "\n")
    record = result.best_config.to_record()
    if record != result.best_config.to_dict():
        header += "# secret-looking keys are redacted (***): set them again with --set or in your own conf\n"
    fs.write_text(spark, best_conf_path, header + yaml.safe_dump(record, sort_keys=False))
    spark.createDataFrame(result.trials).coalesce(1).write.mode("overwrite").parquet(trials_path)
    return [best_conf_path, trials_path]
