"""Score a saved model on new input without retraining (`recsys-spark score --model DIR --input PATH`).

The input is prepared as usual (validated, quarantined, aggregated), then re-expressed in the
model's index space (recsys_spark/model_space.py: new users folded in, unknown items dropped). The
result is kept as the run date's prepared data and model, so the score and similar stages and the
audit run unchanged.
"""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession

from recsys_spark import fs, io
from recsys_spark.config import Config
from recsys_spark.factor_model import FactorModel
from recsys_spark.layout import QUARANTINE, table_path
from recsys_spark.model_space import in_model_space
from recsys_spark.pipeline import RunPaths, RunSummary, private_output, run_prepare, stage_score, timed, write_quarantine

log = logging.getLogger(__name__)


def score_new_input(spark: SparkSession, cfg: Config, paths: RunPaths, model_dir: str, source: str) -> RunSummary:
    """Prepare `source`, fold in its new users against the model at `model_dir`, stage user_recs."""
    if fs.qualify(spark, model_dir) == fs.qualify(spark, paths.model):
        raise FileNotFoundError(f"--model {model_dir} is the run date's own model directory, which scoring new "
                                "input rewrites; pass the model of an earlier run (e.g. OUTPUT/_runs/DATE/model)")
    summary = RunSummary(paths)
    private_output(spark, cfg, paths.output)
    with timed("prepare", summary.timings):
        prepared, quarantine = run_prepare(spark, cfg, source)
        write_quarantine(spark, quarantine, table_path(paths.layout.stage, QUARANTINE), prepared)
    with timed("fold-in", summary.timings):
        prepared, model = in_model_space(prepared, FactorModel.load(spark, model_dir))
        model.save(paths.model)
        io.save_prepared(prepared, paths.prepared)
    scored = stage_score(spark, cfg, paths, None)
    scored.timings = {**summary.timings, **scored.timings}
    return scored
