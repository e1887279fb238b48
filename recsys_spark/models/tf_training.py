"""Shared pieces of the TensorFlow trainers: seeding, validation split, batches, the epoch loop.

Everything here works on numpy arrays (no Spark), so the trainers' numerical cores stay
testable on their own.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Sequence

import numpy as np

from recsys_spark.kernels.tf_runtime import import_tensorflow
from recsys_spark.kernels.topk import top_n
from recsys_spark.models.driver_data import Interactions
from recsys_spark.models.progress import LoopProgress

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    """Seed Python, numpy and TensorFlow (Keras initialisers and dropout included)."""
    import_tensorflow()  # before keras, which imports it too
    import keras

    keras.utils.set_random_seed(seed)


def split_validation(data: Interactions, fraction: float, seed: int) -> tuple[Interactions, Interactions]:
    """Hold out a seeded random `fraction` of the interactions; users with one interaction keep it.

    Returns (train, validation); with fraction 0 the validation set is empty.
    """
    rng = np.random.default_rng(seed)
    held = rng.random(len(data)) < fraction
    counts = np.bincount(data.users, minlength=data.n_users)
    held &= counts[data.users] > 1
    return subset(data, ~held), subset(data, held)


def subset(data: Interactions, mask: np.ndarray) -> Interactions:
    """The interactions where `mask` is true."""
    return Interactions(data.users[mask], data.items[mask], data.weights[mask], data.n_users, data.n_items)


@dataclass
class Csr:
    """Rows (users) of item indexes and values, compressed."""
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    n_cols: int

    @classmethod
    def from_interactions(cls, data: Interactions) -> "Csr":
        order = np.lexsort((data.items, data.users))
        indptr = np.zeros(data.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(data.users, minlength=data.n_users), out=indptr[1:])
        return cls(indptr, data.items[order].astype(np.int32), data.weights[order].astype(np.float32), data.n_items)

    def dense(self, rows: np.ndarray) -> np.ndarray:
        """The given rows as a dense float32 (len(rows), n_cols) batch."""
        starts, stops = self.indptr[rows], self.indptr[rows + 1]
        lengths = stops - starts
        positions = np.repeat(stops - lengths.cumsum(), lengths) + np.arange(lengths.sum())
        out = np.zeros((len(rows), self.n_cols), dtype=np.float32)
        out[np.repeat(np.arange(len(rows)), lengths), self.indices[positions]] = self.values[positions]
        return out

    def select(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CSR (indptr, indices) of the given rows, as top_n takes for seen items."""
        starts, stops = self.indptr[rows], self.indptr[rows + 1]
        lengths = stops - starts
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        positions = np.repeat(stops - lengths.cumsum(), lengths) + np.arange(lengths.sum())
        return indptr, self.indices[positions]


def batches(n: int, batch_size: int, rng: np.random.Generator):
    """Index arrays of a seeded shuffle of range(n), `batch_size` at a time."""
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def recall_at_k(user_vectors: np.ndarray, item_factors: np.ndarray, users: np.ndarray,
                train: Csr, held_out: Csr, k: int = 20) -> float:
    """Mean over `users` of hits in the top `k` unseen items / min(k, held-out items)."""
    seen_indptr, seen_indices = train.select(users)
    top, _ = top_n(user_vectors, item_factors, k, seen_indptr, seen_indices)
    held_indptr, held_indices = held_out.select(users)
    rows = np.repeat(np.arange(len(users)), np.diff(held_indptr))
    hits = np.zeros(len(users))
    np.add.at(hits, rows, (top[rows] == held_indices[:, None]).any(axis=1))
    return float(np.mean(hits / np.minimum(k, np.diff(held_indptr))))


@dataclass
class EarlyStopping:
    """Keep the best weights seen so far; stop after `patience` epochs without improvement.

    `higher_is_better` picks the direction of the validation metric.
    """
    patience: int
    higher_is_better: bool = True
    best: float = field(default=float("nan"))
    best_epoch: int = 0
    best_weights: list = field(default_factory=list)
    _waited: int = 0

    def update(self, epoch: int, metric: float, variables) -> bool:
        """Record `metric` for `epoch`; return True when training should stop."""
        better = np.isnan(self.best) or (metric > self.best if self.higher_is_better else metric < self.best)
        if better:
            self.best, self.best_epoch, self._waited = metric, epoch, 0
            self.best_weights = [v.numpy().copy() for v in variables]
            return False
        self._waited += 1
        return self._waited >= self.patience

    def restore(self, variables) -> None:
        """Put the best weights back."""
        for var, value in zip(variables, self.best_weights):
            var.assign(value)


class EpochLog:
    """Logs loss, validation metric, seconds per epoch and the time left (to `epochs`) for one trainer."""

    def __init__(self, name: str, epochs: int):
        self.name = name
        self.history: list[dict] = []
        self._progress = LoopProgress(epochs)
        self._started = time.time()

    def epoch(self, epoch: int, loss: float, metric_name: str | None = None, metric: float | None = None) -> None:
        seconds = time.time() - self._started
        entry = {"epoch": epoch, "loss": round(float(loss), 6), "seconds": round(seconds, 3)}
        extra = ""
        if metric_name is not None:
            entry[metric_name] = round(float(metric), 6)
            extra = f", {metric_name} {metric:.4f}"
        self.history.append(entry)
        log.info("%s: epoch %d/%d loss %.5f%s, %.2fs, %s", self.name, epoch, self._progress.total, loss, extra, seconds,
                 self._progress.step(seconds))
        self._started = time.time()


class EpochsFit(NamedTuple):
    """What fit_epochs returns: the epoch whose weights were kept, and one history entry per epoch."""
    best_epoch: int
    history: list[dict]


def fit_epochs(name: str, epochs: int, train_epoch: Callable[[int], float], variables: Sequence,
               validate: Callable[[], float] | None = None, metric: str = "val", higher_is_better: bool = True,
               patience: int = 1) -> EpochsFit:
    """The epoch loop of every TensorFlow trainer, with early stopping on a validation metric.

    Runs `train_epoch(epoch)` (it returns the epoch's training loss) for epoch 1..`epochs`. With
    `validate` (it returns the validation `metric`), each epoch is followed by a validation, the
    weights of `variables` (tf.Variables, or anything with .numpy() and .assign()) are snapshotted
    whenever the metric improves (direction: `higher_is_better`), training stops after `patience`
    epochs without improvement and the best snapshot is put back at the end; best_epoch is then
    that epoch. Without `validate` every epoch runs, the last weights are kept and best_epoch is
    the last epoch. History entries: epoch, loss, seconds, and `metric` when validating.
    """
    stopper = EarlyStopping(patience, higher_is_better=higher_is_better)
    log_epochs = EpochLog(name, epochs)
    epoch = 0
    for epoch in range(1, epochs + 1):
        loss = train_epoch(epoch)
        if validate is None:
            log_epochs.epoch(epoch, loss)
            continue
        value = validate()
        log_epochs.epoch(epoch, loss, metric, value)
        if stopper.update(epoch, value, variables):
            break
    if validate is None:
        return EpochsFit(epoch, log_epochs.history)
    stopper.restore(variables)
    log.info("%s: best epoch %d, validation %s %.4f", name, stopper.best_epoch, metric, stopper.best)
    return EpochsFit(stopper.best_epoch or epoch, log_epochs.history)
