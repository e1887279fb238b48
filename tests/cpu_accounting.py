"""Where the test suite's time goes (opt-in): `pytest --cpu-accounting=FILE` (Linux, /proc; with the `=`, so
the file is not taken for a test path).

Per test: its wall time and the CPU of the worker's own Python (the driver side: test code, pandas,
TensorFlow, py4j), of its Spark JVM, of that JVM's PySpark Python workers, and of every other process
the test starts (CLI subprocesses and their JVMs). A thread samples the worker's process tree every
0.2 s and at each test's start and end, so a subprocess's CPU counts for the test that ran it (a
process that lives less than one sample interval is missed). Each process appends one JSON line per
test to FILE (the run starts it afresh); the run ends with a table per module (README, Development).
The sampling thread's own CPU (a /proc walk every 0.2 s) counts as the worker's Python.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

KINDS = ("driver", "spark_jvm", "python_workers", "subprocesses")
INTERVAL = 0.2
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def add_option(parser) -> None:
    parser.addoption("--cpu-accounting", metavar="FILE", default=None,
                     help="write per-test wall time and CPU by process kind to FILE (JSON lines, started afresh) "
                          "and print a table per module (tests/cpu_accounting.py)")


def configure(config) -> None:
    path = config.getoption("--cpu-accounting")
    if not path:
        return
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist) starts the file afresh
        Path(path).write_text("")
    config.pluginmanager.register(CpuAccounting(path), "cpu_accounting")


def _processes() -> dict:
    """pid -> (ppid, start time, CPU seconds) of every process /proc shows."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (fields[1], fields[19], (int(fields[11]) + int(fields[12])) / _TICK)
    return found


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class CpuAccounting:
    def __init__(self, path: str):
        self.path = path
        self.me = str(os.getpid())
        self.lock = threading.Lock()
        self.seen = {}  # (pid, start) -> (kind, CPU seconds at the last sample)
        self.bucket = defaultdict(float)
        self.stop = threading.Event()

    def _kind(self, pid: str, parents: dict) -> str:
        """The worker's Spark JVM (PySpark starts it as a direct child), that JVM's Python workers, or
        another process a test started (its root is another direct child of this process)."""
        chain = [pid]
        while parents.get(chain[-1], self.me) != self.me:
            chain.append(parents[chain[-1]])
        root = _cmdline(chain[-1])
        if "spark-submit" in root or "spark-class" in root or "SparkSubmit" in root:
            return "python_workers" if "pyspark.daemon" in _cmdline(pid) else "spark_jvm"
        return "subprocesses"

    def sample(self) -> None:
        with self.lock:
            procs = _processes()
            parents = {pid: ppid for pid, (ppid, _, _) in procs.items()}
            children = defaultdict(list)
            for pid, ppid in parents.items():
                children[ppid].append(pid)
            stack = list(children.get(self.me, ()))
            while stack:
                pid = stack.pop()
                stack.extend(children.get(pid, ()))
                _, start, cpu = procs[pid]
                key = (pid, start)
                kind, before = self.seen.get(key, (None, 0.0))
                kind = kind or self._kind(pid, parents)
                self.bucket[kind] += cpu - before
                self.seen[key] = (kind, cpu)

    def _run(self) -> None:
        while not self.stop.wait(INTERVAL):
            self.sample()

    def pytest_sessionstart(self, session):
        self.sample()  # processes alive before the first test are not charged to it
        self.bucket.clear()
        threading.Thread(target=self._run, name="cpu-accounting", daemon=True).start()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.sample()
        with self.lock:
            self.bucket.clear()
        started, driver = time.time(), time.process_time()
        yield
        self.sample()
        with self.lock:
            record = {"test": item.nodeid, "worker": os.environ.get("PYTEST_XDIST_WORKER", "-"),
                      "wall": time.time() - started, "driver": time.process_time() - driver,
                      **{kind: self.bucket.get(kind, 0.0) for kind in KINDS[1:]}}
        with open(self.path, "a") as out:
            out.write(json.dumps(record) + "\n")

    def pytest_sessionfinish(self, session):
        self.stop.set()

    def pytest_terminal_summary(self, terminalreporter, config):
        if hasattr(config, "workerinput"):
            return
        summary(self.path, terminalreporter.write_line)


def summary(path: str, write=print) -> None:
    """Wall time and CPU seconds per module, largest wall first, and the totals."""
    modules = defaultdict(lambda: defaultdict(float))
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        module = modules[record["test"].split("::")[0]]
        module["tests"] += 1
        for column in ("wall", *KINDS):
            module[column] += record[column]
    if not modules:
        return
    columns = ("tests", "wall", *KINDS)

    def row(name: str, values: dict) -> str:
        return f"{name:34s}" + "".join(f"{values[c]:15.0f}" if c == "tests" else f"{values[c]:15.1f}" for c in columns)

    write("CPU accounting (seconds; wall summed over workers): " + path)
    write(f"{'module':34s}" + "".join(f"{c:>15s}" for c in columns))
    totals = defaultdict(float)
    for name, module in sorted(modules.items(), key=lambda m: -m[1]["wall"]):
        write(row(name, module))
        for c in columns:
            totals[c] += module[c]
    write(row("total", totals))
