"""Item-item (EASE) scoring speed of one Python worker: our top-N kernel against a bare GEMM.

Generates a random items x items matrix B (seeded; with --heavy, 2 x items history inputs, as EASE's
heavy-use inputs make it) and users with --history items each, then measures users per second of
  (a) kernels/topk.top_n over the users' sparse history rows (exact float64 sums, seen items
      skipped, top --top), as the scoring stage runs it in each Python worker;
  (b) a bare float32 GEMM of the dense history batch with B plus np.argpartition (no seen
      filtering, no exact sums): what a user would write with numpy alone.
Both use this process's BLAS threads; the median of --repeats runs is reported, and (a)'s lists are
checked against a brute-force float64 reference on the first 200 users. The last line is
`users_per_s_kernel=<a> users_per_s_gemm=<b> ratio=<a/b>`.

    .venv/bin/python scripts/bench_history_scoring.py                      # 5,000 items, heavy inputs
    .venv/bin/python scripts/bench_history_scoring.py --items 12000 --users 4000
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from recsys_spark.kernels.sparse_rows import SparseRows
from recsys_spark.kernels.topk import prepare_history_items, top_n


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--users", type=int, default=10000)
    parser.add_argument("--history", type=int, default=30, help="history entries per user")
    parser.add_argument("--heavy", action=argparse.BooleanOptionalAction, default=True,
                        help="2 x items history inputs (EASE's heavy-use inputs)")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    rng = np.random.default_rng(7)
    inputs = args.items * (2 if args.heavy else 1)
    b = (rng.standard_normal((inputs, args.items)) * 0.01).astype(np.float32)
    indptr = np.arange(0, (args.users + 1) * args.history, args.history)
    indices = np.stack([rng.choice(inputs, args.history, replace=False) for _ in range(args.users)]).ravel()
    seen = indices % args.items  # the items behind the inputs
    users = SparseRows(indptr, indices, None)
    items = prepare_history_items(b, 4096)

    kernel, gemm = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        idx, _scores = top_n(users, items, args.top, indptr, seen)
        kernel.append(time.perf_counter() - start)
        start = time.perf_counter()
        for lo in range(0, args.users, 1024):
            hi = min(lo + 1024, args.users)
            dense = np.zeros((hi - lo, inputs), dtype=np.float32)
            np.put_along_axis(dense, indices[indptr[lo]:indptr[hi]].reshape(hi - lo, -1), 1.0, axis=1)
            np.argpartition(-(dense @ b), args.top, axis=1)[:, :args.top]
        gemm.append(time.perf_counter() - start)

    for row in range(min(200, args.users)):  # brute force: float64 sums, seen items out, best first
        scores = b[indices[indptr[row]:indptr[row + 1]]].astype(np.float64).sum(axis=0)
        scores[seen[indptr[row]:indptr[row + 1]]] = -np.inf
        assert set(idx[row]) == set(np.argsort(-scores, kind="stable")[:args.top]), row

    rate_kernel, rate_gemm = args.users / statistics.median(kernel), args.users / statistics.median(gemm)
    print(f"{args.users} users x {args.items} items ({inputs} history inputs, {args.history} per user), "
          f"top {args.top}: kernel {statistics.median(kernel):.2f} s, bare GEMM {statistics.median(gemm):.2f} s")
    print(f"users_per_s_kernel={rate_kernel:.0f} users_per_s_gemm={rate_gemm:.0f} ratio={rate_kernel / rate_gemm:.2f}")


if __name__ == "__main__":
    main()
