"""Stores: the prepared data and the model of a run date, kept between stage commands.

A model is Parquet (one directory per factor table) plus metadata.json; prepared data is
Parquet (interactions and the two id maps) plus prepared.json. No pickle.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pyarrow.parquet as pq
from pyspark.sql import SparkSession

from recsys_spark.data.prepare import PreparedData
from recsys_spark.data.schema import FACTORS, ITEM_ID, USER_ID
from recsys_spark.errors import NotFoundError
from recsys_spark.models.factor_model import FactorModel
from recsys_spark.models.warm_start import EarlierModel, IdRows, id_rows
from recsys_spark.storage import fs
from recsys_spark.storage.layout import DateLayout
from recsys_spark.storage.published import published_dates, published_manifest, published_run

MODEL_METADATA = "metadata.json"
DRIVER_ROW_GROUP = 1 << 16  # rows per Parquet row group of a model written from the driver (16 MiB at rank 64)
PREPARED_METADATA = "prepared.json"


def write_json(spark: SparkSession, path: str, payload: dict) -> None:
    fs.write_text(spark, path, json.dumps(payload, indent=2, sort_keys=True, default=str))


def read_json(spark: SparkSession, path: str) -> dict:
    return json.loads(fs.read_text(spark, path))


def save_model(model: FactorModel, path: str) -> None:
    """Write the model under `path` (replacing what was there). A model a driver trainer built (its
    `driver` factors) is written on local disk by pyarrow from the driver, in row groups of
    DRIVER_ROW_GROUP rows (no Spark job: Spark's write of the same rows took seconds); otherwise, and
    off local disk, by Spark. Either way the tables read back as the same Spark tables."""
    spark = model.user_factors.sparkSession
    local = None if model.driver is None else fs.local_path(spark, path)
    if local is not None:
        for name, table in zip(("user_factors", "item_factors"), model.driver.tables()):
            fs.delete(spark, f"{path}/{name}")
            os.makedirs(f"{local}/{name}")
            pq.write_table(table, f"{local}/{name}/part-00000.parquet", row_group_size=DRIVER_ROW_GROUP)
    else:
        model.user_factors.write.mode("overwrite").parquet(f"{path}/user_factors")
        model.item_factors.write.mode("overwrite").parquet(f"{path}/item_factors")
    write_json(spark, f"{path}/{MODEL_METADATA}", model.metadata)


def load_model(spark: SparkSession, path: str) -> FactorModel:
    metadata = read_model_metadata(spark, path)
    return FactorModel(user_factors=spark.read.parquet(f"{path}/user_factors"),
                       item_factors=spark.read.parquet(f"{path}/item_factors"),
                       metadata=metadata)


def read_model_metadata(spark: SparkSession, path: str) -> dict:
    """The metadata.json of the model saved under `path`; NotFoundError when there is none."""
    if not fs.exists(spark, f"{path}/{MODEL_METADATA}"):
        raise NotFoundError(f"no model at {path}: {MODEL_METADATA} is missing; train one with `recsys-spark train`")
    return read_json(spark, f"{path}/{MODEL_METADATA}")


def earlier_model(spark: SparkSession, path: str) -> EarlierModel:
    """The model saved under `path` as a warm start reads it: its metadata now, its factor rows on
    the driver (read_factor_rows) or its Spark tables (load_model) only when the trainer asks."""
    return EarlierModel(read_model_metadata(spark, path), lambda: load_model(spark, path),
                        lambda width: read_factor_rows(spark, path, width))


def read_factor_rows(spark: SparkSession, path: str, width: int) -> tuple[IdRows, IdRows]:
    """The (users, items) ids and factor rows of the model saved under `path`, on the driver. On local
    disk pyarrow reads the two columns from the Parquet files (no Spark job: a warm start's fixed
    cost); elsewhere (HDFS, object stores) Spark reads them as Arrow."""
    local = fs.local_path(spark, path)
    sides = (("user_factors", USER_ID, "user"), ("item_factors", ITEM_ID, "item"))

    def read(side):
        table, id_col, _ = side
        if local is not None:
            return pq.read_table(f"{local}/{table}", columns=[id_col, FACTORS])
        return spark.read.parquet(f"{path}/{table}").select(id_col, FACTORS).toArrow()

    with ThreadPoolExecutor(2) as pool:
        tables = list(pool.map(read, sides))
    users, items = (id_rows(table, id_col, width, name) for table, (_, id_col, name) in zip(tables, sides))
    return users, items


def earlier_published_model(spark: SparkSession, root: str, run_date: str) -> dict | None:
    """The model of the newest date published before `run_date` that kept one, as {run_date, run_id,
    path}, or None. A nightly run keeps its model in the run (`_runs/D/RUN/model`); a run published
    stage by stage names it in its manifest (`model_dir`)."""
    for date in reversed(published_dates(spark, root)):
        if date >= run_date:
            continue
        layout = DateLayout(root, date)
        run_id = published_run(spark, layout)
        if run_id is None:
            continue
        candidates = [f"{layout.run(run_id)}/model", (published_manifest(spark, layout) or {}).get("model_dir")]
        for path in candidates:
            if path and fs.exists(spark, f"{path}/{MODEL_METADATA}"):
                return {"run_date": date, "run_id": run_id, "path": path}
    return None


def save_prepared(prepared: PreparedData, path: str) -> None:
    """Keep prepared data between stage-by-stage runs."""
    spark = prepared.interactions.sparkSession
    prepared.interactions.write.mode("overwrite").parquet(f"{path}/interactions")
    prepared.user_ids.write.mode("overwrite").parquet(f"{path}/user_ids")
    prepared.item_ids.write.mode("overwrite").parquet(f"{path}/item_ids")
    meta = {"n_users": prepared.n_users, "n_items": prepared.n_items, "stats": prepared.stats}
    write_json(spark, f"{path}/{PREPARED_METADATA}", meta)


def load_prepared(spark: SparkSession, path: str) -> PreparedData:
    if not fs.exists(spark, f"{path}/{PREPARED_METADATA}"):
        raise NotFoundError(f"no prepared data at {path}; run `recsys-spark prepare` for this run date first")
    meta = read_json(spark, f"{path}/{PREPARED_METADATA}")
    return PreparedData(
        interactions=spark.read.parquet(f"{path}/interactions"),
        user_ids=spark.read.parquet(f"{path}/user_ids"),
        item_ids=spark.read.parquet(f"{path}/item_ids"),
        n_users=meta["n_users"], n_items=meta["n_items"], stats=meta["stats"],
    )
