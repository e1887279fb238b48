"""The fixed cost of a small nightly run: seconds and Spark jobs per stage, in one warm session.

A run on a few hundred interactions does little work, so what it costs is Spark's per-job and
per-query overhead: the cost every run of `make test` pays dozens of times, and every nightly run
pays once per stage whatever its size. This script starts one local session (by default with the
test suite's JVM options, memory page and SQL settings, tests/jvm.py; --spark-defaults for Spark's
own), runs `recsys-spark run` on generated data (40 users, 20 items, 400 interactions, popularity) for
--runs dates in that session, and prints per stage the median seconds and Spark jobs of the runs
after the first two (JIT warm-up; the class archive a test run recorded, if any, only shortens the
start). The last line is `run_seconds=<median> jobs=<median>`.

    .venv/bin/python scripts/bench_run_overhead.py
    .venv/bin/python scripts/bench_run_overhead.py --runs 12 --spark-defaults
    .venv/bin/python scripts/bench_run_overhead.py --set evaluate.enabled=true --set "evaluate.models=[popularity]"
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="dates run in the one session (the first two not counted)")
    parser.add_argument("--spark-defaults", action="store_true",
                        help="Spark's own JVM options, memory page and SQL settings instead of the test suite's")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every run, as `recsys-spark run --set` takes it "
                             "(e.g. evaluate.enabled=true)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not 3 <= args.runs <= 31:
        raise SystemExit("--runs must be 3 to 31 (the first two warm the JVM up; one January date each)")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from recsys_spark.app import nightly, publishing, steps
    from recsys_spark.app.cli import main as cli
    from recsys_spark.app.session import build_session
    from recsys_spark.config import SparkConfig
    from recsys_spark.data.sample_data import generate_interactions

    conf = {"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2", "spark.ui.enabled": "false"}
    settings = []
    if not args.spark_defaults:
        sys.path.insert(0, str(TESTS))
        from jvm import PAGE_CONF, SQL_CONF, java_options, sql_conf_settings

        conf.update({"spark.driver.extraJavaOptions": java_options(), **PAGE_CONF, **SQL_CONF})
        settings = sql_conf_settings()
    spark = build_session(SparkConfig(master="local[2,2]", conf=conf))
    tracker = spark.sparkContext.statusTracker()

    def jobs() -> int:
        return len(tracker.getJobIdsForGroup())

    per_run = []  # {stage: (seconds, Spark jobs)} of each run
    real_timed = steps.timed

    @contextlib.contextmanager
    def timed(name, timings):  # the stages' own timer, also counting the Spark jobs each stage starts
        before, started = jobs(), time.time()
        with real_timed(name, timings) as stage:
            yield stage
        per_run[-1][name] = (time.time() - started, jobs() - before)

    nightly.timed = publishing.timed = timed
    totals = []
    with tempfile.TemporaryDirectory(prefix="bench-run-overhead-") as tmp:
        source = f"{tmp}/interactions.csv"
        generate_interactions(n_users=40, n_items=20, n_interactions=400, seed=1).to_csv(source, index=False)
        fast = ["--set", "model.kind=popularity", "--set", "score.top_n=5", "--set", "similar.top_k=3",
                "--set", "spark.conf.spark.sql.shuffle.partitions=2", "--quiet", *settings,
                *[arg for setting in args.set for arg in ("--set", setting)]]
        for day in range(1, args.runs + 1):
            per_run.append({})
            before, started = jobs(), time.time()
            with contextlib.redirect_stdout(io.StringIO()):  # the run's own summary
                code = cli(["run", "--input", source, "--output", f"{tmp}/out", "--run-date", f"2026-01-{day:02d}",
                            *fast])
            if code != 0:
                raise SystemExit(f"run {day} failed with exit code {code}")
            totals.append((time.time() - started, jobs() - before))
    spark.stop()
    counted = per_run[2:]  # the first two warm the JVM up
    settings_name = "Spark defaults" if args.spark_defaults else "test suite settings (tests/jvm.py)"
    print(f"cores={os.cpu_count()} load_average={os.getloadavg()[0]:.1f} runs={args.runs - 2} counted, {settings_name}")
    print(f"{'stage':10s} {'seconds':>8s} {'jobs':>5s}")
    for name in counted[0]:
        print(f"{name:10s} {statistics.median(r[name][0] for r in counted):8.2f} "
              f"{statistics.median(r[name][1] for r in counted):5.0f}")
    print(f"run_seconds={statistics.median(t for t, _ in totals[2:]):.2f} "
          f"jobs={statistics.median(j for _, j in totals[2:]):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
