"""The whole nightly pipeline at growing sizes: seconds per stage and peak memory per size.

For each size (interactions; users = size / 20, items = size / 200) it generates Parquet
interactions with recsys_spark.data.sample_data, then runs recsys_spark.app.nightly.run_nightly in a
fresh process (its own local SparkSession) while sampling the resident memory (/proc) of the
driver Python, the JVM and the Python workers. Prints one line per size, writes a JSON and a PNG.

    .venv/bin/python scripts/bench_scale.py                       # 1M, 3M, 10M
    .venv/bin/python scripts/bench_scale.py --sizes 100000,300000 # quick
    .venv/bin/python scripts/bench_scale.py --set model.als.max_iter=10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,3000000,10000000", help="comma-separated interaction counts")
    parser.add_argument("--workdir", default=None, help="data and outputs (default: a temp dir); data is reused")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="section.key=value conf override")
    parser.add_argument("--json", default="docs/benchmarks-scale.json")
    parser.add_argument("--plot", default="docs/benchmarks-scale.png")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # internal: run one size
    return parser.parse_args(argv)


def shape(size: int) -> tuple[int, int]:
    return max(size // 20, 10), max(size // 200, 10)


def processes() -> dict:
    """pid -> (parent pid, command name, resident bytes) of every process we can read."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as cmd:
                name = cmd.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), name, int(fields[21]) * PAGE)
    return table


class MemorySampler(threading.Thread):
    """Peak RSS of this process, its JVM descendants and the Python processes under the JVM."""

    def __init__(self, interval: float = 0.5):
        super().__init__(daemon=True)
        self.interval, self.stopped = interval, threading.Event()
        self.peak = {"driver_python": 0, "jvm": 0, "python_workers": 0, "python_worker_max": 0}

    def run(self):
        me = os.getpid()
        while not self.stopped.is_set():
            table = processes()
            children: dict = {}
            for pid, (parent, _, _) in table.items():
                children.setdefault(parent, []).append(pid)
            jvm = workers = largest = 0
            stack = list(children.get(me, []))
            while stack:
                pid = stack.pop()
                _, name, rss = table[pid]
                if name.endswith("java"):
                    jvm += rss
                elif "python" in name:
                    workers += rss
                    largest = max(largest, rss)
                stack.extend(children.get(pid, []))
            sample = {"driver_python": table.get(me, (0, "", 0))[2], "jvm": jvm, "python_workers": workers,
                      "python_worker_max": largest}
            for key, value in sample.items():
                self.peak[key] = max(self.peak[key], value)
            self.stopped.wait(self.interval)


def run_one(args) -> dict:
    """Generate (or reuse) the data for one size and run the nightly pipeline on it."""
    from recsys_spark.app.nightly import run_nightly
    from recsys_spark.app.session import build_session
    from recsys_spark.config import load_config
    from recsys_spark.storage.sample_files import write_interactions

    size, root = args.one, Path(args.workdir)
    n_users, n_items = shape(size)
    data = root / f"interactions-{size}.parquet"
    if not data.exists():
        write_interactions(data, fmt="parquet", n_users=n_users, n_items=n_items, n_interactions=size, seed=42)
    cfg = load_config(None, [f"spark.master={args.master}", "spark.log_level=ERROR", *args.overrides])
    sampler = MemorySampler()
    sampler.start()
    started = time.time()
    spark = build_session(cfg.spark)
    session_seconds = time.time() - started
    summary = run_nightly(spark, cfg, str(data), str(root / f"out-{size}"), "2026-01-01")
    total = time.time() - started
    spark.stop()
    sampler.stopped.set()
    sampler.join()
    return {"interactions": size, "users": summary.manifest["prepare"]["users"],
            "items": summary.manifest["prepare"]["items"], "session": round(session_seconds, 1),
            "stages": summary.timings, "total": round(total, 1), "row_counts": summary.counts,
            "peak_rss_mb": {k: round(v / 2**20) for k, v in sampler.peak.items()}}


def plot(results: list, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["interactions"] / 1e6 for r in results]
    stages = list(dict.fromkeys(s for r in results for s in r["stages"]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    bottom = [r["session"] for r in results]
    left.bar([str(s) for s in sizes], bottom, label="session start")
    for stage in stages:
        values = [r["stages"].get(stage, 0.0) for r in results]
        left.bar([str(s) for s in sizes], values, bottom=bottom, label=stage)
        bottom = [b + v for b, v in zip(bottom, values)]
    left.axhline(600, color="red", linestyle="--", linewidth=1, label="10 min target")
    left.set(xlabel="interactions (millions)", ylabel="seconds", title="nightly pipeline, end to end")
    left.legend(fontsize=8, loc="upper left")
    for key in ("driver_python", "jvm", "python_workers"):
        right.plot(sizes, [r["peak_rss_mb"][key] for r in results], marker="o", label=key)
    right.set(xlabel="interactions (millions)", ylabel="peak RSS (MiB)", title="peak resident memory")
    right.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if args.one is not None:
        print(json.dumps(run_one(args)))
        return 0
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench-scale-")
    print(f"cores={os.cpu_count()} load_average={os.getloadavg()[0]:.1f} workdir={workdir}", flush=True)
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        command = [sys.executable, __file__, "--one", str(size), "--workdir", workdir, "--master", args.master]
        for item in args.overrides:
            command += ["--set", item]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            print(f"size {size}: failed (exit {done.returncode})")
            return 1
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["load_average_after"] = round(os.getloadavg()[0], 1)
        results.append(result)
        stages = " ".join(f"{k}={v:.0f}s" for k, v in result["stages"].items())
        print(f"interactions={size} users={result['users']} items={result['items']} total={result['total']:.0f}s "
              f"session={result['session']:.0f}s {stages} peak_rss_mb={result['peak_rss_mb']} "
              f"load_average={result['load_average_after']}", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.plot)
    print(f"wrote {args.json} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
