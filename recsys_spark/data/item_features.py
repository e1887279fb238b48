"""Item features lined up with the model's item indexes.

The contract is a DataFrame (item_id, features array<float>), one row per item; the reader
(storage/readers.read_item_features) builds it from CSV, Parquet or MovieLens u.item.
"""

from __future__ import annotations

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark.config.model import FEATURE_FORMATS  # noqa: F401 (re-exported for the reader)
from recsys_spark.data.schema import FACTORS, ITEM_ID, ITEM_INDEX
from recsys_spark.errors import ItemFeaturesError

FEATURES = "features"


def feature_matrix(item_features: DataFrame, item_ids: DataFrame, n_items: int) -> np.ndarray:
    """Features as a float32 (n_items, n_features) matrix, row i = item_index i; missing items are zero.

    Collects one row per catalog item to the driver, as scoring does with item factors.
    """
    id_type = item_ids.schema[ITEM_ID].dataType
    features = item_features.select(F.col(ITEM_ID).cast(id_type).alias(ITEM_ID), F.col(FEATURES).alias(FACTORS))
    pdf = item_ids.join(features, ITEM_ID).select(ITEM_INDEX, FACTORS).toPandas()
    if len(pdf) == 0:
        raise ItemFeaturesError("no item in the features matches an item of the interactions; check the item ids")
    widths = pdf[FACTORS].map(len)
    if widths.nunique() != 1:
        raise ItemFeaturesError(f"item feature vectors differ in length ({sorted(widths.unique())}); give every item the same features")
    matrix = np.zeros((n_items, int(widths.iloc[0])), dtype=np.float32)
    matrix[pdf[ITEM_INDEX].to_numpy()] = np.stack(pdf[FACTORS].to_numpy()).astype(np.float32)
    return matrix
