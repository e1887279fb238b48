"""Hold-out evaluation: split the prepared interactions, train each model on train, score the
test users, compute metrics. No I/O here: storage/reports.py writes the results.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.config import Config, EvaluateConfig
from recsys_spark.data.prepare import PreparedData
from recsys_spark.data.schema import FACTORS, ITEM_ID, ITEM_INDEX, TS, USER_ID, USER_INDEX, WEIGHT
from recsys_spark.data.split import SplitError, split
from recsys_spark.evaluation.metrics import PREDICTION, MetricRow, catalog_metrics, ranking_metrics, rating_metrics
from recsys_spark.evaluation.report import popularity_profile, score_histogram
from recsys_spark.models.factor_model import FactorModel
from recsys_spark.models.registry import train_model
from recsys_spark.serving.scoring import recommend

log = logging.getLogger(__name__)

METRICS_SCHEMA = "run_id string, model string, metric string, k int, value double"


@dataclass
class EvaluationResult:
    metrics: DataFrame  # run_id, model, metric, k, value
    profiles: pd.DataFrame  # model, bucket, interactions_share, recs_share (small)
    histograms: pd.DataFrame  # model, left, right, count (small)
    details: dict = field(default_factory=dict)


def split_prepared(prepared: PreparedData, cfg: EvaluateConfig, seed_offset: int = 0,
                   cutoff=None) -> tuple[PreparedData, DataFrame]:
    """(train as PreparedData with the same id maps, test interactions of users known in train).

    Test rows of users absent from train (possible with a time split) are dropped and counted
    in the train stats as `test_rows_cold_users`: no model has factors for them.
    """
    train, test = split(prepared.interactions, cfg.split, fraction=cfg.fraction, min_history=cfg.min_history,
                        n=cfg.n, cutoff=cfg.cutoff if cutoff is None else cutoff, seed=cfg.seed + seed_offset,
                        user_col=USER_INDEX, item_col=ITEM_INDEX, ts_col=TS)
    train = train.persist()
    test_all = test.persist()
    test = test_all.join(train.select(USER_INDEX).distinct(), USER_INDEX, "left_semi").persist()
    n_train, n_test, n_test_all = train.count(), test.count(), test_all.count()
    test_all.unpersist()
    if n_train == 0 or n_test == 0:
        raise SplitError(f"the {cfg.split} split left {n_train} train and {n_test} test interactions of known users; "
                         "change evaluate.fraction / min_history / n / cutoff")
    stats = {"interactions": n_train, "test_interactions": n_test, "test_rows_cold_users": n_test_all - n_test,
             "users": prepared.n_users, "items": prepared.n_items}
    log.info("split %s: %d train, %d test interactions (%d test rows of users not in train dropped)",
             cfg.split, n_train, n_test, n_test_all - n_test)
    return PreparedData(train, prepared.user_ids, prepared.item_ids, prepared.n_users, prepared.n_items, stats), test


def compared_models(cfg: Config) -> list[str]:
    """evaluate.models, or the configured model.kind and popularity when the list is empty."""
    return list(dict.fromkeys(cfg.evaluate.models or [cfg.model.kind, "popularity"]))


def with_model_kind(cfg: Config, kind: str) -> Config:
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, kind=kind))


def recommend_for(model: FactorModel, train: PreparedData, test: DataFrame, cfg: Config, top_n: int) -> DataFrame:
    """Top-`top_n` unseen items (user_id, rank, item_id, score) for the users in `test` only."""
    users = model.user_factors.join(test.select(USER_INDEX).distinct(), USER_INDEX, "left_semi")
    scoped = FactorModel(users, model.item_factors, model.metadata)
    seen = train.interactions.select(USER_INDEX, ITEM_INDEX, WEIGHT)
    return recommend(scoped, seen, dataclasses.replace(cfg.score, top_n=top_n))


def with_ids(interactions: DataFrame, prepared: PreparedData) -> DataFrame:
    """user_id, item_id, weight of indexed interactions."""
    return (interactions.join(prepared.user_ids, USER_INDEX).join(prepared.item_ids, ITEM_INDEX)
            .select(USER_ID, ITEM_ID, WEIGHT))


def predict_pairs(model: FactorModel, pairs: DataFrame) -> DataFrame:
    """user_index, item_index, prediction = u . v for the pairs whose user and item have factors."""
    users = model.user_factors.select(USER_INDEX, F.col(FACTORS).alias("_u"))
    items = model.item_factors.select(ITEM_INDEX, F.col(FACTORS).alias("_v"))
    products = F.zip_with("_u", "_v", lambda a, b: (a * b).cast("double"))
    dot = F.aggregate(products, F.lit(0.0), lambda acc, x: acc + x)
    return (pairs.select(USER_INDEX, ITEM_INDEX).join(users, USER_INDEX).join(items, ITEM_INDEX)
            .select(USER_INDEX, ITEM_INDEX, dot.alias(PREDICTION)))


def is_explicit(cfg: Config, kind: str) -> bool:
    """Models that predict the weight itself, so that RMSE/MAE mean something."""
    return kind == "mf" or (kind == "als" and not cfg.model.als.implicit)


def evaluate(prepared: PreparedData, cfg: Config, run_id: str, item_features: DataFrame | None = None,
             report: bool = True) -> EvaluationResult:
    """Split, train every compared model on train, score the test users, compute metrics.

    Returns the metrics as a Spark DataFrame (run_id, model, metric, k, value) and, with `report`,
    the small aggregates the report plots (empty frames without: the nightly run keeps only metrics).
    """
    ecfg = cfg.evaluate
    train, test = split_prepared(prepared, ecfg)
    test_ids = with_ids(test, prepared).persist()
    train_items = train.interactions.join(prepared.item_ids, ITEM_INDEX).select(ITEM_ID)
    rows, profiles, histograms = [], [], []
    details = {"run_id": run_id, "split": _describe_split(ecfg), "train_interactions": train.stats["interactions"],
               "test_interactions": train.stats["test_interactions"],
               "test_rows_of_users_not_in_train": train.stats["test_rows_cold_users"], "ks": ecfg.ks}
    for kind in compared_models(cfg):
        started = time.time()
        model_cfg = with_model_kind(cfg, kind)
        model = train_model(train, model_cfg, item_features)
        recs = recommend_for(model, train, test, model_cfg, max(ecfg.ks)).persist()
        model_rows = ranking_metrics(recs, test_ids, ecfg.ks, relevance_threshold=ecfg.relevance_threshold)
        model_rows += catalog_metrics(recs, train_items, ecfg.ks, prepared.n_items)
        if is_explicit(model_cfg, kind):
            model_rows += rating_metrics(predict_pairs(model, test), test, USER_INDEX, ITEM_INDEX)
        if report:
            profiles.append(popularity_profile(recs, train_items, max(ecfg.ks)).assign(model=kind))
            histograms.append(score_histogram(recs).assign(model=kind))
        recs.unpersist()
        rows += [(run_id, kind, r.metric, r.k, r.value) for r in model_rows]
        details[f"seconds_{kind}"] = round(time.time() - started, 1)
        log.info("evaluate: %s %s", kind, _headline(model_rows, ecfg.ks))
    test_ids.unpersist()
    test.unpersist()
    train.interactions.unpersist()
    spark = prepared.interactions.sparkSession
    return EvaluationResult(spark.createDataFrame(rows, METRICS_SCHEMA),
                            pd.concat(profiles or [pd.DataFrame()], ignore_index=True),
                            pd.concat(histograms or [pd.DataFrame()], ignore_index=True), details)


def manifest_metrics(result: EvaluationResult) -> dict:
    """{model: {metric@k: value}} for the run manifest (a few dozen numbers)."""
    out: dict = {}
    for row in result.metrics.collect():
        label = row["metric"] if row["k"] is None else f"{row['metric']}@{row['k']}"
        out.setdefault(row["model"], {})[label] = row["value"]
    return out


def _describe_split(cfg: EvaluateConfig) -> str:
    if cfg.split == "random":
        return f"random, fraction {cfg.fraction}, min_history {cfg.min_history}, seed {cfg.seed}"
    if cfg.split == "last_n":
        return f"last_n, n {cfg.n}, min_history {cfg.min_history}, seed {cfg.seed}"
    return f"time, cutoff {cfg.cutoff}"


def _headline(rows: list[MetricRow], ks: list[int]) -> str:
    k = 10 if 10 in ks else max(ks)
    return ", ".join(f"{r.metric}@{k}={r.value:.4f}" for r in rows if r.k == k and r.metric in ("ndcg", "recall", "map"))
