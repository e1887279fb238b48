"""The tuned parameters of the nightly run: when they are stale, and the record a manifest keeps.

`run` with tune.nightly reuses the parameters recorded in the newest published manifest while they
fit: same model kind, search space and objective, and tuned fewer than tune.max_age_days before
the run date. Otherwise it tunes again (evaluation/tune.py, by halving). No I/O here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from recsys_spark.config import Config, with_overrides
from recsys_spark.config.secrets import redact
from recsys_spark.evaluation.tune import TuneResult, search_space


def halving_config(cfg: Config) -> Config:
    """cfg with tune.method=halving: the nightly run searches by successive halving whatever the
    method `recsys-spark tune` is set to."""
    return dataclasses.replace(cfg, tune=dataclasses.replace(cfg.tune, method="halving"))


def space_record(cfg: Config) -> dict:
    """The space the nightly run searches, as JSON holds it (what a record is compared by)."""
    return json.loads(json.dumps(redact(search_space(halving_config(cfg)))))


def stale_reason(record: dict | None, cfg: Config, run_date: str) -> str | None:
    """Why `record` (a manifest's `tuned`) cannot serve the run date, or None when it can."""
    kind = cfg.model.kind
    if not record or record.get("model_kind") != kind or "params" not in record:
        return f"no tuned parameters of model.kind={kind} published in the last {cfg.tune.max_age_days} days"
    if record.get("space") != space_record(cfg):
        return f"the search space changed since the parameters tuned on {record['tuned_on']}"
    if record.get("objective") != cfg.tune.objective:
        return f"the objective changed since the parameters tuned on {record['tuned_on']}"
    age = age_days(record, run_date)
    if age >= cfg.tune.max_age_days:
        return (f"the parameters tuned on {record['tuned_on']} are {age} days old "
                f"(tune.max_age_days={cfg.tune.max_age_days})")
    return None


def age_days(record: dict, run_date: str) -> int:
    return (dt.date.fromisoformat(run_date) - dt.date.fromisoformat(record["tuned_on"])).days


def tuned_record(result: TuneResult, cfg: Config, run_date: str, run_id: str) -> dict:
    """The manifest's `tuned` of a run that tuned: the winner, where and how it was found, every trial."""
    return {"model_kind": cfg.model.kind, "params": result.best_overrides, "tuned_on": run_date,
            "tuned_in_run": run_id, "tuned_now": True, "objective": result.objective, "value": result.best_value,
            "space": space_record(cfg), "method": result.method, "trials_run": len(result.history),
            "seconds": result.seconds, "budget_seconds": cfg.tune.budget_seconds,
            "stopped_by_budget": result.stopped_by_budget, "fit_interactions": result.fit_interactions,
            "selection": result.selection, "trials": result.history}


def reused_record(record: dict, run_date: str) -> dict:
    """The manifest's `tuned` of a run that reused `record`: the same parameters, without the trials."""
    kept = {key: value for key, value in record.items() if key not in ("trials", "tuned_now", "age_days")}
    return {**kept, "tuned_now": False, "age_days": age_days(record, run_date)}


def applied(cfg: Config, record: dict) -> Config:
    """cfg with the recorded parameters set."""
    return with_overrides(cfg, record["params"])
