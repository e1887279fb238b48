"""Training speed: WALS (on the driver, or on the executors) vs implicit's ALS and Spark ML ALS, seconds per iteration.

For each size, generates interactions with recsys_spark.data.sample_data.iter_interactions, merges
duplicate (user, item) pairs (weights add up, as prepare does) and indexes them, then measures
  (a) WALS on the driver with the kernel a CPU-only driver runs (`wals`: kernels/wals_cpu.fit, numpy
      on one thread per core) or the TensorFlow kernel (`wals_tf`: kernels/wals_tf.fit), from
      the COO arrays: the median of the recorded seconds per iteration (both half-steps and the loss),
      and the peak of the process's private memory during the fit above its level before (MemoryPeak),
      less the two factor matrices, per interaction; each driver trainer runs in a fresh interpreter;
  (i) implicit's ALS (the `bench` extra: implicit.cpu.als, use_cg=True, the same rank, confidences
      1 + 2w as the CSR values, regularization 0.02, one thread per core, BLAS pinned to one thread with
      threadpoolctl as implicit asks, no training loss): (fit with 1 + n iterations minus fit with 1) / n,
      from the same COO arrays (the CSR it needs built inside the measured memory), peak memory as (a);
  (b) Spark ML ALS, implicitPrefs, same rank, on local[2]: after an untimed warm-up fit (first size),
      (fit with 1 + n iterations minus fit with 1 iteration) / n, so data partitioning and setup
      are not counted as iterations;
  (c) wals_spark: models/wals_spark.train (model.wals.engine=spark) on the same Parquet and cores, the
      median of its recorded seconds per iteration (both half-steps, their checkpoints and the loss);
      set-up (weights' statistics, blocks, routes) is reported apart, with the peak resident memory
      (/proc, sampled) of the driver Python, the JVM and the largest Python worker during the fit, and
      the driver Python's growth over its level at the start (after the generator's memory is released).
Both use model.wals / model.als defaults from recsys_spark.config. The last line is
`ratios: <size>=<ALS seconds per iteration / WALS seconds per iteration> ...` (above 1: WALS faster)
and, with implicit, `ratios (WALS / implicit): <size>=...` (at most 1: WALS as fast or faster).

    .venv/bin/python scripts/bench_training.py --sizes 1M            # quick
    .venv/bin/python scripts/bench_training.py --sizes 10M,30M --trainers wals,implicit
    .venv/bin/python scripts/bench_training.py --sizes 1M,10M --iterations 3
    .venv/bin/python scripts/bench_training.py --sizes 10M --trainers als   # one trainer per process
    .venv/bin/python scripts/bench_training.py --sizes 1M,10M --trainers wals_spark,als
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SIZES = {  # interactions: (users, items)
    "1M": (1_000_000, 50_000, 10_000),
    "10M": (10_000_000, 500_000, 50_000),
    "30M": (30_000_000, 1_500_000, 100_000),
}
TRAINERS = ("wals", "wals_tf", "implicit", "als", "wals_spark")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1M,10M", help=f"comma-separated, from {', '.join(SIZES)}")
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations per trainer")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--trainers", default="wals,als", help=f"comma-separated: {', '.join(TRAINERS)} (one process each "
                        "to spare memory)")
    parser.add_argument("--block-interactions", type=int, default=None,
                        help="wals_spark: model.wals.block_interactions (default: its config default)")
    parser.add_argument("--workdir", default=None, help="where the generated Parquet goes (default: a temp dir)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # in_fresh_process's mode
    parser.add_argument("--shape", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return args
    args.sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    args.trainers = [t.strip() for t in args.trainers.split(",") if t.strip()]
    if not args.trainers or any(t not in TRAINERS for t in args.trainers):
        parser.error(f"--trainers takes {', '.join(TRAINERS)}; got {','.join(args.trainers)!r}")
    unknown = [s for s in args.sizes if s not in SIZES]
    if unknown:
        parser.error(f"unknown size {unknown[0]}; use one of {', '.join(SIZES)}")
    return args


def generate(n_interactions: int, n_users: int, n_items: int, seed: int = 42):
    """(users, items, weights, n_users, n_items): duplicates merged, dense indexes."""
    from recsys_spark.data.sample_data import iter_interactions

    keys, weights = [], []
    for frame in iter_interactions(n_users, n_items, n_interactions, seed=seed):
        users = frame["user_id"].str.slice(1).astype(np.int64).to_numpy()
        items = frame["item_id"].str.slice(1).astype(np.int64).to_numpy()
        keys.append(users * n_items + items)
        weights.append(frame["weight"].to_numpy(np.float64))
    pairs, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    summed = np.bincount(inverse, weights=np.concatenate(weights)).astype(np.float32)
    user_ids, users = np.unique(pairs // n_items, return_inverse=True)
    item_ids, items = np.unique(pairs % n_items, return_inverse=True)
    return users.astype(np.int32), items.astype(np.int32), summed, len(user_ids), len(item_ids)


class MemoryPeak:
    """Peak memory this process wrote (bytes of Private_Dirty in /proc/self/smaps_rollup: its own pages,
    not the shared libraries') while the block runs, sampled every 20 ms, and its level before."""

    def __enter__(self):
        import gc
        import threading

        gc.collect()
        self.before = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    def summary(self, pairs: int, n_users: int, n_items: int, rank: int) -> dict:
        """Peak and growth (MiB) and the growth's bytes per interaction less the factor matrices (float32)."""
        return {"peak_mb": self.peak / 2**20, "growth_mb": (self.peak - self.before) / 2**20,
                "per_interaction": (self.peak - self.before - (n_users + n_items) * rank * 4) / pairs}


def _rss() -> int:
    with open("/proc/self/smaps_rollup", encoding="ascii") as rollup:
        for line in rollup:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1]) * 1024
    return 0


def in_fresh_process(trainer: str, workdir: Path, users, items, weights, n_users: int, n_items: int, rank: int,
                     iterations: int) -> dict:
    """One driver trainer in a new interpreter (`--child`) that loads the arrays from .npy files: its memory
    starts clean, without the pages this process freed and kept (which a fork would inherit and reuse),
    and nothing of one trainer is left for the next."""
    import json
    import subprocess

    for name, array in (("users", users), ("items", items), ("weights", weights)):
        np.save(workdir / f"{name}.npy", array)
    command = [sys.executable, __file__, "--child", trainer, "--workdir", str(workdir), "--rank", str(rank),
               "--iterations", str(iterations), "--shape", f"{n_users},{n_items}"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{trainer} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(args) -> None:
    """The --child mode: time one driver trainer on the arrays in --workdir and print its result as JSON."""
    import json

    arrays = [np.load(Path(args.workdir) / f"{name}.npy") for name in ("users", "items", "weights")]
    n_users, n_items = (int(v) for v in args.shape.split(","))
    if args.child == "implicit":
        result = time_implicit(*arrays, n_users, n_items, args.rank, args.iterations)
    else:
        result = time_wals(*arrays, n_users, n_items, args.rank, args.iterations,
                           "numpy" if args.child == "wals" else "tensorflow")
    print(json.dumps(result))


def time_wals(users, items, weights, n_users, n_items, rank, iterations, kernel: str = "numpy") -> dict:
    """The driver kernel on the COO arrays, the objective implicit is given (linear confidence 1 + 2w,
    w0 1): seconds of each iteration and the peak memory (MemoryPeak)."""
    from recsys_spark.config import WalsConfig
    from recsys_spark.kernels.confidence import confidence

    if kernel == "numpy":
        from recsys_spark.kernels.wals_cpu import fit
    else:
        from recsys_spark.kernels.wals_tf import fit
    cfg = WalsConfig(confidence="linear", unobserved_weight=1.0)  # the confidences implicit is given: 1 + 2w
    conf = confidence(users, items, weights, cfg.confidence, alpha=cfg.alpha, epsilon=cfg.epsilon)
    with MemoryPeak() as memory:
        _, _, history = fit(users, items, conf, n_users, n_items, rank, iterations, cfg.reg, cfg.unobserved_weight,
                            cfg.reg_exponent, cfg.cg_steps, cfg.init_stddev, seed=42)
    return {"seconds": [h["seconds"] for h in history],
            "memory": memory.summary(len(users), n_users, n_items, rank)}


def time_implicit(users, items, weights, n_users, n_items, rank, iterations) -> dict:
    """implicit's conjugate-gradient ALS (see the module docstring): seconds per iteration, peak memory."""
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from recsys_spark.config import WalsConfig
    from recsys_spark.kernels.wals_cpu import default_threads

    conf = (1.0 + 2.0 * weights).astype(np.float32)
    elapsed = {}
    with threadpool_limits(1, "blas"), MemoryPeak() as memory:
        user_items = sp.csr_matrix((conf, (users, items)), shape=(n_users, n_items))
        for n in (1, 1 + iterations):
            model = AlternatingLeastSquares(factors=rank, regularization=WalsConfig().reg, iterations=n, use_cg=True,
                                            num_threads=default_threads(), random_state=42,
                                            calculate_training_loss=False)
            started = time.perf_counter()
            model.fit(user_items, show_progress=False)
            elapsed[n] = time.perf_counter() - started
            del model
    return {"per_iteration": (elapsed[1 + iterations] - elapsed[1]) / iterations,
            "memory": memory.summary(len(users), n_users, n_items, rank)}


def time_spark_als(spark, path: Path, rank: int, iterations: int, warm_up: bool) -> tuple[float, float]:
    """(seconds per iteration, seconds of the 1-iteration fit); warm_up: first an untimed fit."""
    from recsys_spark.config import ModelConfig
    from recsys_spark.models.spark_als import build_als

    data = spark.read.parquet(str(path)).cache()
    data.count()
    elapsed = {}
    for n in ((0,) if warm_up else ()) + (1, 1 + iterations):  # 0: a 1-iteration warm-up of the JVM
        als = build_als(ModelConfig(kind="als", rank=rank), spark.sparkContext.defaultParallelism).setMaxIter(max(n, 1))
        started = time.perf_counter()
        model = als.fit(data)
        elapsed[n] = time.perf_counter() - started
        model.userFactors.unpersist()
        model.itemFactors.unpersist()
        print(f"  spark als maxIter={max(n, 1)}{' (warm-up)' if n == 0 else ''}: {elapsed[n]:.1f}s", flush=True)
    data.unpersist()
    return (elapsed[1 + iterations] - elapsed[1]) / iterations, elapsed[1]


def time_wals_spark(spark, path: Path, n_users: int, n_items: int, rank: int, iterations: int,
                    block_interactions: int | None) -> dict:
    """The distributed engine on the Parquet at `path`, the objective of time_wals (linear, w0 1):
    median seconds per iteration, set-up seconds, blocks and peak RSS (MiB) during the fit."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_scale import MemorySampler, processes
    from pyspark.sql import functions as F

    from recsys_spark.config import ModelConfig, TrainConfig, WalsConfig
    from recsys_spark.data.prepare import PreparedData
    from recsys_spark.models import wals_spark

    data = spark.read.parquet(str(path)).cache()
    data.count()
    ids = {name: spark.range(n).select(F.col("id").cast("int").alias(f"{name}_index"),
                                       F.col("id").cast("string").alias(f"{name}_id"))
           for name, n in (("user", n_users), ("item", n_items))}
    prepared = PreparedData(data, ids["user"], ids["item"], n_users, n_items)
    extra = {"block_interactions": block_interactions} if block_interactions else {}
    cfg = WalsConfig(confidence="linear", unobserved_weight=1.0, iterations=iterations, tolerance=0.0,
                     engine="spark", **extra)
    _release_freed_memory()  # the generator's freed pages go back first: the growth is the fit's
    driver_before = processes()[os.getpid()][2]  # as MemorySampler reads it
    sampler = MemorySampler(interval=0.25)
    sampler.start()
    started = time.perf_counter()
    model = wals_spark.train(prepared, ModelConfig(kind="wals", rank=rank, wals=cfg), TrainConfig())
    total = time.perf_counter() - started
    sampler.stopped.set()
    sampler.join()
    seconds = [h["seconds"] for h in model.metadata["history"]]
    data.unpersist()
    peak = {k: round(v / 2**20) for k, v in sampler.peak.items()}
    peak["driver_python_growth"] = round((sampler.peak["driver_python"] - driver_before) / 2**20)
    print(f"  wals_spark iterations: {', '.join(f'{s:.2f}s' for s in seconds)}; blocks {model.metadata['blocks']}; "
          f"peak RSS MiB {peak}", flush=True)
    return {"per_iteration": statistics.median(seconds), "setup": total - sum(seconds),
            "blocks": model.metadata["blocks"], "peak_mb": peak}


def _release_freed_memory() -> None:
    """A collection, then Arrow's pool and glibc's heap hand freed memory back to the system (where they can)."""
    import ctypes
    import gc

    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def build_spark(master: str, driver_memory: str, workdir: Path):
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from recsys_spark.app.session import build_session
    from recsys_spark.config import SparkConfig

    spark = build_session(SparkConfig(master=master, app_name="bench-training", conf={
        "spark.driver.memory": driver_memory, "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "4", "spark.local.dir": str(workdir / "spark-local")}))
    spark.sparkContext.setCheckpointDir(str(workdir / "checkpoints"))
    return spark


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        return child(args)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-training-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; cpus {os.cpu_count()}")
    spark = build_spark(args.master, args.driver_memory, workdir) if {"als", "wals_spark"} & set(args.trainers) else None
    rows = []
    try:
        for size in args.sizes:
            n_interactions, n_users, n_items = SIZES[size]
            started = time.perf_counter()
            users, items, weights, n_users, n_items = generate(n_interactions, n_users, n_items)
            print(f"{size}: {len(users)} distinct pairs, {n_users} users x {n_items} items "
                  f"(generated in {time.perf_counter() - started:.1f}s)", flush=True)
            wals = als = setup = float("nan")
            driver = {}  # trainer: (seconds per iteration, peak bytes per interaction beyond the factors)
            distributed = {"per_iteration": float("nan"), "setup": float("nan"), "peak_mb": {}}
            for trainer in ("wals", "wals_tf", "implicit"):
                if trainer not in args.trainers:
                    continue
                result = in_fresh_process(trainer, workdir, users, items, weights, n_users, n_items, args.rank,
                                          args.iterations)
                if trainer == "implicit":
                    per_iteration = result["per_iteration"]
                else:
                    per_iteration = statistics.median(result["seconds"])
                    print(f"  {trainer} iterations: {', '.join(f'{s:.2f}s' for s in result['seconds'])}", flush=True)
                memory = result["memory"]
                driver[trainer] = (per_iteration, memory["per_interaction"], memory["peak_mb"], memory["growth_mb"])
                print(f"  {trainer}: {per_iteration:.2f}s per iteration; peak private memory {memory['peak_mb']:.0f} MiB, "
                      f"{memory['growth_mb']:.0f} MiB over its start, {memory['per_interaction']:.1f} B per interaction "
                      "beyond the factors", flush=True)
            wals = driver.get("wals", driver.get("wals_tf", (float("nan"),)))[0]
            if spark is not None:
                path = workdir / f"interactions-{size}.parquet"
                pq.write_table(pa.table({"user_index": users, "item_index": items, "weight": weights.astype(np.float64)}), path)
                pairs = len(users)
                del users, items, weights  # the distributed engine's driver memory is measured next
                if "wals_spark" in args.trainers:
                    distributed = time_wals_spark(spark, path, n_users, n_items, args.rank, args.iterations,
                                                  args.block_interactions)
                if "als" in args.trainers:
                    als, setup = time_spark_als(spark, path, args.rank, args.iterations, warm_up=not rows)
            else:
                pairs = len(users)
            rows.append((size, pairs, n_users, n_items, wals, als, setup, distributed, driver))
    finally:
        if spark is not None:
            spark.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"\nrank {args.rank}, {args.iterations} timed iterations, Spark {args.master}\n")
    print("| size | pairs | users | items | WALS s/iteration (median) | Spark ALS s/iteration | Spark ALS 1-iteration fit s "
          "| ALS / WALS | WALS spark s/iteration | WALS spark set-up s | ALS / WALS spark | peak RSS MiB during the fit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size, pairs, n_users, n_items, wals, als, setup, dist, _ in rows:
        peak = ", ".join(f"{k} {v}" for k, v in dist["peak_mb"].items()) or "-"
        print(f"| {size} | {pairs:,} | {n_users:,} | {n_items:,} | {wals:.2f} | {als:.2f} | {setup:.1f} | {als / wals:.1f} "
              f"| {dist['per_iteration']:.2f} | {dist['setup']:.1f} | {als / dist['per_iteration']:.2f} | {peak} |")
    if any(row[-1] for row in rows):
        print("\n| size | trainer | s/iteration | peak private memory MiB | growth during the fit MiB "
              "| B/interaction beyond the factors |")
        print("|---|---|---|---|---|---|")
        for size, *_, driver in rows:
            for trainer, (seconds, per_interaction, peak, growth) in driver.items():
                print(f"| {size} | {trainer} | {seconds:.2f} | {peak:.0f} | {growth:.0f} | {per_interaction:.1f} |")
        if len(rows) > 1 and all("wals" in row[-1] for row in rows):
            (a, pairs_a, users_a, items_a), (b, pairs_b, users_b, items_b) = (row[:4] for row in rows[-2:])
            growth = (rows[-1][-1]["wals"][3] - rows[-2][-1]["wals"][3]) * 2**20
            factors = ((users_b + items_b) - (users_a + items_a)) * args.rank * 4
            print(f"wals: peak growth from {a} to {b}, less the factors: {(growth - factors) / (pairs_b - pairs_a):.1f} "
                  "B per added interaction")
    print("ratios: " + " ".join(f"{size}={als / wals:.2f}" for size, _, _, _, wals, als, *_ in rows))
    print("ratios (ALS / WALS spark): " + " ".join(f"{size}={als / d['per_iteration']:.2f}"
                                                  for size, _, _, _, _, als, _, d, _ in rows))
    if any("implicit" in row[-1] and "wals" in row[-1] for row in rows):
        print("ratios (WALS / implicit): " + " ".join(f"{row[0]}={row[-1]['wals'][0] / row[-1]['implicit'][0]:.2f}"
                                                     for row in rows if {"wals", "implicit"} <= set(row[-1])))


if __name__ == "__main__":
    main()
