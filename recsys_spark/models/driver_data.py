"""Bring prepared interactions to the driver for the TensorFlow trainers.

This is the deliberate driver-side path: rows arrive as Arrow batches straight into numpy
arrays (12 bytes per interaction), after a check of what the trainer will need against the
driver memory budget (train.driver_max_bytes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pyspark.sql import DataFrame

from recsys_spark.data.schema import ITEM_INDEX, USER_INDEX, WEIGHT
from recsys_spark.errors import DriverMemoryError

log = logging.getLogger(__name__)

BYTES_PER_INTERACTION = 4 + 4 + 4


@dataclass
class Interactions:
    """Interactions as COO arrays on the driver."""
    users: np.ndarray  # int32 user_index
    items: np.ndarray  # int32 item_index
    weights: np.ndarray  # float32
    n_users: int
    n_items: int

    def __len__(self) -> int:
        return len(self.users)


def collect_interactions(df: DataFrame, n_users: int, n_items: int, max_bytes: int = 8 << 30,
                         bytes_per_interaction: int = BYTES_PER_INTERACTION, rows: int | None = None) -> Interactions:
    """Collect (user_index, item_index, weight) as numpy arrays, refusing when the trainer's
    memory (`bytes_per_interaction` per row, the arrays included) would pass `max_bytes`. `rows`:
    the row count when known (prepare records it), else one Spark job counts them first."""
    rows = df.count() if rows is None else int(rows)
    needed = rows * bytes_per_interaction
    if needed > max_bytes:
        raise DriverMemoryError(
            f"{rows} interactions need about {needed / 2**30:.1f} GiB on the driver to train "
            f"({bytes_per_interaction} bytes each), over the {max_bytes / 2**30:.1f} GiB budget; raise "
            "train.driver_max_bytes if the driver has the memory, or train on the executors "
            "(model.wals.engine=spark or auto for wals, model.kind=als)")
    table = df.select(USER_INDEX, ITEM_INDEX, WEIGHT).toArrow()
    log.info("collected %d interactions to the driver (%.1f MiB of arrays; training needs about %.1f GiB)",
             table.num_rows, table.num_rows * BYTES_PER_INTERACTION / 2**20, needed / 2**30)
    return Interactions(
        users=table.column(USER_INDEX).to_numpy().astype(np.int32, copy=False),
        items=table.column(ITEM_INDEX).to_numpy().astype(np.int32, copy=False),
        weights=table.column(WEIGHT).to_numpy().astype(np.float32),
        n_users=n_users,
        n_items=n_items,
    )
