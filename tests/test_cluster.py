"""The cluster path (`make test-cluster`, which CI runs after `make test`; also `make test-slow`).

A Spark standalone master and worker run on 127.0.0.1 (the pyspark install's bin/spark-class),
scripts/package.sh builds the job, spark-submit runs dist/jobs/nightly.py on them with
`--py-files recsys_spark.zip` and dist/conf/cluster.yaml, and the published tables are read back
with pyarrow. The driver and the executors run the venv's Python behind a guard (a sitecustomize)
that refuses to import recsys_spark from anywhere but a zip and logs where each process got it, so
the installed (editable) package cannot stand in for the shipped one.

The same package also runs with spark-submit on local[2] (WALS, bfloat16 scoring, the nightly
evaluation), whose output must carry none of TensorFlow's or Spark's start-up noise; it moved here
from tests/test_package.py, which keeps the cheap check of what package.sh builds in `make test`.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pyspark
import pytest

from recsys_spark.data.sample_data import generate_interactions
from recsys_spark.storage.sample_files import write_interactions
from tests.test_package import build_package

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

SPARK_BIN = Path(pyspark.__file__).parent / "bin"
RUN_DATE = "2026-05-01"
TOP_N = 10

# Put first on sys.meta_path of every guarded Python: recsys_spark only from a zip, each import logged.
GUARD = '''
import importlib.machinery, os, sys

class ZipOnly:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "recsys_spark":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        origin = getattr(spec, "origin", None) or ""
        with open(os.environ["RECSYS_IMPORT_LOG"], "a") as log:
            log.write(f"{os.getpid()} {origin}\\n")
        if ".zip" + os.sep not in origin:
            raise ImportError(f"recsys_spark must come from a --py-files zip, not {origin or 'nowhere'}")
        return spec

sys.meta_path.insert(0, ZipOnly)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _guarded_python(tmp: Path, name: str) -> tuple[Path, Path]:
    """A wrapper running this Python with the guard; returns (wrapper, the log of its imports)."""
    guard = tmp / "guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(GUARD)
    log, wrapper = tmp / f"{name}-imports.txt", tmp / f"{name}-python"
    wrapper.write_text(f'#!/bin/sh\nexport PYTHONPATH="{guard}${{PYTHONPATH:+:$PYTHONPATH}}" RECSYS_IMPORT_LOG="{log}"\n'
                       f'exec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, log


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_HOME", "RECSYS_SPARK_FAULT",
                        "TF_CPP_MIN_LOG_LEVEL")}
    return {**env, "SPARK_LOCAL_IP": "127.0.0.1", "JDK_JAVA_OPTIONS": "-XX:TieredStopAtLevel=1", **extra}


def _master_state(ui_port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as response:
            return json.load(response)
    except OSError:
        return None


def _stop(process: subprocess.Popen) -> None:
    """Stop a daemon this test started, by its pid, then whatever it left in its own process group
    (the worker's executor JVM and Python workers)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the group start_new_session made for it: only its children
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    """A master and a one-worker cluster (2 cores, 2g) on free ports; yields (master URL, UI port)."""
    tmp = tmp_path_factory.mktemp("cluster")
    port, ui_port, worker_ui = _free_port(), _free_port(), _free_port()
    props = tmp / "daemons.conf"
    props.write_text("spark.master.rest.enabled false\nspark.worker.cleanup.enabled false\n")
    env = _clean_env(SPARK_LOCAL_DIRS=str(tmp / "local"))
    started, logs = [], {}

    def start(name, *args):
        logs[name] = tmp / f"{name}.log"
        with open(logs[name], "w") as out:
            started.append(subprocess.Popen([str(SPARK_BIN / "spark-class"), *args, "--properties-file", str(props)],
                                            cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True))

    def wait_for(ready, what):
        deadline = time.time() + 120
        while time.time() < deadline:
            state = _master_state(ui_port)
            if state is not None and ready(state):
                return
            dead = [p for p in started if p.poll() is not None]
            if dead:
                break
            time.sleep(1)
        tails = {name: path.read_text()[-2000:] for name, path in logs.items()}
        pytest.fail(f"the standalone {what} did not come up: {tails}")

    master = f"spark://127.0.0.1:{port}"
    try:
        start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
              "--webui-port", str(ui_port))
        wait_for(lambda s: s.get("status") == "ALIVE", "master")
        start("worker", "org.apache.spark.deploy.worker.Worker", master, "--host", "127.0.0.1",
              "--webui-port", str(worker_ui), "--cores", "2", "--memory", "2g", "--work-dir", str(tmp / "work"))
        wait_for(lambda s: s.get("aliveworkers", 0) >= 1, "worker")
        yield master, ui_port
    finally:
        for process in reversed(started):
            _stop(process)


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """scripts/package.sh's output, built once for this module."""
    return build_package(tmp_path_factory.mktemp("package") / "dist")


def test_packaged_job_runs_with_spark_submit(dist, tmp_path):
    """The packaged job on local[2] (no cluster): WALS and bfloat16 scoring import TensorFlow in the
    driver and in every Python worker, and the nightly evaluation ranks items by popularity (once a
    window without partition); none of their start-up noise reaches the output, the summary is last."""
    source = tmp_path / "interactions.csv"
    generate_interactions(n_users=30, n_items=15, n_interactions=300, seed=4).to_csv(source, index=False)
    out = tmp_path / "warehouse"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "JDK_JAVA_OPTIONS": "-XX:TieredStopAtLevel=1"}  # a short-lived JVM starts faster with C1 alone
    for variable in ("RECSYS_SPARK_FAULT", "TF_CPP_MIN_LOG_LEVEL"):  # the log levels a user gets by default
        env.pop(variable, None)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[2]",
         "--py-files", str(dist / "recsys_spark.zip"),
         str(dist / "jobs" / "nightly.py"), "--conf", str(dist / "conf" / "cluster.yaml"),
         "--input", str(source), "--output", str(out), "--run-date", "2026-05-01",
         "--set", "model.kind=wals", "--set", "model.rank=4", "--set", "model.wals.iterations=2",
         "--set", "score.precision=bfloat16", "--set", "evaluate.enabled=true",
         "--set", "spark.conf={spark.sql.shuffle.partitions: 2, spark.ui.enabled: false}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout[-3000:]
    recs = pq.read_table(out / "user_recs" / "run_date=2026-05-01").to_pandas()
    assert recs.user_id.nunique() == 30 and set(recs.model) == {"wals"}
    assert (out / "_runs" / "2026-05-01" / "current" / "_SUCCESS").exists()
    noise = [line for line in lines if any(s in line for s in ("cuInit", "No Partition Defined", "oneDNN",
                                                               "absl::InitializeLog", "clientserver"))]
    assert noise == []
    summary = lines[lines.index(f"run_date 2026-05-01, output {out}"):]  # the summary is last, nothing after it
    assert summary[-1].startswith(f"  SELECT user_id, rank, item_id, score FROM parquet.`{out}/user_recs`")
    assert not [line for line in summary if re.match(r"\d{2,4}[-/]\d\d[-/]\d\d \d\d:|[IWEF]\d{4} ", line)]


def test_nightly_job_publishes_on_a_standalone_cluster_from_the_zip_alone(standalone, dist, tmp_path):
    master, ui_port = standalone
    driver_python, driver_log = _guarded_python(tmp_path, "driver")
    executor_python, executor_log = _guarded_python(tmp_path, "executor")
    probe = subprocess.run([str(executor_python), "-c", "import recsys_spark"], cwd=tmp_path, env=_clean_env(),
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0 and "must come from a --py-files zip" in probe.stderr  # no zip, no package
    executor_log.unlink()

    n_items = 60
    source = write_interactions(tmp_path / "interactions.csv", n_users=150, n_items=n_items, n_interactions=2000,
                                seed=7)
    out = tmp_path / "warehouse"
    env = _clean_env(PYSPARK_PYTHON=str(executor_python), PYSPARK_DRIVER_PYTHON=str(driver_python))
    started = time.time()
    result = subprocess.run(
        [str(SPARK_BIN / "spark-submit"), "--master", master, "--py-files", str(dist / "recsys_spark.zip"),
         "--driver-memory", "1g", "--executor-memory", "1g", "--total-executor-cores", "2",
         "--conf", "spark.ui.enabled=false",
         str(dist / "jobs" / "nightly.py"), "--conf", str(dist / "conf" / "cluster.yaml"),
         "--input", str(source), "--output", str(out), "--run-date", RUN_DATE,
         "--set", "model.rank=8", "--set", "model.als.max_iter=5", "--set", "evaluate.enabled=false",
         "--set", f"score.top_n={TOP_N}", "--set", "spark.conf.spark.sql.shuffle.partitions=4"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    seconds = time.time() - started
    assert result.returncode == 0, result.stdout[-4000:]
    assert f"session on {master}" in result.stdout
    apps = _master_state(ui_port)["completedapps"]
    assert [app["name"] for app in apps] == ["recsys-spark-nightly"], apps  # it ran on this cluster

    # Every process that imported recsys_spark got it from a zip: the driver from dist/, the
    # executors' Python workers from the copy Spark shipped them.
    driver_imports = [line.split(" ", 1) for line in driver_log.read_text().splitlines()]
    executor_imports = [line.split(" ", 1) for line in executor_log.read_text().splitlines()]
    assert driver_imports and {origin for _, origin in driver_imports} == {
        str(dist / "recsys_spark.zip" / "recsys_spark" / "__init__.py")}
    assert executor_imports, "no executor Python worker imported recsys_spark"
    assert all(origin.endswith("recsys_spark.zip/recsys_spark/__init__.py") and not origin.startswith(str(dist))
               for _, origin in executor_imports), executor_imports
    assert not {pid for pid, _ in driver_imports} & {pid for pid, _ in executor_imports}

    manifest = json.loads((out / "_runs" / RUN_DATE / "current" / "manifest.json").read_text())
    recs = pq.read_table(out / "user_recs" / f"run_date={RUN_DATE}").to_pandas()
    similar = pq.read_table(out / "item_similar" / f"run_date={RUN_DATE}").to_pandas()
    assert len(recs) == manifest["row_counts"]["user_recs"] > 0
    assert len(similar) == manifest["row_counts"]["item_similar"] > 0

    seen = pd.read_csv(source)[["user_id", "item_id"]].astype(str).drop_duplicates()
    recs[["user_id", "item_id"]] = recs[["user_id", "item_id"]].astype(str)
    assert recs.merge(seen, on=["user_id", "item_id"]).empty  # no user is recommended an item they had
    expected = (n_items - seen.groupby("user_id").size()).clip(upper=TOP_N)  # every item has interactions
    assert seen.item_id.nunique() == n_items
    pd.testing.assert_series_equal(recs.groupby("user_id").size().sort_index(), expected.sort_index(),
                                   check_names=False)
    print(f"cluster run: spark-submit {seconds:.0f}s")
