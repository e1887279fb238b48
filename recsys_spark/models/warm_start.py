"""Warm start: an earlier model's factor rows carried over to today's indexes, matched by external id.

Kept users and items keep their rows, new ones get the rows a cold start would give them (`fill`),
gone ones are dropped. `reconcile_rows` is the pure numpy part. The driver's trainer takes the
earlier model's ids and rows as arrays (`EarlierModel.rows`: storage/stores.py reads them from the
saved model's Parquet on the driver, no Spark job) and today's id maps (`id_maps`, two small
collections run beside the interactions'), and `aligned_rows` applies it to users and items; the
executor engine joins the earlier model's tables instead (`EarlierModel.tables`, models/wals_spark.py).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame

from recsys_spark.data.schema import FACTORS, ITEM_ID, ITEM_INDEX, USER_ID, USER_INDEX
from recsys_spark.models.factor_model import FactorModel, ModelInfo, factor_rows


@dataclass(frozen=True)
class IdRows:
    """Factor rows on the driver with the external id of each: rows[r] belongs to ids[r]."""
    ids: np.ndarray
    rows: np.ndarray  # float32 (len(ids), width)


@dataclass(frozen=True)
class EarlierModel:
    """The model a warm start begins from, read only as far as the trainer needs it.

    metadata: the model's metadata (what decides whether it can be used).
    tables(): the model's factor tables in Spark (the executor engine joins them by id).
    rows(width): its (users, items) IdRows on the driver; a ValueError when a row is not of `width`.
    storage/stores.earlier_model gives one for a saved model (rows() read from its Parquet on the
    driver, tables() only when called); `of` wraps a model in memory (rows() collect its tables).
    """
    metadata: dict
    tables: Callable[[], FactorModel]
    rows: Callable[[int], tuple[IdRows, IdRows]]

    @property
    def kind(self) -> str:
        return self.metadata.get("kind", "unknown")

    @property
    def info(self) -> ModelInfo:
        return ModelInfo.from_metadata(self.metadata)

    @classmethod
    def of(cls, model: FactorModel) -> "EarlierModel":
        """A model in memory: tables() is it, rows() collects its id and factor columns (two Spark jobs)."""
        def rows(width: int) -> tuple[IdRows, IdRows]:
            plans = [model.user_factors.select(USER_ID, FACTORS), model.item_factors.select(ITEM_ID, FACTORS)]
            with ThreadPoolExecutor(2) as pool:
                users, items = pool.map(lambda plan: plan.toArrow(), plans)
            return id_rows(users, USER_ID, width, "user"), id_rows(items, ITEM_ID, width, "item")

        return cls(model.metadata, lambda: model, rows)


def as_earlier(initial: "FactorModel | EarlierModel") -> EarlierModel:
    """A trainer's `initial` as an EarlierModel (a FactorModel is wrapped with EarlierModel.of)."""
    return initial if isinstance(initial, EarlierModel) else EarlierModel.of(initial)


def id_rows(table: pa.Table, id_col: str, width: int, name: str) -> IdRows:
    """IdRows from an Arrow table of (id_col, factors list<float>): numbers stay numbers, text becomes
    objects; a ValueError naming `name` when a row is missing or not of `width`."""
    return IdRows(table.column(id_col).to_numpy(), factor_rows(table.column(FACTORS), width, f"earlier model's {name}"))


@dataclass
class WarmStart:
    """What the nightly run decided: start from `model` (made by the run `source` describes: run_date,
    run_id, kind, path), or cold with the `reason`. Recorded as the model metadata's "warm_start"."""
    mode: str
    model: EarlierModel | None = None
    source: dict | None = None
    reason: str | None = None

    def record(self) -> dict:
        return {"mode": self.mode, "used": self.model is not None, "source": self.source, "reason": self.reason}


def reconcile_rows(old_ids: np.ndarray, old_rows: np.ndarray, new_ids: np.ndarray,
                   fill: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows for `new_ids` (row r is new_ids[r]): old_rows of the same id where old_ids has it, else
    fill[r]; returns (rows, kept) with kept[r] True where the row came from old_rows.

    Ids are unique within each array and compared by value; when one side holds text and the other
    numbers, both are compared as text (integer ids that became strings still match).
    """
    old_ids, new_ids = np.asarray(old_ids), np.asarray(new_ids)
    if old_rows.shape[0] != len(old_ids) or fill.shape[0] != len(new_ids) or old_rows.shape[1:] != fill.shape[1:]:
        raise ValueError(f"shapes disagree: {len(old_ids)} old ids, old rows {old_rows.shape}, "
                         f"{len(new_ids)} new ids, fill {fill.shape}")
    kinds = {old_ids.dtype.kind, new_ids.dtype.kind}
    if len(kinds) > 1 and kinds & {"O", "U", "S"}:
        old_ids, new_ids = old_ids.astype(str), new_ids.astype(str)
    _, new_at, old_at = np.intersect1d(new_ids, old_ids, assume_unique=True, return_indices=True)
    rows = np.array(fill, dtype=np.result_type(fill, old_rows), copy=True)
    rows[new_at] = old_rows[old_at]
    kept = np.zeros(len(new_ids), dtype=bool)
    kept[new_at] = True
    return rows, kept


def unusable_reason(metadata: dict, kind: str, latent_dim: int) -> str | None:
    """Why a saved model cannot start training `kind` at `latent_dim`, or None when it can."""
    info = ModelInfo.from_metadata(metadata)
    if info.kind != kind:
        return f"it is a {info.kind} model, not {kind}"
    if info.latent_dim != latent_dim or info.width != latent_dim:
        return f"its latent dimension is {info.latent_dim}, not model.rank {latent_dim}"
    return None


def id_maps(user_ids: DataFrame, item_ids: DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Today's (user ids, item ids) on the driver, entry r the id of index r: two small Arrow
    collections run as concurrent jobs (their union cost several times their sum when measured);
    a ValueError when a map is not dense over 0..n-1."""
    plans = [user_ids.select(USER_INDEX, USER_ID), item_ids.select(ITEM_INDEX, ITEM_ID)]
    with ThreadPoolExecutor(2) as pool:
        tables = list(pool.map(lambda plan: plan.toArrow(), plans))
    maps = []
    for name, (index_col, id_col), table in zip(("user", "item"), ((USER_INDEX, USER_ID), (ITEM_INDEX, ITEM_ID)), tables):
        index = table.column(index_col).to_numpy()
        order = np.argsort(index, kind="stable")
        if not np.array_equal(index[order], np.arange(len(index))):
            raise ValueError(f"the {name} id map is not dense over 0..{len(index) - 1}")
        maps.append(table.column(id_col).take(pa.array(order)).to_numpy())
    return maps[0], maps[1]


def aligned_rows(earlier: tuple[IdRows, IdRows], today: tuple[np.ndarray, np.ndarray], fill_users: np.ndarray,
                 fill_items: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """(user rows, item rows, counts) for today's ids (`today`: user ids, item ids by index) from the
    earlier model's rows, `fill` rows for new ids; counts: {"users": {"kept", "new", "dropped"},
    "items": {...}} for the model metadata."""
    counts, matrices = {}, []
    for name, old, ids, fill in zip(("users", "items"), earlier, today, (fill_users, fill_items)):
        if old.rows.shape[1:] != fill.shape[1:]:
            raise ValueError(f"the earlier model's {name[:-1]} factor rows are not all of width {fill.shape[1]}")
        rows, kept = reconcile_rows(old.ids, old.rows, ids, fill)
        matrices.append(rows)
        counts[name] = {"kept": int(kept.sum()), "new": int((~kept).sum()), "dropped": int(len(old.ids) - kept.sum())}
    return matrices[0], matrices[1], counts


def aligned_factors(model: "FactorModel | EarlierModel", user_ids: DataFrame, item_ids: DataFrame,
                    fill_users: np.ndarray, fill_items: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """aligned_rows for today's id maps (index, id) from `model`'s factors, read at the fills' width."""
    earlier = as_earlier(model).rows(fill_users.shape[1])
    return aligned_rows(earlier, id_maps(user_ids, item_ids), fill_users, fill_items)
