"""Scoring throughput on one set of factors: Spark ML recommendForAllUsers, numpy GEMM, our stage.

Generates random user and item factors (seeded) and per-user seen items, writes them once as
Parquet, then measures user-item pairs per second of
  (a) pyspark.ml ALSModel.recommendForAllUsers on exactly these factors (no seen filtering),
  (b) numpy GEMM alone in this process (all BLAS threads, item blocks, no selection),
  (c) recsys_spark.serving.scoring.recommend with seen items masked, written to Spark's noop sink.
(a) and (c) first run once on 5% of the users (JVM JIT, Python workers), then --repeats timed runs
(median reported).
The last line is `recommendForAllUsers_ratio=<c/a> gemm_ratio=<c/b>`.

    .venv/bin/python scripts/bench_scoring.py            # 200k users x 20k items x rank 64
    .venv/bin/python scripts/bench_scoring.py --users 20000 --items 5000   # quick
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--seen", type=int, default=20, help="mean seen items per user")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="score.precision of (c): its candidate GEMM (results are exact either way)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of (a) and (c); the median is reported")
    parser.add_argument("--workdir", default=None, help="where the generated Parquet goes (default: a temp dir)")
    return parser.parse_args(argv)


def generate(root: Path, n_users: int, n_items: int, rank: int, mean_seen: int, seed: int = 7):
    """Factors and seen pairs as Parquet: ours (index, id, factors), ALS layout (id, features), seen."""
    rng = np.random.default_rng(seed)
    users = (rng.normal(size=(n_users, rank)) / np.sqrt(rank)).astype(np.float32)
    items = (rng.normal(size=(n_items, rank)) / np.sqrt(rank)).astype(np.float32)
    items *= rng.lognormal(0.0, 0.3, size=(n_items, 1)).astype(np.float32)  # popular items: larger norms
    counts = np.minimum(rng.geometric(1.0 / mean_seen, size=n_users), n_items)
    seen_users = np.repeat(np.arange(n_users, dtype=np.int32), counts)
    seen_items = rng.integers(0, n_items, size=seen_users.size, dtype=np.int32)
    for name, matrix in (("user", users), ("item", items)):
        index = pa.array(np.arange(len(matrix), dtype=np.int32))
        factors = pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), rank).cast(pa.list_(pa.float32()))
        ids = pa.array(np.char.add(name[0], np.arange(len(matrix)).astype(str)).astype(object), pa.string())
        pq.write_table(pa.table({f"{name}_index": index, f"{name}_id": ids, "factors": factors}),
                       root / f"{name}_factors.parquet")
        pq.write_table(pa.table({"id": index, "features": factors}), root / f"als_{name}Factors.parquet")
    pq.write_table(pa.table({"user_index": seen_users, "item_index": seen_items}), root / "seen.parquet")
    return users, items


def numpy_gemm_rate(users: np.ndarray, items: np.ndarray, block_users: int = 2048) -> float:
    """Pairs/s of users @ items.T in user blocks, nothing else."""
    out = np.empty((block_users, len(items)), dtype=np.float32)
    started = time.perf_counter()
    for start in range(0, len(users), block_users):
        chunk = users[start:start + block_users]
        np.matmul(chunk, items.T, out=out[: len(chunk)])
    return len(users) * len(items) / (time.perf_counter() - started)


def als_model(spark, root: Path, rank: int):
    """An ALSModel holding exactly our factors: a saved tiny model with its factor tables replaced."""
    from pyspark.ml.recommendation import ALS, ALSModel

    tiny = spark.createDataFrame([(0, 0, 1.0), (1, 1, 1.0)], "user int, item int, rating float")
    path = root / "als_model"
    ALS(rank=rank, maxIter=1, seed=0).fit(tiny).write().overwrite().save(str(path))
    for side in ("userFactors", "itemFactors"):
        shutil.rmtree(path / side)
        spark.read.parquet(str(root / f"als_{side}.parquet")).write.parquet(str(path / side))
    return ALSModel.load(str(path))


def _runs(times) -> str:
    return " ".join(f"{t:.1f}" for t in times)


def timed_noop(df) -> float:
    started = time.perf_counter()
    df.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - started


def broadcast_loads_per_worker(spark, megabytes: int = 64, tasks: int = 24) -> str:
    """How often Python workers deserialise one broadcast over many tasks (should be once each)."""
    payload = spark.sparkContext.broadcast(np.zeros(megabytes << 18, dtype=np.float32))

    def probe(batches):
        fresh = "_value" not in vars(payload)
        size = payload.value.nbytes
        for _ in batches:
            pass
        yield pa.RecordBatch.from_pydict({"pid": [os.getpid()], "fresh": [fresh], "size": [size]})

    rows = (spark.range(tasks, numPartitions=tasks)
            .mapInArrow(probe, "pid long, fresh boolean, size long").toPandas())
    payload.unpersist()
    loads = rows.groupby("pid")["fresh"].sum()
    return f"{len(rows)} tasks on {len(loads)} Python workers, broadcast deserialised {int(loads.sum())} times"


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import functions as F

    from recsys_spark.app.session import build_session
    from recsys_spark.config import ScoreConfig, SparkConfig
    from recsys_spark.kernels.engines import resolve_precision
    from recsys_spark.models.factor_model import FactorModel, model_metadata
    from recsys_spark.serving.scoring import recommend

    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench-scoring-"))
    root.mkdir(parents=True, exist_ok=True)
    pairs = args.users * args.items
    print(f"users={args.users} items={args.items} rank={args.rank} top={args.top} "
          f"load_average={os.getloadavg()[0]:.1f} cores={os.cpu_count()}", flush=True)
    users, items = generate(root, args.users, args.items, args.rank, args.seen)

    gemm = float(np.median([numpy_gemm_rate(users, items) for _ in range(3)]))
    print(f"(b) numpy GEMM, one process: {gemm / 1e6:.0f}M pairs/s", flush=True)
    del users

    spark = build_session(SparkConfig(master=args.master, app_name="bench-scoring", log_level="ERROR", conf={
        "spark.driver.memory": "6g", "spark.sql.shuffle.partitions": "8", "spark.ui.enabled": "false"}))
    print(broadcast_loads_per_worker(spark), flush=True)

    als = als_model(spark, root, args.rank)
    warm_users = max(args.users // 20, 1)  # warm-up on 5% of the users: JIT, Python workers, caches
    timed_noop(als.recommendForUserSubset(
        spark.range(warm_users).select(F.col("id").cast("int").alias(als.getUserCol())), args.top))
    a_times = [timed_noop(als.recommendForAllUsers(args.top)) for _ in range(args.repeats)]
    a = pairs / float(np.median(a_times))
    print(f"(a) ALSModel.recommendForAllUsers: {a / 1e6:.1f}M pairs/s ({np.median(a_times):.1f}s; runs {_runs(a_times)})",
          flush=True)

    model = FactorModel(spark.read.parquet(str(root / "user_factors.parquet")),
                        spark.read.parquet(str(root / "item_factors.parquet")),
                        model_metadata("bench", args.rank, args.rank, None))
    seen = spark.read.parquet(str(root / "seen.parquet"))
    cfg = ScoreConfig(top_n=args.top, precision=args.precision)
    timed_noop(recommend(FactorModel(model.user_factors.filter(F.col("user_index") < warm_users),
                                     model.item_factors, model.metadata), seen, cfg))
    c_times = [timed_noop(recommend(model, seen, cfg)) for _ in range(args.repeats)]
    c = pairs / float(np.median(c_times))
    print(f"(c) recsys_spark scoring, seen masked (batch_users={cfg.batch_users}, block_items={cfg.block_items}, "
          f"precision={cfg.precision}: {resolve_precision(cfg.precision)} here): "
          f"{c / 1e6:.1f}M pairs/s ({np.median(c_times):.1f}s; runs {_runs(c_times)})", flush=True)
    print(f"load_average_end={os.getloadavg()[0]:.1f}")
    spark.stop()
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)
    print(f"recommendForAllUsers_ratio={c / a:.2f} gemm_ratio={c / gemm:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
