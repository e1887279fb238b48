"""The executor WALS engine's fixed structure, built once at set-up (models/wals_spark.py runs the
iterations over it): rows of each side packed into blocks of consecutive indexes holding at most
model.wals.block_interactions nonzeros (a row with more gets a block of its own); the confidences;
per side one row per block, as Spark ML ALS's in- and out-blocks: its nonzeros with local row and
column numbers, and for every block of the other side the positions of its rows that block needs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel, TaskContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import WalsConfig
from recsys_spark.kernels.confidence import confidence
from recsys_spark.kernels.wals_blocks import pack_rows

log = logging.getLogger(__name__)

_IDX, _BLOCK, _COUNT = "_idx", "_block", "_count"
_U, _I, _W, _C, _UB, _IB = "_u", "_i", "_w", "_c", "_ub", "_ib"
_R, _O, _OB = "_r", "_o", "_ob"
ASSIGN_SCHEMA = f"{_IDX} int, {_BLOCK} long, {_COUNT} int"
# one row per block: its rows' indexes and nonzero counts, its nonzeros (local row, local column into the
# shipped rows in (source block, index) order, confidence), and where its own rows go (destination blocks,
# offsets into the positions, positions of this block's rows each destination needs); arrays as raw bytes
STRUCTURE_SCHEMA = (f"{_BLOCK} long, {_IDX} binary, {_COUNT} binary, _rows binary, _cols binary, _conf binary, "
                    "_dests binary, _offsets binary, _positions binary, _nnz long")


@dataclass
class Side:
    """One side's fixed structure: one row per block (STRUCTURE_SCHEMA), hash-partitioned by block."""
    n_rows: int
    n_other: int
    assign: DataFrame  # _idx, _block, _count
    structure: DataFrame
    n_blocks: int
    largest_block: int  # nonzeros of the fullest block


def build_sides(data: DataFrame, n_users: int, n_items: int, foldin: dict, cfg: WalsConfig) -> tuple[Side, Side]:
    """Both sides' blocks and routes, with the confidences of foldin's scheme (computed per user block,
    where each user's nonzeros are all present, as bm25's user totals need)."""
    spark = data.sparkSession
    limit = cfg.block_interactions
    user_assign = assign_blocks(data, _U, n_users, limit)
    item_assign = assign_blocks(data, _I, n_items, limit)
    tagged = (data.join(user_assign.select(F.col(_IDX).alias(_U), F.col(_BLOCK).alias(_UB)), _U)
              .join(item_assign.select(F.col(_IDX).alias(_I), F.col(_BLOCK).alias(_IB)), _I))
    scheme = confidence_function(spark, foldin, cfg)
    schema = f"{_U} int, {_I} int, {_C} float, {_UB} long, {_IB} long"
    if foldin["confidence"] == "bm25":
        nonzeros = tagged.groupBy(_UB).applyInArrow(scheme, schema)
    else:
        nonzeros = tagged.mapInArrow(lambda batches: (b for t in batches for b in scheme(pa.Table.from_batches([t]))
                                                      .to_batches()), schema)
    nonzeros = nonzeros.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        users = side_structure(nonzeros, user_assign, _U, _I, _UB, _IB, n_users, n_items)
        items = side_structure(nonzeros, item_assign, _I, _U, _IB, _UB, n_items, n_users)
    finally:
        nonzeros.unpersist()
    log.info("wals (spark): %d user blocks (largest %d nonzeros), %d item blocks (largest %d) of at most %d",
             users.n_blocks, users.largest_block, items.n_blocks, items.largest_block, limit)
    return users, items


def side_structure(nonzeros: DataFrame, assign: DataFrame, row_col: str, other_col: str, block_col: str,
                   other_block_col: str, n_rows: int, n_other: int) -> Side:
    """One side's Side: its blocks' structure (block_structure), hash-partitioned by block, materialised."""
    spark = nonzeros.sparkSession
    stats = assign.groupBy(_BLOCK).agg(F.sum(_COUNT).alias("n")).agg(F.count("*"), F.max("n")).first()
    n_blocks, largest = int(stats[0]), int(stats[1] or 0)
    partitions = max(1, min(n_blocks, int(spark.conf.get("spark.sql.shuffle.partitions"))))
    entries = nonzeros.select(F.col(block_col).alias(_BLOCK), F.col(row_col).alias(_R), F.col(other_col).alias(_O),
                              F.col(other_block_col).alias(_OB), _C)
    structure = (assign.groupBy(_BLOCK).cogroup(entries.groupBy(_BLOCK)).applyInArrow(block_structure,
                                                                                         STRUCTURE_SCHEMA)
                 .repartition(partitions, _BLOCK).persist(StorageLevel.MEMORY_AND_DISK))
    structure.count()
    return Side(n_rows, n_other, assign, structure, n_blocks, largest)


def block_structure(rows: pa.Table, entries: pa.Table) -> pa.Table:
    """The cogroup function: (a block's rows from assign, its nonzeros) -> its STRUCTURE_SCHEMA row.

    The block's columns are the distinct other rows its nonzeros name in (other block, index) order,
    the order in which their source blocks' parts arrive (sorted by source block, each part sorted by
    index); its destinations get the positions of its rows they name, in index order."""
    idx = rows.column(_IDX).to_numpy()
    order = np.argsort(idx, kind="stable")
    idx, counts = idx[order].astype(np.int32), rows.column(_COUNT).to_numpy()[order].astype(np.int32)
    row_of = np.searchsorted(idx, entries.column(_R).to_numpy()).astype(np.int64)
    other = entries.column(_O).to_numpy().astype(np.int64)
    other_block = entries.column(_OB).to_numpy().astype(np.int64)
    conf = entries.column(_C).to_numpy().astype(np.float32)
    by_other = np.lexsort((other, other_block))
    first = np.ones(len(other), bool)
    first[1:] = (other[by_other][1:] != other[by_other][:-1]) | (other_block[by_other][1:] != other_block[by_other][:-1])
    col_of = np.empty(len(other), np.int64)
    col_of[by_other] = np.cumsum(first) - 1
    by_row = np.lexsort((col_of, row_of))
    sends = np.lexsort((row_of, other_block))  # this block's rows each other block names, once each
    keep = np.ones(len(sends), bool)
    keep[1:] = (row_of[sends][1:] != row_of[sends][:-1]) | (other_block[sends][1:] != other_block[sends][:-1])
    dest_of, positions = other_block[sends][keep], row_of[sends][keep]
    dests, starts = np.unique(dest_of, return_index=True)
    offsets = np.append(starts, len(dest_of)).astype(np.int32)
    block = rows.column(_BLOCK)[0].as_py()
    values = [block, idx, counts, row_of[by_row].astype(np.int32), col_of[by_row].astype(np.int32), conf[by_row],
              dests.astype(np.int64), offsets, positions.astype(np.int32)]
    columns = [pa.array([values[0]], pa.int64())] + [pa.array([v.tobytes()], pa.binary()) for v in values[1:]]
    return pa.Table.from_arrays(columns + [pa.array([len(conf)], pa.int64())],
                                names=[f.split()[0] for f in STRUCTURE_SCHEMA.split(", ")])


def assign_blocks(data: DataFrame, column: str, n_rows: int, limit: int) -> DataFrame:
    """(_idx, _block, _count) for every index 0..n_rows-1: consecutive rows packed greedily into blocks
    of at most `limit` nonzeros within each range partition (kernels/wals_blocks.pack_rows; a row
    without nonzeros counts 1), block ids unique across partitions; locally checkpointed, so every later
    use sees the same blocks."""
    spark = data.sparkSession
    counts = data.groupBy(F.col(column).alias(_IDX)).agg(F.count("*").cast("int").alias(_COUNT))
    every = (spark.range(n_rows).select(F.col("id").cast("int").alias(_IDX)).join(counts, _IDX, "left")
             .select(_IDX, F.coalesce(F.col(_COUNT), F.lit(0)).alias(_COUNT)))
    partitions = max(1, spark.sparkContext.defaultParallelism)

    def pack(batches):
        base = (TaskContext.get().partitionId() << 32)
        filled = 0
        for batch in batches:
            n = batch.column(_COUNT).to_numpy()
            local, started, filled_next = pack_rows(np.maximum(n, 1), limit, filled)
            blocks = pa.array(base + local, pa.int64())
            yield pa.RecordBatch.from_arrays([batch.column(_IDX), blocks, batch.column(_COUNT)],
                                             names=[_IDX, _BLOCK, _COUNT])
            base += started - 1
            filled = filled_next

    return (every.repartitionByRange(partitions, _IDX).sortWithinPartitions(_IDX).mapInArrow(pack, ASSIGN_SCHEMA)
            .localCheckpoint(eager=True))


def confidence_function(spark: SparkSession, foldin: dict, cfg: WalsConfig):
    """Arrow table (_u, _i, _w, _ub, _ib) -> (_u, _i, _c, _ub, _ib) with kernels/confidence.confidence under
    foldin's resolved scheme; for bm25 the table must hold whole users (a user block)."""
    idf = spark.sparkContext.broadcast(np.asarray(foldin["bm25_idf"])) if "bm25_idf" in foldin else None
    scheme, alpha, epsilon = foldin["confidence"], foldin["alpha"], foldin["epsilon"]
    mean_user_weight = foldin.get("bm25_mean_user_weight", 1.0)

    def apply(table: pa.Table) -> pa.Table:
        users = table.column(_U).to_numpy()
        items = table.column(_I).to_numpy()
        weights = table.column(_W).to_numpy().astype(np.float32)
        _, local_users = np.unique(users, return_inverse=True)
        conf = confidence(local_users.reshape(-1), items, weights, scheme, alpha=alpha, epsilon=epsilon,
                          bm25_k1=cfg.bm25_k1, bm25_b=cfg.bm25_b, item_idf=None if idf is None else idf.value,
                          mean_user_weight=mean_user_weight)
        return pa.table({_U: table.column(_U), _I: table.column(_I), _C: pa.array(conf, pa.float32()),
                         _UB: table.column(_UB), _IB: table.column(_IB)})

    return apply
