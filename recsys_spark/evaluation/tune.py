"""Search over conf keys on a validation split carved from the evaluate train split.

The evaluate test split is never looked at: with the same evaluate.* settings the splits are
the same, so `evaluate` with the best conf gives an unbiased held-out score afterwards.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame

from recsys_spark.config import Config, ConfigError, parse_param, with_overrides  # noqa: F401 (parse_param, with_overrides: re-exported)
from recsys_spark.config.secrets import redact
from recsys_spark.data.prepare import PreparedData
from recsys_spark.evaluation.holdout import recommend_for, split_prepared, with_ids
from recsys_spark.evaluation.metrics import ranking_metrics
from recsys_spark.models.registry import train_model

log = logging.getLogger(__name__)


@dataclass
class TuneResult:
    best_overrides: dict  # conf key -> value of the best trial (secret-looking keys redacted; see best_config)
    best_value: float
    objective: str
    trials: pd.DataFrame  # trial, <one column per key>, <ranking metrics at k>, seconds
    best_config: Config


def search_points(cfg: Config) -> list[dict]:
    """The overrides to try: the whole grid, or `tune.trials` points drawn from it (seeded)."""
    keys = list(cfg.tune.params)
    if not keys:
        raise ConfigError("tune.params is empty; give conf keys and values, e.g. --set 'tune.params={model.rank: [32, 64]}'")
    grid = [dict(zip(keys, values)) for values in itertools.product(*(cfg.tune.params[k] for k in keys))]
    if cfg.tune.method == "random" and cfg.tune.trials < len(grid):
        picked = np.random.default_rng(cfg.evaluate.seed).choice(len(grid), size=cfg.tune.trials, replace=False)
        grid = [grid[i] for i in sorted(picked)]
    return grid


def trial_configs(cfg: Config) -> tuple[list[dict], list[Config]]:
    """The search points and their validated configs; raises ConfigError before any work starts."""
    if cfg.evaluate.split == "time" and cfg.tune.validation_cutoff is None:
        raise ConfigError("tune.validation_cutoff is required with evaluate.split=time; "
                          "set it to a time before evaluate.cutoff")
    points = search_points(cfg)
    return points, [with_overrides(cfg, point) for point in points]


def tune(prepared: PreparedData, cfg: Config, item_features: DataFrame | None = None) -> TuneResult:
    """Train one model per search point on the fit part of train and score it on validation.

    The objective (tune.objective, e.g. ndcg@10) is maximised; ties go to the earlier trial.
    """
    metric, k = cfg.tune.objective.split("@")
    k = int(k)
    points, configs = trial_configs(cfg)
    train, _ = split_prepared(prepared, cfg.evaluate)
    fit, valid = split_prepared(train, cfg.evaluate, seed_offset=1, cutoff=cfg.tune.validation_cutoff)
    valid_ids = with_ids(valid, prepared).persist()
    records = []
    for number, (point, trial_cfg) in enumerate(zip(points, configs), start=1):
        started = time.time()
        model = train_model(fit, trial_cfg, item_features)
        recs = recommend_for(model, fit, valid, trial_cfg, k).persist()
        rows = ranking_metrics(recs, valid_ids, [k], relevance_threshold=cfg.evaluate.relevance_threshold)
        recs.unpersist()
        shown = redact(point)  # a secret-looking key's values never reach the trials table or the log
        record = {"trial": number, **{key: str(value) for key, value in shown.items()}}
        record.update({f"{r.metric}@{k}": r.value for r in rows if r.k == k})
        record["seconds"] = round(time.time() - started, 1)
        records.append(record)
        log.info("tune: trial %d/%d %s -> %s = %.4f", number, len(points), shown, cfg.tune.objective,
                 record[cfg.tune.objective])
    for frame in (valid_ids, valid, fit.interactions, train.interactions):
        frame.unpersist()
    trials = pd.DataFrame(records)
    best = int(trials[cfg.tune.objective].to_numpy().argmax())
    log.info("tune: best %s = %.4f with %s", cfg.tune.objective, trials[cfg.tune.objective][best],
             redact(points[best]))
    return TuneResult(redact(points[best]), float(trials[cfg.tune.objective][best]), cfg.tune.objective, trials,
                      configs[best])
