"""Score a saved model on new input without retraining (`recsys-spark score --model DIR --input PATH`).

The input is prepared as usual (validated, quarantined, aggregated), then re-expressed in the
model's index space: users the model has not seen get factors by fold-in (recsys_spark/foldin.py),
items the model does not know are dropped (they cannot be recommended). The result is kept as the
run date's prepared data and model, so the score and similar stages and the audit run unchanged.
"""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark import fs, io
from recsys_spark.config import Config
from recsys_spark.factor_model import FactorModel
from recsys_spark.foldin import add_new_users
from recsys_spark.layout import QUARANTINE, table_path
from recsys_spark.pipeline import RunPaths, RunSummary, private_output, run_prepare, stage_score, timed, write_quarantine
from recsys_spark.prepare import PreparedData
from recsys_spark.schema import ITEM_ID, ITEM_INDEX, TS, USER_ID, USER_INDEX, WEIGHT

log = logging.getLogger(__name__)


def in_model_space(prepared: PreparedData, model: FactorModel) -> tuple[PreparedData, FactorModel]:
    """Fold in unknown users and map the interactions to the model's user and item indexes."""
    user_type = model.user_factors.schema[USER_ID].dataType
    item_type = model.item_factors.schema[ITEM_ID].dataType
    with_ids = (prepared.interactions.join(prepared.user_ids, USER_INDEX).join(prepared.item_ids, ITEM_INDEX)
                .select(F.col(USER_ID).cast(user_type).alias(USER_ID), F.col(ITEM_ID).cast(item_type).alias(ITEM_ID),
                        WEIGHT, TS)
                .persist())
    known_users = model.user_factors.select(USER_ID)
    new_users = with_ids.select(USER_ID).distinct().join(known_users, USER_ID, "left_anti").count()
    if new_users:
        model = add_new_users(model, with_ids.select(USER_ID, ITEM_ID, WEIGHT))
        model.metadata["folded_in_users"] = new_users
    model = FactorModel(model.user_factors.persist(), model.item_factors, model.metadata)
    user_map = model.user_factors.select(USER_INDEX, USER_ID)
    item_map = model.item_factors.select(ITEM_INDEX, ITEM_ID)
    interactions = (with_ids.join(user_map, USER_ID).join(item_map, ITEM_ID)
                    .select(USER_INDEX, ITEM_INDEX, WEIGHT, TS).persist())
    kept = interactions.count()
    stats = dict(prepared.stats, folded_in_users=new_users, interactions_in_model=kept,
                 interactions_with_unknown_items=prepared.stats["interactions"] - kept)
    log.info("refresh: %d new users folded in; %d of %d interactions on items the model knows",
             new_users, kept, prepared.stats["interactions"])
    space = PreparedData(interactions, user_map, item_map, user_map.count(), item_map.count(), stats,
                         prepared.rejected_rows)
    return space, model


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
