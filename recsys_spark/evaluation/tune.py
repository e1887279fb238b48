"""Search over conf keys on a validation split carved from the evaluate train split: a grid, random
points of it, or successive halving (evaluation/halving.py) over points sampled from a space.

The evaluate test split is never looked at: with the same evaluate.* settings the splits are
the same, so `evaluate` with the best conf gives an unbiased held-out score afterwards.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame

from recsys_spark.config import Config, ConfigError, key_parts, parse_param, with_overrides  # noqa: F401 (parse_param, with_overrides: re-exported)
from recsys_spark.config.search_space import DEFAULT_SPACES, RESOURCE_KEYS, is_range
from recsys_spark.config.secrets import redact
from recsys_spark.data.prepare import PreparedData
from recsys_spark.data.schema import USER_ID
from recsys_spark.evaluation.halving import successive_halving
from recsys_spark.evaluation.holdout import recommend_for, split_prepared, with_ids
from recsys_spark.evaluation.metrics import per_user_metric, ranking_metrics
from recsys_spark.models.registry import train_model, with_resolved_kind

log = logging.getLogger(__name__)


@dataclass
class TuneResult:
    best_overrides: dict  # conf key -> value of the best trial (secret-looking keys redacted; see best_config)
    best_value: float
    objective: str
    trials: pd.DataFrame  # trial, [rung, resource,] <one column per key>, <ranking metrics at k>, seconds
    best_config: Config
    method: str = "grid"
    space: dict = field(default_factory=dict)  # conf key -> list or range, as searched (redacted)
    history: list = field(default_factory=list)  # per trial: trial, [rung, resource,] params, objective, seconds
    stopped_by_budget: bool = False  # halving: the budget ran out before the last rung finished
    seconds: float = 0.0
    fit_interactions: int = 0  # interactions the trials trained on (the rest of their split is validation)
    selection: dict = field(default_factory=dict)  # halving: the best point against the configured one (paired_gain)


def search_space(cfg: Config) -> dict:
    """The space searched: tune.params, or for halving without them the default space of model.kind."""
    if cfg.tune.params or cfg.tune.method != "halving":
        return dict(cfg.tune.params)
    return dict(DEFAULT_SPACES.get(cfg.model.kind, {}))


def conf_value(cfg: Config, key: str):
    """The value of a dotted conf key (model.wals.reg) in cfg."""
    node = cfg.to_dict()
    for part in key_parts(key):
        node = node[part]
    return node


def search_points(cfg: Config) -> list[dict]:
    """The overrides to try: the whole grid, `tune.trials` points drawn from it (seeded), or for
    halving `tune.trials` points sampled from the space (seeded), the configured values first."""
    space = search_space(cfg)
    keys = list(space)
    if not keys:
        raise ConfigError("tune.params is empty; give conf keys and values, e.g. --set 'tune.params={model.rank: [32, 64]}'")
    if cfg.tune.method == "halving":
        return sample_points(cfg, space, cfg.tune.trials, cfg.evaluate.seed)
    ranges = [key for key in keys if is_range(space[key])]
    if ranges:
        raise ConfigError(f"tune.params.{ranges[0]} is a range, which only tune.method=halving samples; "
                          "give a list of values for grid or random")
    grid = [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]
    if cfg.tune.method == "random" and cfg.tune.trials < len(grid):
        picked = np.random.default_rng(cfg.evaluate.seed).choice(len(grid), size=cfg.tune.trials, replace=False)
        grid = [grid[i] for i in sorted(picked)]
    return grid


def sample_points(cfg: Config, space: dict, n: int, seed: int) -> list[dict]:
    """`n` distinct points of `space`: the configured values, then draws (a range uniformly, on a
    log scale with log: true, to 4 significant digits; a list uniformly), seeded."""
    rng = np.random.default_rng(seed)
    points = [{key: conf_value(cfg, key) for key in space}]
    for _ in range(50 * n):  # a small space of lists may hold fewer than n distinct points
        if len(points) >= n:
            break
        point = {key: _draw(rng, spec) for key, spec in space.items()}
        if point not in points:
            points.append(point)
    return points


def _draw(rng: np.random.Generator, spec):
    if not is_range(spec):
        return spec[int(rng.integers(len(spec)))]
    low, high = float(spec["low"]), float(spec["high"])
    value = math.exp(rng.uniform(math.log(low), math.log(high))) if spec.get("log") else rng.uniform(low, high)
    return float(f"{value:.4g}")


def trial_configs(cfg: Config) -> tuple[list[dict], list[Config]]:
    """The search points and their validated configs; raises ConfigError before any work starts."""
    if cfg.evaluate.split == "time" and cfg.tune.validation_cutoff is None:
        raise ConfigError("tune.validation_cutoff is required with evaluate.split=time; "
                          "set it to a time before evaluate.cutoff")
    points = search_points(cfg)
    return points, [with_overrides(cfg, point) for point in points]


def tune(prepared: PreparedData, cfg: Config, item_features: DataFrame | None = None,
         clock=time.monotonic, within_train: bool = True) -> TuneResult:
    """Train models of the search points on the fit part of train and score them on validation:
    every point (grid, random), or by successive halving within tune.budget_seconds (halving).

    within_train: carve fit and validation from the evaluate train split, so the evaluate test
    split stays unseen (a study); False carves them from all of `prepared`, for a model that then
    trains on all of it (the nightly run): parameters found on 80% of the data, not 64%, carry
    over better to 100% (EASE's best reg drifts up as the data shrinks).
    The objective (tune.objective, e.g. ndcg@10) is maximised; ties go to the earlier trial.
    """
    began = clock()
    cfg = with_resolved_kind(cfg, prepared.n_items)  # auto searches the space of the kind it trains
    metric, k = cfg.tune.objective.split("@")
    k = int(k)
    points, configs = trial_configs(cfg)
    train = split_prepared(prepared, cfg.evaluate)[0] if within_train else prepared
    fit, valid = split_prepared(train, cfg.evaluate, seed_offset=1, cutoff=cfg.tune.validation_cutoff)
    valid_ids = with_ids(valid, prepared).persist()

    per_user: dict[int, pd.Series] = {}  # trial number -> the objective per validation user

    def measure(trial_cfg: Config) -> dict:
        model = train_model(fit, trial_cfg, item_features)
        recs = recommend_for(model, fit, valid, trial_cfg, k).persist()
        rows = ranking_metrics(recs, valid_ids, [k], relevance_threshold=cfg.evaluate.relevance_threshold)
        values = per_user_metric(recs, valid_ids, metric, k, relevance_threshold=cfg.evaluate.relevance_threshold)
        per_user[len(records) + 1] = values.toPandas().set_index(USER_ID)["value"]
        recs.unpersist()
        return {f"{r.metric}@{k}": r.value for r in rows if r.k == k}

    records, history = [], []

    def record(index: int, values: dict, seconds: float, **extra) -> None:
        shown = redact(points[index])  # a secret-looking key's values never reach the trials table or the log
        number = len(records) + 1
        records.append({"trial": number, **extra, **{key: str(value) for key, value in shown.items()}, **values,
                        "seconds": round(seconds, 1)})
        history.append({"trial": number, **extra, "params": shown, cfg.tune.objective: values[cfg.tune.objective],
                        "seconds": round(seconds, 1)})
        log.info("tune: trial %d %s%s -> %s = %.4f", number, shown, "".join(f" {name}={v}" for name, v in extra.items()),
                 cfg.tune.objective, values[cfg.tune.objective])

    stopped = False
    if cfg.tune.method == "halving":
        resource_key = RESOURCE_KEYS.get(cfg.model.kind)
        full = conf_value(cfg, resource_key) if resource_key else None

        def run_trial(index: int, resource: int | None) -> float:
            started = time.time()
            trial_cfg = configs[index] if resource is None else with_overrides(configs[index], {resource_key: resource})
            values = measure(trial_cfg)
            sized = {} if resource is None else {"resource": resource}  # rung: filled in below
            record(index, values, time.time() - started, rung=None, **sized)
            return values[cfg.tune.objective]

        remaining = cfg.tune.budget_seconds - (clock() - began)  # the split counts against the budget
        halving = successive_halving(list(range(len(points))), run_trial, full, cfg.tune.eta, remaining, clock)
        for rec, hist, trial in zip(records, history, halving.trials):
            rec["rung"] = hist["rung"] = trial.rung
        best, best_value, stopped = halving.best, halving.value, halving.stopped_by_budget
        selection = configured_or_best(halving.trials, best, per_user, cfg.tune.min_gain_se)
        if selection.get("kept_configured"):
            best, best_value = 0, selection["configured_value"]
            log.info("tune: keeping the configured values: the best point's gain %.4f is under %.2f standard "
                     "errors (%s) of the paired per-user differences", selection["gain"], selection["bar_se"],
                     selection["standard_error"])
    else:
        for index, trial_cfg in enumerate(configs):
            started = time.time()
            record(index, measure(trial_cfg), time.time() - started)
        objective = np.array([h[cfg.tune.objective] for h in history])
        best = int(objective.argmax())
        best_value = float(objective[best])
        selection = {}
    for frame in (valid_ids, valid, fit.interactions) + ((train.interactions,) if within_train else ()):
        frame.unpersist()
    trials = pd.DataFrame(records)
    log.info("tune: best %s = %.4f with %s%s", cfg.tune.objective, best_value, redact(points[best]),
             " (the budget ran out)" if stopped else "")
    return TuneResult(redact(points[best]), best_value, cfg.tune.objective, trials, configs[best],
                      method=cfg.tune.method, space=redact(search_space(cfg)), history=history,
                      stopped_by_budget=stopped, seconds=round(clock() - began, 1),
                      fit_interactions=int(fit.stats["interactions"]), selection=selection)


def paired_gain(challenger: pd.Series, incumbent: pd.Series) -> tuple[float, float]:
    """(mean, standard error) of challenger - incumbent over the users both have values for."""
    diff = (challenger - incumbent).dropna().to_numpy(dtype=np.float64)
    if diff.size < 2:
        return float(diff.mean()) if diff.size else 0.0, math.inf
    return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(diff.size))


def configured_or_best(trials: list, best: int, per_user: dict, min_gain_se: float) -> dict:
    """Whether the halving winner `best` beats point 0 (the configured values) beyond the noise of
    the validation split, compared at the highest rung both reached: its mean per-user gain must be
    at least `bar` standard errors of the paired differences, where `bar` is min_gain_se for one
    challenger, raised for m challengers at that rung by Bonferroni's correction (the best of m
    noisy gains is biased upwards: the winner's curse). A gain below the bar does not carry over to
    new data, so the configured values stay. {} when best is point 0 or min_gain_se is 0."""
    if best == 0 or min_gain_se <= 0:
        return {}
    at = {(trial.point, trial.rung): trial for trial in trials}
    rung = max(r for (point, r) in at if point == 0 and (best, r) in at)
    challenger, configured = at[(best, rung)], at[(0, rung)]
    gain, se = paired_gain(per_user[challenger.number], per_user[configured.number])
    rivals = sum(1 for (point, r) in at if r == rung and point != 0)
    bar = bonferroni_bar(min_gain_se, rivals)
    configured_value = [t.value for t in trials if t.point == 0][-1]  # at its highest rung
    return {"kept_configured": not gain >= bar * se, "rung": rung, "gain": round(gain, 6),
            "standard_error": round(se, 6) if math.isfinite(se) else None, "min_gain_se": min_gain_se,
            "challengers": rivals, "bar_se": round(bar, 3), "configured_value": configured_value}


def bonferroni_bar(z: float, comparisons: int) -> float:
    """The one-sided normal quantile of the level z stands for, shared among `comparisons`."""
    normal = NormalDist()
    return normal.inv_cdf(1 - (1 - normal.cdf(z)) / max(1, comparisons))
