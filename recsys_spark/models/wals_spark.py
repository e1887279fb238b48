"""WALS on the executors: driver WALS's objective and conjugate-gradient half-steps (models/wals.py,
kernels/wals_tf.py) solved block by block with Spark, for data past the driver's budget.

Set-up, once: the fold-in parameters from Spark aggregations (models/spark_weights.py, the same
values models/wals.foldin_parameters computes on collected arrays); rows of each side packed into
blocks of consecutive indexes holding at most model.wals.block_interactions nonzeros (a row with more
gets a block of its own); the confidences; per side a table of one row per block with its nonzeros
(global indexes), and its routes: the distinct (other-side row, block) pairs.

Each half-step (solving one side with the other fixed): the other side's Gramian, computed while its
rows were summarised, goes out as a broadcast; every other-side row is shipped once per block that
names it (routes joined with the factors), cogrouped with the block's nonzeros and its current rows,
and kernels/wals_blocks.block_half_step solves the block in one task. The new rows are checkpointed
locally (localCheckpoint: lineage does not grow with the iterations), then summarised (Gramian, the
regularisation term and the observed part of the loss) in one pass, so the loss, and with it
model.wals.tolerance, cost no extra join. Initial factors are seeded per chunk of indexes
(kernels/wals_blocks.initial_rows), on the executors. Driver memory holds rank x rank matrices and
one row per partition or block, never the interactions or the factors.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel, TaskContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import ModelConfig, TrainConfig, WalsConfig
from recsys_spark.data.prepare import PreparedData
from recsys_spark.data.schema import FACTORS, ITEM_ID, ITEM_INDEX, USER_ID, USER_INDEX, WEIGHT
from recsys_spark.kernels.confidence import confidence, row_regularization
from recsys_spark.kernels.convergence import converged
from recsys_spark.kernels.wals_blocks import BlockNonzeros, block_half_step, initial_rows, observed_loss, pack_rows
from recsys_spark.models import spark_weights
from recsys_spark.models.factor_model import FactorModel, model_metadata
from recsys_spark.models.wals import resolve_parameters

log = logging.getLogger(__name__)

_IDX, _BLOCK, _COUNT, _OTHER = "_idx", "_block", "_count", "_other"
_U, _I, _W, _C, _UB, _IB = "_u", "_i", "_w", "_c", "_ub", "_ib"
_ROWS, _COLS, _CONF = "_rows", "_cols", "_conf"
_BEFORE, _AFTER = "_observed_before", "_observed_after"
ASSIGN_SCHEMA = f"{_IDX} int, {_BLOCK} long, {_COUNT} int"
ROWS_SCHEMA = f"{_IDX} int, {_BLOCK} long, {_COUNT} int, {FACTORS} array<float>"
SOLVED_SCHEMA = f"{ROWS_SCHEMA}, {_BEFORE} double, {_AFTER} double"
SUMMARY_SCHEMA = "gram array<double>, penalty double, before double, after double, rows long"


@dataclass
class Side:
    """One side's fixed structure: its block of every row, one row per block with the block's nonzeros
    (this side's index, the other side's, confidence), and the routes (other row, block)."""
    n_rows: int
    n_other: int
    assign: DataFrame  # _idx, _block, _count
    blocks: DataFrame  # _block, _rows, _cols, _conf
    routes: DataFrame  # _idx (other side), _block (this side)
    n_blocks: int
    largest_block: int  # nonzeros of the fullest block


@dataclass
class Summary:
    """A side's rows summarised: Gramian Y^T Y, sum of lambda |y|^2, and the observed loss of its
    blocks before and after their solve (0 for initial rows)."""
    gram: np.ndarray
    penalty: float
    before: float
    after: float


def train(prepared: PreparedData, model_cfg: ModelConfig, train_cfg: TrainConfig, item_features=None,
          initial: FactorModel | None = None) -> FactorModel:
    """Fit WALS on the executors, from `initial`'s factors (matched by id) when given; the metadata is
    driver WALS's (kind wals, params, history, foldin, iterations_run) with engine "spark"."""
    cfg, rank, seed = model_cfg.wals, model_cfg.rank, model_cfg.seed
    spark = prepared.interactions.sparkSession
    columns = (F.col(USER_INDEX).cast("int").alias(_U), F.col(ITEM_INDEX).cast("int").alias(_I),
               F.col(WEIGHT).cast("float").alias(_W))  # float32 weights, as collect_interactions gives the driver
    data = prepared.interactions.select(*columns).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        foldin = foldin_parameters(data, prepared.n_users, prepared.n_items, cfg)
        users, items = build_sides(data, prepared.n_users, prepared.n_items, foldin, cfg)
    finally:
        data.unpersist()
    counts = None
    if initial is None:
        x = initial_factors(users.assign, rank, cfg.init_stddev, seed, 1)
        y = initial_factors(items.assign, rank, cfg.init_stddev, seed, 2)
    else:
        x, user_counts = warm_factors(users.assign, initial.user_factors, prepared.user_ids, USER_INDEX, USER_ID,
                                      rank, cfg.init_stddev, seed, 1)
        y, item_counts = warm_factors(items.assign, initial.item_factors, prepared.item_ids, ITEM_INDEX, ITEM_ID,
                                      rank, cfg.init_stddev, seed, 2)
        counts = {"users": user_counts, "items": item_counts}
    x, y, history = fit(spark, users, items, x, y, cfg, rank, foldin["unobserved_weight"])
    for side in (users, items):
        side.blocks.unpersist()
        side.routes.unpersist()
    extras = {"warm_start": counts} if counts is not None else {}
    metadata = model_metadata("wals", rank, rank, seed, cfg, history=history, foldin=foldin,
                              iterations_run=len(history), engine="spark",
                              blocks={"users": users.n_blocks, "items": items.n_blocks,
                                      "largest_user_block": users.largest_block,
                                      "largest_item_block": items.largest_block}, **extras)
    return as_factor_model(x, y, prepared, metadata)


def foldin_parameters(data: DataFrame, n_users: int, n_items: int, cfg: WalsConfig) -> dict:
    """models/wals.foldin_parameters from Spark aggregations over (_u, _i, _w)."""
    return resolve_parameters(cfg, data.count(), n_users, n_items,
                              lambda: spark_weights.auto_confidence(data, _W, cfg.alpha),
                              lambda: spark_weights.bm25_statistics(data, _U, _I, _W, n_users, n_items))


def fit(spark: SparkSession, users: Side, items: Side, x: DataFrame, y: DataFrame, cfg: WalsConfig, rank: int,
        unobserved_weight: float) -> tuple[DataFrame, DataFrame, list]:
    """Alternate the half-steps as kernels/wals_tf.fit does (same history entries, same tolerance stop);
    x, y: the users' and items' rows (ROWS_SCHEMA), checkpointed by the caller or here."""
    from recsys_spark.models.progress import LoopProgress

    progress = LoopProgress(cfg.iterations)
    w0 = unobserved_weight
    y_summary = summarise(y, users.n_rows, cfg, w0, rank)
    x_start = summarise(x, items.n_rows, cfg, w0, rank) if cfg.tolerance > 0 else None
    previous, history = None, []
    for iteration in range(1, cfg.iterations + 1):
        started = time.perf_counter()
        x_new = half_step(spark, users, x, y, y_summary.gram, cfg, rank, w0)
        x_summary = summarise(x_new, items.n_rows, cfg, w0, rank)
        y_new = half_step(spark, items, y, x_new, x_summary.gram, cfg, rank, w0)
        y_next = summarise(y_new, users.n_rows, cfg, w0, rank)
        seconds = time.perf_counter() - started
        if iteration == 1 and x_start is not None:  # the loss of the starting factors, from the first user step
            previous = objective(x_summary.before, x_start, y_summary, w0)
        release(x), release(y)
        x, y, y_summary = x_new, y_new, y_next
        value = objective(y_summary.after, x_summary, y_summary, w0)
        entry = {"iteration": iteration, "loss": value, "seconds": round(seconds, 4)}
        history.append(entry)
        log.info("wals (spark): iteration %d/%d loss %.6g (%.2fs), %s", iteration, cfg.iterations, value, seconds,
                 progress.step(seconds))
        if previous is not None and converged(previous, value, cfg.tolerance):
            break
        previous = value
    return x, y, history


def objective(observed: float, x: Summary, y: Summary, w0: float) -> float:
    """kernels/wals_tf.loss from its parts: the observed terms, w0 sum(X^T X * Y^T Y), both penalties."""
    return float(observed + w0 * np.sum(x.gram * y.gram) + x.penalty + y.penalty)


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
        users = side_structure(nonzeros, user_assign, _U, _I, _UB, n_users, n_items)
        items = side_structure(nonzeros, item_assign, _I, _U, _IB, n_items, n_users)
    finally:
        nonzeros.unpersist()
    log.info("wals (spark): %d user blocks (largest %d nonzeros), %d item blocks (largest %d) of at most %d",
             users.n_blocks, users.largest_block, items.n_blocks, items.largest_block, limit)
    return users, items


def side_structure(nonzeros: DataFrame, assign: DataFrame, row_col: str, other_col: str, block_col: str,
                   n_rows: int, n_other: int) -> Side:
    """One side's Side: blocks (one row each, hash-partitioned by block) and routes, materialised."""
    spark = nonzeros.sparkSession
    entries = F.collect_list(F.struct(F.col(row_col).alias("r"), F.col(other_col).alias("c"), F.col(_C).alias("w")))
    stats = assign.groupBy(_BLOCK).agg(F.sum(_COUNT).alias("n")).agg(F.count("*"), F.max("n")).first()
    n_blocks, largest = int(stats[0]), int(stats[1] or 0)
    partitions = max(1, min(n_blocks, int(spark.conf.get("spark.sql.shuffle.partitions"))))
    blocks = (nonzeros.groupBy(F.col(block_col).alias(_BLOCK)).agg(entries.alias("e"))
              .select(_BLOCK, F.col("e.r").alias(_ROWS), F.col("e.c").alias(_COLS), F.col("e.w").alias(_CONF))
              .repartition(partitions, _BLOCK).persist(StorageLevel.MEMORY_AND_DISK))
    routes = (nonzeros.select(F.col(other_col).alias(_IDX), F.col(block_col).alias(_BLOCK)).distinct()
              .repartition(int(spark.conf.get("spark.sql.shuffle.partitions")), _IDX)  # joins shuffle the factors only
              .persist(StorageLevel.MEMORY_AND_DISK))
    blocks.count(), routes.count()
    return Side(n_rows, n_other, assign, blocks, routes, n_blocks, largest)


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


def initial_factors(assign: DataFrame, rank: int, stddev: float, seed: int, side: int) -> DataFrame:
    """Seeded rows (ROWS_SCHEMA) for every row of `assign`, generated on the executors, checkpointed."""
    def seeded(batches):
        for batch in batches:
            idx = batch.column(_IDX).to_numpy()
            rows = initial_rows(idx, rank, stddev, seed, side)
            yield pa.RecordBatch.from_arrays([batch.column(_IDX), batch.column(_BLOCK), batch.column(_COUNT),
                                              _list_array(rows)], names=[_IDX, _BLOCK, _COUNT, FACTORS])

    return assign.mapInArrow(seeded, ROWS_SCHEMA).localCheckpoint(eager=True)


def warm_factors(assign: DataFrame, earlier: DataFrame, ids: DataFrame, index_col: str, id_col: str, rank: int,
                 stddev: float, seed: int, side: int) -> tuple[DataFrame, dict]:
    """Rows for today's indexes from an earlier model's factors matched by id (ids compared as text when
    their types differ), seeded rows for new ids; and the kept/new/dropped counts (models/warm_start.py)."""
    today_type, earlier_type = ids.schema[id_col].dataType, earlier.schema[id_col].dataType
    key = (lambda c: F.col(c).cast("string")) if today_type != earlier_type else F.col
    kept = (ids.select(F.col(index_col).alias(_IDX), key(id_col).alias("_key"))
            .join(earlier.select(key(id_col).alias("_key"), F.col(FACTORS).alias("_earlier")), "_key")
            .select(_IDX, "_earlier"))
    joined = assign.join(kept, _IDX, "left")

    def filled(batches):
        for batch in batches:
            idx = batch.column(_IDX).to_numpy()
            rows = initial_rows(idx, rank, stddev, seed, side)
            earlier_rows = batch.column("_earlier")
            have = np.asarray(earlier_rows.is_valid())
            if have.any():
                rows[have] = _matrix(earlier_rows.filter(pa.array(have)), rank)
            yield pa.RecordBatch.from_arrays([batch.column(_IDX), batch.column(_BLOCK), batch.column(_COUNT),
                                              _list_array(rows)], names=[_IDX, _BLOCK, _COUNT, FACTORS])

    rows = joined.select(_IDX, _BLOCK, _COUNT, "_earlier").mapInArrow(filled, ROWS_SCHEMA).localCheckpoint(eager=True)
    n_kept, n_earlier = kept.count(), earlier.count()
    return rows, {"kept": n_kept, "new": assign.count() - n_kept, "dropped": n_earlier - n_kept}


def half_step(spark: SparkSession, side: Side, own: DataFrame, other: DataFrame, other_gram: np.ndarray,
              cfg: WalsConfig, rank: int, w0: float) -> DataFrame:
    """New rows of `side` (SOLVED_SCHEMA) after block_half_step on every block, locally checkpointed."""
    shipped = (side.routes.join(other.select(_IDX, FACTORS), _IDX)
               .select(_BLOCK, _IDX, F.lit(0).alias(_COUNT), FACTORS, F.lit(True).alias(_OTHER)))
    rows = own.select(_BLOCK, _IDX, _COUNT, FACTORS, F.lit(False).alias(_OTHER)).unionByName(shipped)
    gram_w0 = spark.sparkContext.broadcast((w0 * other_gram).astype(np.float32))
    solve = block_solver(gram_w0, side.n_other, cfg, rank, w0)
    solved = side.blocks.groupBy(_BLOCK).cogroup(rows.groupBy(_BLOCK)).applyInArrow(solve, SOLVED_SCHEMA)
    result = solved.localCheckpoint(eager=True)
    gram_w0.unpersist()
    return result


def block_solver(gram_w0, n_other: int, cfg: WalsConfig, rank: int, w0: float):
    """The cogroup function: (a block's nonzeros, its own and shipped rows) -> its new rows."""
    def solve(nonzeros: pa.Table, rows: pa.Table) -> pa.Table:
        other = np.asarray(rows.column(_OTHER).to_numpy(zero_copy_only=False), bool)
        index = rows.column(_IDX).to_numpy()
        factors = _matrix(rows.column(FACTORS), rank)
        own_at = np.flatnonzero(~other)
        own_at = own_at[np.argsort(index[own_at], kind="stable")]
        other_at = np.flatnonzero(other)
        other_at = other_at[np.argsort(index[other_at], kind="stable")]
        own_index, other_index = index[own_at], index[other_at]
        if nonzeros.num_rows:
            row_of = np.searchsorted(own_index, _flat(nonzeros, _ROWS))
            col_of = np.searchsorted(other_index, _flat(nonzeros, _COLS))
            conf = _flat(nonzeros, _CONF)
        else:
            row_of = col_of = np.zeros(0, np.int64)
            conf = np.zeros(0, np.float32)
        counts = rows.column(_COUNT).to_numpy()[own_at]
        nz = BlockNonzeros(row_of, col_of, conf, len(own_at), factors[other_at])
        reg = row_regularization(counts, n_other, cfg.reg, w0, cfg.reg_exponent)
        x = factors[own_at]
        before = observed_loss(x, nz, w0)
        x = block_half_step(x, nz, gram_w0.value, reg, w0, cfg.cg_steps)
        return pa.table({_IDX: pa.array(own_index, pa.int32()), _BLOCK: rows.column(_BLOCK).take(pa.array(own_at)),
                         _COUNT: pa.array(counts, pa.int32()), FACTORS: _list_array(x),
                         _BEFORE: pa.array(before), _AFTER: pa.array(observed_loss(x, nz, w0))})

    return solve


def summarise(rows: DataFrame, n_other: int, cfg: WalsConfig, w0: float, rank: int) -> Summary:
    """Gramian, penalty and observed-loss sums of a side's rows in one pass (one row per partition)."""
    has_loss = _BEFORE in rows.columns

    def partial(batches):
        gram, penalty, before, after, n = None, 0.0, 0.0, 0.0, 0
        for batch in batches:
            if batch.num_rows == 0:
                continue
            m = _matrix(batch.column(FACTORS), rank).astype(np.float64)
            gram = m.T @ m if gram is None else gram + m.T @ m
            reg = row_regularization(batch.column(_COUNT).to_numpy(), n_other, cfg.reg, w0, cfg.reg_exponent)
            penalty += float(np.sum(reg.astype(np.float64) * np.sum(m * m, axis=1)))
            if has_loss:
                before += float(np.sum(batch.column(_BEFORE).to_numpy()))
                after += float(np.sum(batch.column(_AFTER).to_numpy()))
            n += batch.num_rows
        if gram is not None:
            yield pa.RecordBatch.from_pylist([{"gram": gram.ravel().tolist(), "penalty": penalty, "before": before,
                                               "after": after, "rows": n}])

    parts = rows.mapInArrow(partial, SUMMARY_SCHEMA).collect()
    gram = np.zeros((rank, rank))
    for part in parts:
        gram += np.asarray(part["gram"]).reshape(rank, rank)
    return Summary(gram, sum(p["penalty"] for p in parts), sum(p["before"] for p in parts),
                   sum(p["after"] for p in parts))


def as_factor_model(x: DataFrame, y: DataFrame, prepared: PreparedData, metadata: dict) -> FactorModel:
    """The trained rows as a FactorModel (index, id, factors), like FactorModel.from_numpy's."""
    import datetime as dt

    meta = dict(metadata)
    meta.setdefault("created_at", dt.datetime.now(dt.timezone.utc).isoformat())
    users = x.select(F.col(_IDX).alias(USER_INDEX), FACTORS).join(prepared.user_ids, USER_INDEX)
    items = y.select(F.col(_IDX).alias(ITEM_INDEX), FACTORS).join(prepared.item_ids, ITEM_INDEX)
    return FactorModel(users.select(USER_INDEX, USER_ID, FACTORS), items.select(ITEM_INDEX, ITEM_ID, FACTORS), meta)


def release(frame: DataFrame) -> None:
    """Drop a locally checkpointed frame's blocks now rather than when the JVM collects it."""
    try:
        frame._jdf.queryExecution().logical().rdd().unpersist(False)
    except Exception:  # not a checkpointed frame (or another Spark): the context cleaner frees it later
        pass


def _matrix(column, rank: int) -> np.ndarray:
    """A list<float> Arrow column as a (rows, rank) float32 matrix."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(array) == 0:
        return np.zeros((0, rank), np.float32)
    return np.asarray(array.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(len(array), rank)


def _flat(table: pa.Table, column: str) -> np.ndarray:
    """The concatenated list values of `column` over the table's rows (one row: a block)."""
    return table.column(column).combine_chunks().flatten().to_numpy(zero_copy_only=False)


def _list_array(matrix: np.ndarray) -> pa.Array:
    rows, rank = matrix.shape
    offsets = pa.array(np.arange(0, (rows + 1) * rank, rank, dtype=np.int32) if rows else np.zeros(1, np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(matrix, np.float32).ravel()))
