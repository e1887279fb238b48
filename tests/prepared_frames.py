"""Small PreparedData for trainer tests, built on the driver without prepare()'s Spark jobs."""

import numpy as np
import pandas as pd


def prepared_from_pandas(spark, frame, id_type: str = "string"):
    """PreparedData straight from a pandas frame (user_id, item_id, weight[, ts]): duplicates summed
    (latest ts kept), indexes in id order, as prepare() gives, without its Spark jobs; ids of Spark
    type `id_type`; ts 0 where the frame has none."""
    from recsys_spark.data.prepare import PreparedData

    if "ts" not in frame:
        frame = frame.assign(ts=0)
    merged = frame.groupby(["user_id", "item_id"], as_index=False).agg(weight=("weight", "sum"), ts=("ts", "max"))
    user_ids, users = np.unique(merged.user_id.to_numpy(), return_inverse=True)
    item_ids, items = np.unique(merged.item_id.to_numpy(), return_inverse=True)
    interactions = pd.DataFrame({"user_index": users.astype(np.int32), "item_index": items.astype(np.int32),
                                 "weight": merged.weight.to_numpy(np.float64), "ts": merged.ts.to_numpy(np.int64)})
    return PreparedData(
        spark.createDataFrame(interactions, "user_index int, item_index int, weight double, ts long"),
        spark.createDataFrame(pd.DataFrame({"user_index": np.arange(len(user_ids), dtype=np.int32), "user_id": user_ids}),
                              f"user_index int, user_id {id_type}"),
        spark.createDataFrame(pd.DataFrame({"item_index": np.arange(len(item_ids), dtype=np.int32), "item_id": item_ids}),
                              f"item_index int, item_id {id_type}"),
        len(user_ids), len(item_ids))
