"""The top-N kernel alone, in one process on one core: float32 and bfloat16 engines against a bare GEMM.

Generates seeded factors like bench_scoring.py (item norms spread log-normally, ~20 seen items per
user), then times recsys_spark.kernels.topk.top_n over the users in `--batch` chunks, with one BLAS
and one TensorFlow thread (a Spark task's share). Prints user-item pairs per second per engine and
checks that both engines return the same items.

    .venv/bin/python scripts/bench_kernel.py                  # 4096 users x 20k items x rank 64
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads its BLAS

import numpy as np  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=4096)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1024, help="users per top_n call (score.batch_users)")
    parser.add_argument("--block", type=int, default=4096, help="items per block (score.block_items)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the median is reported")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from recsys_spark.kernels import topk
    from recsys_spark.kernels.engines import cpu_has_amx_bf16, set_tf_threads
    from recsys_spark.kernels.topk import prepare_items, top_n

    set_tf_threads(1)
    rng = np.random.default_rng(0)
    users = (rng.normal(size=(args.users, args.rank)) / np.sqrt(args.rank)).astype(np.float32)
    items = (rng.normal(size=(args.items, args.rank)) / np.sqrt(args.rank)
             * rng.lognormal(0.0, 0.3, size=(args.items, 1))).astype(np.float32)
    indptr = np.arange(0, 20 * args.users + 1, 20, dtype=np.int64)
    indices = rng.integers(0, args.items, size=20 * args.users).astype(np.int64)
    pairs = args.users * args.items

    def timed(run) -> float:
        run()
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
        return pairs / float(np.median(times))

    print(f"users={args.users} items={args.items} rank={args.rank} batch={args.batch} block={args.block} "
          f"amx_bf16={cpu_has_amx_bf16()} load_average={os.getloadavg()[0]:.1f}", flush=True)
    gemm = timed(lambda: [users[s:s + args.batch] @ items.T for s in range(0, args.users, args.batch)])
    print(f"numpy GEMM alone, one thread: {gemm / 1e6:.0f}M pairs/s", flush=True)
    results = {}
    for precision in ("float32", "bfloat16"):
        prepared = prepare_items(items, args.block, precision)

        def run():
            return [top_n(users[s:s + args.batch], prepared, 10, indptr[s:s + args.batch + 1] - indptr[s],
                          indices[indptr[s]:indptr[min(s + args.batch, args.users)]])
                    for s in range(0, args.users, args.batch)]

        rate = timed(run)
        rescored = []
        exact = topk.exact_scores
        topk.exact_scores = lambda u, i, rows, cols: rescored.append(len(rows)) or exact(u, i, rows, cols)
        results[precision] = np.concatenate([idx for idx, _ in run()])
        topk.exact_scores = exact
        print(f"top_n {precision}: {rate / 1e6:.0f}M pairs/s ({rate / gemm:.2f} x the GEMM), "
              f"{sum(rescored) / args.users:.1f} items rescored exactly per user", flush=True)
    same = np.array_equal(results["float32"], results["bfloat16"])
    print(f"same top-10 from both engines: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
