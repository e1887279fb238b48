"""Pick the trainer named by model.kind; every trainer returns a FactorModel.

Each trainer module exposes `train(prepared, model_cfg, train_cfg, item_features=None)`;
`item_features` (item_id, features) is read by the caller when ModelConfig.uses_item_features().
"""

from __future__ import annotations

import dataclasses
import logging
import time

from pyspark.sql import DataFrame

from recsys_spark.config import MODEL_KINDS, WARM_START_KINDS, Config
from recsys_spark.data.prepare import PreparedData
from recsys_spark.errors import TooFewIdsError
from recsys_spark.models import autoencoder, content, ease, mf, popularity, spark_als, two_tower, wals
from recsys_spark.models.factor_model import FactorModel
from recsys_spark.models.warm_start import WarmStart

log = logging.getLogger(__name__)

TRAINERS = {
    "als": spark_als.train,
    "wals": wals.train,
    "mf": mf.train,
    "two_tower": two_tower.train,
    "autoencoder": autoencoder.train,
    "content": content.train,
    "ease": ease.train,
    "popularity": popularity.train,
}
assert set(TRAINERS) | {"auto"} == set(MODEL_KINDS), "every model.kind needs a trainer"


def resolve_kind(kind: str, n_items: int, driver_max_bytes: int) -> str:
    """The trainer model.kind names: auto is ease when its items x items matrices fit the driver
    budget (measured the better model on sparse data, level on dense: docs/benchmarks-models.md),
    else wals, whose memory grows with the interactions instead of the catalog squared."""
    if kind != "auto":
        return kind
    return "ease" if ease.driver_bytes(n_items) <= driver_max_bytes else "wals"


def with_resolved_kind(cfg: Config, n_items: int) -> Config:
    """cfg with model.kind=auto replaced by the kind it trains for a catalog of `n_items` (tuning
    searches, and records, the space of the model that really trains)."""
    kind = resolve_kind(cfg.model.kind, n_items, cfg.train.driver_max_bytes)
    return cfg if kind == cfg.model.kind else dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, kind=kind))


def train_model(prepared: PreparedData, cfg: Config, item_features: DataFrame | None = None,
                warm: WarmStart | None = None) -> FactorModel:
    """Train the model named by cfg.model.kind on prepared interactions (at least two users and two
    items: TooFewIdsError otherwise), from `warm.model` when it has one (WARM_START_KINDS only); the
    metadata's "warm_start" records `warm` when given."""
    require_two_users_and_items(prepared, cfg)
    kind = resolve_kind(cfg.model.kind, prepared.n_items, cfg.train.driver_max_bytes)
    if kind != cfg.model.kind:
        log.info("train: model.kind=auto trains %s (%d items: EASE needs %.2f GiB of the %.2f GiB driver budget)",
                 kind, prepared.n_items, ease.driver_bytes(prepared.n_items) / 2**30, cfg.train.driver_max_bytes / 2**30)
    started = time.time()
    log.info("train: %s on %d interactions, rank %d", kind, prepared.stats.get("interactions", -1), cfg.model.rank)
    if warm is not None and warm.model is not None and kind in WARM_START_KINDS:
        model = TRAINERS[kind](prepared, cfg.model, cfg.train, item_features, initial=warm.model)
    else:
        model = TRAINERS[kind](prepared, cfg.model, cfg.train, item_features)
    if warm is not None:
        model.metadata["warm_start"] = {**warm.record(), **model.metadata.get("warm_start", {})}
    seconds = time.time() - started
    model.metadata.setdefault("kind", kind)
    model.metadata["train_seconds"] = round(seconds, 3)
    log.info("train: %s done in %.1fs", kind, seconds)
    return model


def require_two_users_and_items(prepared: PreparedData, cfg: Config) -> None:
    """Every trainer goes through here: with one user every item is already seen, with one item there
    is nothing else to recommend or to compare it with, so some trainers fail and none can help."""
    if prepared.n_users >= 2 and prepared.n_items >= 2:
        return
    filters = cfg.prepare.min_user_interactions > 1 or cfg.prepare.min_item_interactions > 1
    raise TooFewIdsError(
        f"only {prepared.n_users} user{'s' if prepared.n_users != 1 else ''} and {prepared.n_items} "
        f"item{'s' if prepared.n_items != 1 else ''} are left to train on"
        + (" after prepare.min_user_interactions / min_item_interactions" if filters else "")
        + ", but recommending needs at least two of each: check that the input is the full export"
        + (" or lower those filters" if filters else ""))
