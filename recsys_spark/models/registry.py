"""Pick the trainer named by model.kind; every trainer returns a FactorModel."""

from __future__ import annotations

import importlib
import logging
import time

from recsys_spark.config import Config
from recsys_spark.factor_model import FactorModel
from recsys_spark.prepare import PreparedData

log = logging.getLogger(__name__)

# model.kind -> module under recsys_spark.models exposing train(prepared, model_cfg, train_cfg)
TRAINERS = {
    "als": "spark_als",
    "wals": "wals",
    "mf": "mf",
    "two_tower": "two_tower",
    "autoencoder": "autoencoder",
    "content": "content",
    "popularity": "popularity",
}


def train_model(prepared: PreparedData, cfg: Config) -> FactorModel:
    """Train the model named by cfg.model.kind on prepared interactions."""
    kind = cfg.model.kind
    module = importlib.import_module(f"recsys_spark.models.{TRAINERS[kind]}")
    started = time.time()
    log.info("train: %s on %d interactions, rank %d", kind, prepared.stats.get("interactions", -1), cfg.model.rank)
    model = module.train(prepared, cfg.model, cfg.train)
    seconds = time.time() - started
    model.metadata.setdefault("kind", kind)
    model.metadata["train_seconds"] = round(seconds, 3)
    log.info("train: %s done in %.1fs", kind, seconds)
    return model
