"""FactorModel: what every trainer ends as.

A score is always the dot product of a user row and an item row; biases and intercepts are
folded into extra columns by the trainers. Factors live in two Spark tables that also carry the
id mapping, so the model is self-contained and scales with Spark:

- ``user_factors``: user_index int, user_id (input type), factors array<float>
- ``item_factors``: item_index int, item_id (input type), factors array<float>

An item-item model (metadata "scorer": "item_item", e.g. EASE) is the same two tables read
differently: item j's factors are column j of the item-item matrix B (length n_items), and a
user's vector is their history row x_u (the seen items scoring gets), so the score x_u . B[:, j]
is still a dot product; its user rows carry empty factors (kernels/topk.py takes sparse rows).

storage/stores.py saves and loads it (Parquet plus metadata.json). The metadata is a JSON-ready
dict; every trainer builds it with model_metadata(), so it always has the keys of ModelInfo
(kind, latent_dim, width, seed, params), plus "rank" (= width, what earlier versions wrote) and
trainer-specific extras (history, best_epoch, foldin, ...).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.data.schema import FACTORS, ITEM_ID, ITEM_INDEX, USER_ID, USER_INDEX


@dataclass(frozen=True)
class ModelInfo:
    """What every model records about itself, whatever trained it.

    kind: model.kind (or another name for models built elsewhere, e.g. "bench").
    latent_dim: the model's latent dimension: model.rank for the learned models, 1 for popularity,
        the number of item features for content.
    width: the length of every factor vector; latent_dim plus the columns biases are folded into
        (mf: latent_dim + 2; autoencoder with item_bias: latent_dim + 1).
    seed: the seed training used; None when nothing is random (popularity, content).
    params: the trainer's config section (model.<kind>) as a JSON-ready dict.
    """
    kind: str
    latent_dim: int
    width: int
    seed: int | None = None
    params: dict = field(default_factory=dict)

    def metadata(self, **extras: Any) -> dict:
        """The JSON-ready metadata dict: these fields, "rank" (= width, for readers of earlier
        versions), then the trainer's `extras`, which may not redefine either."""
        meta = {"kind": self.kind, "latent_dim": int(self.latent_dim), "width": int(self.width),
                "rank": int(self.width), "seed": None if self.seed is None else int(self.seed),
                "params": dict(self.params)}
        clash = sorted(set(extras) & set(meta))
        if clash:
            raise ValueError(f"model metadata extras redefine {clash}")
        meta.update(extras)
        return meta

    @classmethod
    def from_metadata(cls, metadata: dict) -> "ModelInfo":
        """Read back from a metadata dict, also one saved by an earlier version: those have the
        factor width only as "rank" and the latent dimension as "latent_rank" (mf), "hidden"
        (autoencoder) or not at all (then it is taken to be the width)."""
        width = int(metadata["width"] if "width" in metadata else metadata["rank"])
        latent = next((metadata[k] for k in ("latent_dim", "latent_rank", "hidden") if k in metadata), width)
        return cls(metadata.get("kind", "unknown"), int(latent), width, metadata.get("seed"),
                   dict(metadata.get("params") or {}))


def model_metadata(kind: str, latent_dim: int, width: int, seed: int | None, params: Any = None,
                   **extras: Any) -> dict:
    """Metadata for a trainer's FactorModel: ModelInfo(...).metadata(**extras).

    `params` is the trainer's config section, a dataclass (converted with dataclasses.asdict) or a dict.
    """
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        params = dataclasses.asdict(params)
    return ModelInfo(kind, latent_dim, width, seed, dict(params or {})).metadata(**extras)


ITEM_ITEM = "item_item"  # metadata "scorer" of models whose users are their history rows


@dataclass(frozen=True)
class DriverFactors:
    """A driver-trained model's factors as the trainer holds them: row i of `user_matrix` is user_index
    i, whose external id is user_ids[i] (items alike). storage/stores.save_model writes them from the
    driver (no Spark job) where it can; `tables()` are the two factor tables as Arrow."""
    user_ids: np.ndarray
    user_matrix: np.ndarray
    item_ids: np.ndarray
    item_matrix: np.ndarray

    def tables(self) -> tuple[pa.Table, pa.Table]:
        """(user_factors, item_factors) as Arrow: (index int32, id, factors list<float>), in index order."""
        return (factor_table(self.user_matrix, USER_INDEX, self.user_ids, USER_ID),
                factor_table(self.item_matrix, ITEM_INDEX, self.item_ids, ITEM_ID))


@dataclass
class FactorModel:
    user_factors: DataFrame
    item_factors: DataFrame
    metadata: dict = field(default_factory=dict)
    driver: DriverFactors | None = None  # the same factors on the driver, when a driver trainer built them

    @property
    def kind(self) -> str:
        return self.metadata.get("kind", "unknown")

    @property
    def width(self) -> int:
        """Length of every factor vector (metadata "width"; models saved before it have only "rank")."""
        return int(self.metadata["width"] if "width" in self.metadata else self.metadata["rank"])

    @property
    def item_item(self) -> bool:
        """Users are scored by their history row against item columns (see the module docstring)."""
        return self.metadata.get("scorer") == ITEM_ITEM

    @property
    def heavy_threshold(self) -> float | None:
        """Item-item models with heavy-use inputs (models/ease.py): the weight above which a user's item
        j also enters their history row as input width/2 + j; None for every other model."""
        channel = self.metadata.get("heavy_channel") or {}
        return float(channel["threshold"]) if channel.get("used") else None

    @property
    def info(self) -> ModelInfo:
        """The typed part of the metadata (see ModelInfo.from_metadata for older models)."""
        return ModelInfo.from_metadata(self.metadata)

    def item_factor_matrix(self) -> np.ndarray:
        """Item factors as a float32 (n_items, width) matrix whose row i is item_index i.

        Collects the catalog to the driver on purpose: it is what scoring broadcasts.
        Items without factors (never seen in training) get a zero row.
        """
        table = self.item_factors.select(ITEM_INDEX, FACTORS).toArrow()
        index = table.column(ITEM_INDEX).to_numpy()
        n_items = int(index.max()) + 1 if len(index) else 0
        matrix = np.zeros((n_items, self.width), dtype=np.float32)
        if len(index):
            matrix[index] = factor_rows(table.column(FACTORS), self.width, "item")
        return matrix

    @classmethod
    def from_numpy(
        cls,
        user_matrix: np.ndarray,
        item_matrix: np.ndarray,
        user_ids: DataFrame,
        item_ids: DataFrame,
        metadata: dict,
        ids: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> "FactorModel":
        """Build a model from driver-side factor matrices (row i = index i).

        `user_ids` / `item_ids` are the id maps (user_index, user_id) / (item_index, item_id);
        `metadata` is normally model_metadata(...); a "width" or "rank" it lacks is taken from the matrices.
        `ids`: the maps' (user ids, item ids) by index when the trainer collected them: the tables are then
        sent with their ids (no join with the maps) and the model keeps `driver` for a write without Spark.
        """
        width = int(item_matrix.shape[1])
        if user_matrix.shape[1] != width or int(metadata.get("width", width)) != width:
            raise ValueError(f"factor widths disagree: users {user_matrix.shape[1]}, items {width}, "
                             f"metadata {metadata.get('width')}")
        spark = user_ids.sparkSession
        meta = dict(metadata)
        meta.setdefault("width", width)
        meta.setdefault("rank", meta["width"])
        meta.setdefault("created_at", dt.datetime.now(dt.timezone.utc).isoformat())
        if ids is not None:
            driver = DriverFactors(ids[0], user_matrix, ids[1], item_matrix)
            users, items = (_table_frame(spark, table, maps) for table, maps in zip(driver.tables(), (user_ids, item_ids)))
            return cls(user_factors=users, item_factors=items, metadata=meta, driver=driver)
        users = _factor_frame(spark, user_matrix, USER_INDEX).join(user_ids, USER_INDEX)
        items = _factor_frame(spark, item_matrix, ITEM_INDEX).join(item_ids, ITEM_INDEX)
        return cls(
            user_factors=users.select(USER_INDEX, USER_ID, FACTORS),
            item_factors=items.select(ITEM_INDEX, ITEM_ID, FACTORS),
            metadata=meta,
        )

    @classmethod
    def from_item_item(cls, columns: np.ndarray, user_ids: DataFrame, item_ids: DataFrame,
                       metadata: dict) -> "FactorModel":
        """An item-item model: row j of `columns` (n_items, n_items) is column j of B; every user
        of `user_ids` gets an empty factor row (their history is their vector)."""
        meta = dict(metadata, scorer=ITEM_ITEM)
        meta.setdefault("width", int(columns.shape[1]))
        meta.setdefault("rank", meta["width"])
        meta.setdefault("created_at", dt.datetime.now(dt.timezone.utc).isoformat())
        items = _factor_frame(user_ids.sparkSession, columns, ITEM_INDEX).join(item_ids, ITEM_INDEX)
        users = user_ids.select(USER_INDEX, USER_ID, F.array().cast("array<float>").alias(FACTORS))
        return cls(users, items.select(ITEM_INDEX, ITEM_ID, FACTORS), meta)


FRAME_VALUES = 1 << 26  # factor values per Arrow batch of factor_table (its list offsets are int32)


def factor_table(matrix: np.ndarray, index_col: str, ids: np.ndarray | None = None, id_col: str | None = None) -> pa.Table:
    """(index_col int32, [id_col,] factors list<float>) with row i of `matrix` at index i (and ids[i]), as
    Arrow batches of list<float> built on the matrix's memory (no per-row objects)."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    n_rows, width = matrix.shape
    id_array = None if ids is None else pa.array(ids)
    fields = [(index_col, pa.int32())] + ([] if ids is None else [(id_col, id_array.type)])
    schema = pa.schema(fields + [(FACTORS, pa.list_(pa.float32()))])
    step = max(1, FRAME_VALUES // max(width, 1))
    batches = []
    for start in range(0, n_rows, step):
        block = matrix[start:start + step]
        offsets = pa.array(np.arange(0, (len(block) + 1) * width, width, dtype=np.int32) if width
                           else np.zeros(len(block) + 1, np.int32))
        lists = pa.ListArray.from_arrays(offsets, pa.array(block.reshape(-1)))
        index = pa.array(np.arange(start, start + len(block), dtype=np.int32))
        columns = [index] + ([] if id_array is None else [id_array.slice(start, len(block))]) + [lists]
        batches.append(pa.RecordBatch.from_arrays(columns, schema=schema))
    return pa.Table.from_batches(batches, schema=schema)


def _factor_frame(spark: SparkSession, matrix: np.ndarray, index_col: str) -> DataFrame:
    """(index_col int, factors array<float>) with row i of `matrix` at index i, sent to Spark as Arrow."""
    return spark.createDataFrame(factor_table(matrix, index_col), schema=f"{index_col} int, {FACTORS} array<float>")


def _table_frame(spark: SparkSession, table: pa.Table, id_map: DataFrame) -> DataFrame:
    """A factor_table with ids sent to Spark, its id column of the id map's type."""
    index_col, id_col, _ = table.column_names
    id_type = id_map.schema[id_col].dataType.simpleString()
    return spark.createDataFrame(table, schema=f"{index_col} int, {id_col} {id_type}, {FACTORS} array<float>")


def factor_rows(lists: pa.ChunkedArray, width: int, name: str) -> np.ndarray:
    """(len(lists), width) float32 from a list<float> column: one flatten, no per-row objects; a
    ValueError names `name` when a row is missing or of another width."""
    if len(lists) == 0:
        return np.zeros((0, width), np.float32)
    if lists.null_count or pc.any(pc.not_equal(pc.list_value_length(lists), width)).as_py():
        raise ValueError(f"the {name} factor rows are not all of width {width}")
    return pc.list_flatten(lists).to_numpy().astype(np.float32, copy=False).reshape(len(lists), width)
