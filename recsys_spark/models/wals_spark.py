"""WALS on the executors: driver WALS's objective and conjugate-gradient half-steps (models/wals.py,
kernels/wals_tf.py) solved block by block with Spark, for data past the driver's budget.

Set-up, once: the fold-in parameters from Spark aggregations (models/spark_weights.py, the same
values models/wals.foldin_parameters computes on collected arrays); rows of each side packed into
blocks of consecutive indexes holding at most model.wals.block_interactions nonzeros (a row with more
gets a block of its own); the confidences; per side a structure of one row per block, as Spark ML
ALS's in- and out-blocks: its nonzeros with local row and column numbers, and for every block of the
other side the positions of its rows that block needs (models/wals_spark_blocks.py).

A side's factors live packed, as raw float32 bytes: one row per block (its factors, with their
Gramian, regularisation term and observed loss, computed by the task that solved them) and one part
per (block, destination block of the other side) holding the rows that destination names, so each
row is shipped once per destination block in one array per pair. Each half-step: the other side's
Gramian goes out as a broadcast; each block's structure is cogrouped with its own packed row and the
parts addressed to it, and kernels/wals_blocks.block_half_step solves the block in one task, which
writes the block's new packed rows. They are checkpointed locally (localCheckpoint: lineage does not
grow with the iterations); the summary (so the loss, and with it model.wals.tolerance) is read from
them without another Python pass. Initial factors are seeded per chunk of indexes
(kernels/wals_blocks.initial_rows), on the executors. Driver memory holds rank x rank matrices and
one row per block, never the interactions or the factors.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import ModelConfig, TrainConfig, WalsConfig
from recsys_spark.data.prepare import PreparedData
from recsys_spark.data.schema import FACTORS, ITEM_ID, ITEM_INDEX, USER_ID, USER_INDEX, WEIGHT
from recsys_spark.kernels.confidence import row_regularization
from recsys_spark.kernels.convergence import converged
from recsys_spark.kernels.wals_blocks import BlockNonzeros, block_half_step, initial_rows
from recsys_spark.models import spark_weights
from recsys_spark.models.factor_model import FactorModel, model_metadata
from recsys_spark.models.wals import resolve_parameters
from recsys_spark.models.wals_spark_blocks import _BLOCK, _COUNT, _I, _IDX, _U, _W, Side, build_sides
from recsys_spark.models.warm_start import EarlierModel, as_earlier

log = logging.getLogger(__name__)

ROWS_SCHEMA = f"{_IDX} int, {_BLOCK} long, {_COUNT} int, {FACTORS} array<float>"
# a side's rows, packed: kind 0, one row per block (its factors, their summary); kind 1, one row per
# (source block, destination block of the other side) holding the rows the destination needs
PACKED_SCHEMA = (f"{_BLOCK} long, _kind byte, _src long, {_IDX} binary, _payload binary, _gram binary, "
                 "_penalty double, _before double, _after double")
OWN, PART = 0, 1


@dataclass
class Summary:
    """A side's rows summarised: Gramian Y^T Y, sum of lambda |y|^2, and the observed loss of its
    blocks before and after their solve (0 for initial rows)."""
    gram: np.ndarray
    penalty: float
    before: float
    after: float


def train(prepared: PreparedData, model_cfg: ModelConfig, train_cfg: TrainConfig, item_features=None,
          initial: FactorModel | EarlierModel | None = None) -> FactorModel:
    """Fit WALS on the executors, from `initial`'s factor tables (matched by id) when given; the metadata is
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
        x_rows = initial_factors(users.assign, rank, cfg.init_stddev, seed, 1)
        y_rows = initial_factors(items.assign, rank, cfg.init_stddev, seed, 2)
    else:
        initial = as_earlier(initial).tables()
        x_rows, user_counts = warm_factors(users.assign, initial.user_factors, prepared.user_ids, USER_INDEX,
                                           USER_ID, rank, cfg.init_stddev, seed, 1)
        y_rows, item_counts = warm_factors(items.assign, initial.item_factors, prepared.item_ids, ITEM_INDEX,
                                           ITEM_ID, rank, cfg.init_stddev, seed, 2)
        counts = {"users": user_counts, "items": item_counts}
    w0 = foldin["unobserved_weight"]
    x, y = pack(users, x_rows, cfg, rank, w0), pack(items, y_rows, cfg, rank, w0)
    release(x_rows), release(y_rows)
    x, y, history = fit(spark, users, items, x, y, cfg, rank, w0)
    x, y = unpack(x, rank), unpack(y, rank)
    for side in (users, items):
        side.structure.unpersist()
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
    x, y: the users' and items' packed rows (PACKED_SCHEMA), checkpointed."""
    from recsys_spark.models.progress import LoopProgress

    progress = LoopProgress(cfg.iterations)
    w0 = unobserved_weight
    y_summary = summarise(y, rank)
    x_start = summarise(x, rank) if cfg.tolerance > 0 else None
    previous, history = None, []
    for iteration in range(1, cfg.iterations + 1):
        started = time.perf_counter()
        x_new = half_step(spark, users, x, y, y_summary.gram, cfg, rank, w0)
        x_summary = summarise(x_new, rank)
        y_new = half_step(spark, items, y, x_new, x_summary.gram, cfg, rank, w0)
        y_next = summarise(y_new, rank)
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
    """New packed rows of `side` after block_half_step on every block, locally checkpointed: each block
    receives its own rows and one part from every other-side block that holds rows it needs."""
    columns = (_BLOCK, "_kind", "_src", "_payload")
    inputs = own.where(F.col("_kind") == OWN).select(*columns).unionByName(
        other.where(F.col("_kind") == PART).select(*columns))
    gram_w0 = spark.sparkContext.broadcast((w0 * other_gram).astype(np.float32))
    solve = block_solver(gram_w0, side.n_other, cfg, rank, w0)
    solved = side.structure.groupBy(_BLOCK).cogroup(inputs.groupBy(_BLOCK)).applyInArrow(solve, PACKED_SCHEMA)
    result = solved.localCheckpoint(eager=True)
    gram_w0.unpersist()
    return result


def block_solver(gram_w0, n_other: int, cfg: WalsConfig, rank: int, w0: float):
    """The cogroup function: (a block's structure, its own rows and the parts shipped to it) -> its new
    packed rows (PACKED_SCHEMA)."""
    def solve(structure: pa.Table, inputs: pa.Table) -> pa.Table:
        kinds = inputs.column("_kind").to_numpy()
        own_at = int(np.flatnonzero(kinds == OWN)[0])
        x = _array(inputs, "_payload", np.float32, own_at).reshape(-1, rank)
        parts = np.flatnonzero(kinds == PART)
        parts = parts[np.argsort(inputs.column("_src").to_numpy()[parts], kind="stable")]
        if len(parts):
            other = np.concatenate([_array(inputs, "_payload", np.float32, int(at)) for at in parts]).reshape(-1, rank)
        else:
            other = np.zeros((0, rank), np.float32)
        counts = _array(structure, _COUNT, np.int32)
        nz = BlockNonzeros(_array(structure, "_rows", np.int32), _array(structure, "_cols", np.int32),
                           _array(structure, "_conf", np.float32), len(counts), other)
        reg = row_regularization(counts, n_other, cfg.reg, w0, cfg.reg_exponent)
        x, before, after = block_half_step(x, nz, gram_w0.value, reg, w0, cfg.cg_steps)
        return packed_rows(structure, x, reg, before, after)

    return solve


def packed_rows(structure: pa.Table, x: np.ndarray, reg: np.ndarray, before: float, after: float) -> pa.Table:
    """A block's PACKED_SCHEMA rows: its own (factors, Gramian, penalty, observed loss before and after)
    and one part per destination block with the rows that block needs."""
    block = structure.column(_BLOCK)[0].as_py()
    dests, offsets = _array(structure, "_dests", np.int64), _array(structure, "_offsets", np.int32)
    positions = _array(structure, "_positions", np.int32)
    x = np.ascontiguousarray(x, np.float32)
    m = x.astype(np.float64)
    penalty = float(np.sum(np.asarray(reg, np.float64) * np.sum(m * m, axis=1)))
    payloads = [x.tobytes()] + [x[positions[offsets[d]:offsets[d + 1]]].tobytes() for d in range(len(dests))]
    n = len(payloads)
    none = [None] * (n - 1)
    return pa.Table.from_arrays([
        pa.array(np.r_[block, dests], pa.int64()), pa.array([OWN] + [PART] * (n - 1), pa.int8()),
        pa.array([block] * n, pa.int64()), pa.array([structure.column(_IDX)[0].as_py()] + none, pa.binary()),
        pa.array(payloads, pa.binary()), pa.array([(m.T @ m).tobytes()] + none, pa.binary()),
        pa.array([penalty] + none, pa.float64()), pa.array([before] + none, pa.float64()),
        pa.array([after] + none, pa.float64())], names=[f.split()[0] for f in PACKED_SCHEMA.split(", ")])


def pack(side: Side, rows: DataFrame, cfg: WalsConfig, rank: int, w0: float) -> DataFrame:
    """Per-row factors (ROWS_SCHEMA) as the side's packed rows (observed loss 0), locally checkpointed."""
    n_other = side.n_other

    def packed(structure: pa.Table, block_rows: pa.Table) -> pa.Table:
        idx = _array(structure, _IDX, np.int32)
        order = np.argsort(block_rows.column(_IDX).to_numpy(), kind="stable")
        x = _matrix(block_rows.column(FACTORS), rank)[order]
        assert len(x) == len(idx), "every row of a block has factors"
        reg = row_regularization(_array(structure, _COUNT, np.int32), n_other, cfg.reg, w0, cfg.reg_exponent)
        return packed_rows(structure, x, reg, 0.0, 0.0)

    return (side.structure.groupBy(_BLOCK).cogroup(rows.groupBy(_BLOCK)).applyInArrow(packed, PACKED_SCHEMA)
            .localCheckpoint(eager=True))


def unpack(packed: DataFrame, rank: int) -> DataFrame:
    """A side's packed rows as one row per index (_idx, factors)."""
    def rows(batches):
        for batch in batches:
            table = pa.Table.from_batches([batch])
            for at in range(table.num_rows):
                idx = _array(table, _IDX, np.int32, at)
                x = _array(table, "_payload", np.float32, at).reshape(-1, rank)
                yield pa.RecordBatch.from_arrays([pa.array(idx, pa.int32()), _list_array(x)], names=[_IDX, FACTORS])

    return (packed.where(F.col("_kind") == OWN).select(_IDX, "_payload")
            .mapInArrow(rows, f"{_IDX} int, {FACTORS} array<float>"))


def summarise(packed: DataFrame, rank: int) -> Summary:
    """Gramian, penalty and observed-loss sums of a side's packed rows (one row per block reaches the
    driver, no Python pass: the solve computed them)."""
    parts = (packed.where(F.col("_kind") == OWN).select("_gram", "_penalty", "_before", "_after").collect())
    gram = np.zeros((rank, rank))
    for part in parts:
        gram += np.frombuffer(part["_gram"], np.float64).reshape(rank, rank)
    return Summary(gram, sum(p["_penalty"] for p in parts), sum(p["_before"] for p in parts),
                   sum(p["_after"] for p in parts))


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


def _array(table: pa.Table, column: str, dtype, row: int = 0) -> np.ndarray:
    """A binary cell's bytes as a numpy array (no copy)."""
    return np.frombuffer(table.column(column)[row].as_buffer(), dtype)


def _matrix(column, rank: int) -> np.ndarray:
    """A list<float> Arrow column as a (rows, rank) float32 matrix."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(array) == 0:
        return np.zeros((0, rank), np.float32)
    return np.asarray(array.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(len(array), rank)


def _list_array(matrix: np.ndarray) -> pa.Array:
    rows, rank = matrix.shape
    offsets = pa.array(np.arange(0, (rows + 1) * rank, rank, dtype=np.int32) if rows else np.zeros(1, np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(matrix, np.float32).ravel()))
