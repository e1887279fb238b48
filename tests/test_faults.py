"""SIGKILL at every stage of a run, and a task that fails once: readers see the old run or the new
one whole, earlier dates stay byte-identical, and the rerun equals a clean run.

Each killed command is a subprocess in its own process group, so SIGKILL takes the driver, the JVM
and the Python workers together. The kill points inside audit and publish use the test hook
RECSYS_SPARK_FAULT (recsys_spark/faults.py); the kill during the staging write polls for the
staging directory instead. A killed process cannot go on, so each kill point costs one JVM; to keep
that JVM short, the late kill points (audited, publish_swap, publish_current) kill `recsys-spark
publish` of tables `prepare`/`train`/`score`/`similar` staged in this process, which reaches them
through the same audit_and_publish as `run`; the staging-write kill is a `run`.

The two SIGKILL tests start four JVMs of their own (~64 s of CPU; ~130 s with what they stage here), so
they carry the markers slow and processes and run in `make test-processes` (CI runs it after `make
test`). The task that fails once runs in the shared session, in `make test`.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jvm import java_options, sql_conf_settings
from readers import visible_counts

from recsys_spark.app.cli import main
from recsys_spark.data.sample_data import generate_interactions

EARLIER, DATE = "2026-03-01", "2026-03-02"
FAST = ["--set", "model.kind=popularity", "--set", "score.top_n=5", "--set", "similar.top_k=3",
        "--set", "spark.conf={spark.sql.shuffle.partitions: 2, spark.driver.memory: 1g, spark.ui.enabled: false}",
        *sql_conf_settings(), "--quiet"]
TIMEOUT = 900


def _write_input(path: Path, seed: int) -> str:
    generate_interactions(n_users=40, n_items=20, n_interactions=400, seed=seed).to_csv(path, index=False)
    return str(path)


def _run_args(source: str, out: Path, date: str) -> list:
    return ["run", "--input", source, "--output", str(out), "--run-date", date, *FAST]


def _start(args: list, fault: str | None = None) -> subprocess.Popen:
    # A short-lived JVM starts faster with the C1 JIT alone and the class archive (tests/jvm.py).
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "JDK_JAVA_OPTIONS": java_options()}
    env.pop("RECSYS_SPARK_FAULT", None)
    if fault:
        env["RECSYS_SPARK_FAULT"] = fault
    return subprocess.Popen([sys.executable, "-m", "recsys_spark.app.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate(timeout=60)


def _digest(out: Path, date: str) -> dict:
    """sha256 of every file of a date: both table partitions (through any link) and its run files."""
    roots = [out / "user_recs" / f"run_date={date}", out / "item_similar" / f"run_date={date}", out / "_runs" / date]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for root in roots for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


def _rows(spark, out: Path, date: str) -> tuple:
    """What a SQL reader sees for a date: sorted rows of both tables."""
    tables = []
    for table in ("user_recs", "item_similar"):
        rows = spark.sql(f"SELECT * FROM parquet.`{out}/{table}` WHERE run_date = '{date}'").drop("run_date").collect()
        tables.append(sorted(tuple(round(v, 5) if isinstance(v, float) else v for v in r) for r in rows))
    return tuple(tables)


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    """out: EARLIER and DATE published from input `old`; clean: DATE published from input `new`."""
    tmp = tmp_path_factory.mktemp("faults")
    old, new = _write_input(tmp / "old.csv", seed=1), _write_input(tmp / "new.csv", seed=2)
    out, clean = tmp / "out", tmp / "clean"
    for date in (EARLIER, DATE):  # published in pointer mode; the runs below use the default and convert it
        assert main([*_run_args(old, out, date), "--set", "publish.mode=pointer"]) == 0
    assert main(_run_args(new, clean, DATE)) == 0
    return {"out": out, "new": new, "earlier": _digest(out, EARLIER), "old_rows": _rows(spark, out, DATE),
            "new_rows": _rows(spark, clean, DATE)}


def _stage_tables(out: Path, source: str, stages=("score", "similar")) -> None:
    """In this process (the shared, warm session): stage DATE's tables from `source` for `publish`."""
    common = ["--output", str(out), "--run-date", DATE, *FAST]
    for stage in stages:
        assert main([stage, *(["--input", source] if stage == "prepare" else []), *common]) == 0, stage


@pytest.fixture(scope="module")
def new_model(runs):
    """DATE's prepared data and model from input `new`, staged once in `out` for every `publish` below
    (neither a publish nor `clean` removes them)."""
    _stage_tables(runs["out"], runs["new"], ("prepare", "train"))
    return runs


def _publish_args(out: Path) -> list:
    return ["publish", "--output", str(out), "--run-date", DATE, *FAST]


def _kill_during_staging_write(args: list, runs_dir: Path) -> None:
    before = set(os.listdir(runs_dir))
    proc = _start(args)
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and proc.poll() is None:
        if any(n.startswith(".staging-") for n in set(os.listdir(runs_dir)) - before):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it staged anything"
    _kill_group(proc)


def _kill_at(args: list, point: str) -> None:
    proc = _start(args, fault=point)
    try:
        proc.communicate(timeout=TIMEOUT)
    finally:
        _kill_group(proc)
    assert proc.returncode == -signal.SIGKILL, f"the run did not reach {point}"


@pytest.mark.slow
@pytest.mark.processes
def test_sigkill_anywhere_leaves_old_rows_whole_and_earlier_dates_untouched(spark, new_model):
    runs = new_model
    out, args = runs["out"], _run_args(runs["new"], runs["out"], DATE)
    assert runs["old_rows"] != runs["new_rows"]
    _stage_tables(out, runs["new"])  # for the publish killed after the audit; staged tables are not visible
    assert _rows(spark, out, DATE) == runs["old_rows"]
    _kill_during_staging_write(args, out / "_runs" / DATE)
    assert any(n.startswith(".staging-") for n in os.listdir(out / "_runs" / DATE))
    kills = [("during the staging write", None),
             ("after staging and audit", lambda: _kill_at(_publish_args(out), "audited"))]
    for where, kill in kills:
        if kill:
            kill()
        assert _digest(out, EARLIER) == runs["earlier"], where
        assert _rows(spark, out, DATE) == runs["old_rows"], where
    # the audited publish started by removing the staging directory the first kill left
    assert not any(n.startswith(".staging-") for n in os.listdir(out / "_runs" / DATE))


@pytest.mark.slow
@pytest.mark.processes
def test_sigkill_inside_publish_is_finished_by_the_next_command(spark, new_model):
    """Killed between the two table switches, or before `current`, while converting the date from
    pointer mode to the default: each table shows one whole run, and `recsys-spark clean` (as every
    command taking the date's lock) finishes the publish."""
    from recsys_spark.storage.layout import DateLayout
    from recsys_spark.storage.published import published_manifest

    runs = new_model
    out = runs["out"]
    for point in ("publish_swap", "publish_current"):
        _stage_tables(out, runs["new"])
        _kill_at(_publish_args(out), point)
        recs, similar = _rows(spark, out, DATE)
        assert recs in (runs["old_rows"][0], runs["new_rows"][0]), point
        assert similar in (runs["old_rows"][1], runs["new_rows"][1]), point
        assert main(["clean", "--output", str(out), "--run-date", DATE, "--quiet"]) == 0
        leftovers = [n for n in os.listdir(out / "_runs" / DATE) if n.startswith((".staging-", ".publishing", "current."))]
        assert leftovers == [], point
        assert _rows(spark, out, DATE) == runs["new_rows"], point
        counts = published_manifest(spark, DateLayout(str(out), DATE))["row_counts"]
        shown = visible_counts(spark, str(out), DATE)
        assert shown == {reader: {t: counts[t] for t in ("user_recs", "item_similar")} for reader in shown}, point
        assert _digest(out, EARLIER) == runs["earlier"], point
    assert main(["clean", "--output", str(out), "--quiet"]) == 0  # every date: nothing left to do, nothing touched
    assert _digest(out, EARLIER) == runs["earlier"] and _rows(spark, out, DATE) == runs["new_rows"]


def _failed_tasks(spark, group: str) -> int:
    """Failed task attempts of the jobs of a job group (Spark's status tracker)."""
    tracker = spark.sparkContext.statusTracker()
    stages = {stage for job in tracker.getJobIdsForGroup(group) for stage in tracker.getJobInfo(job).stageIds}
    return sum(tracker.getStageInfo(stage).numFailedTasks for stage in stages if tracker.getStageInfo(stage))


def test_rerun_with_a_task_failing_once_equals_a_clean_run(spark, runs, monkeypatch):
    # In this process: the shared session is local[2,2], so Spark retries the failed task once.
    out = runs["out"]
    monkeypatch.setenv("RECSYS_SPARK_FAULT", "task_fails_once")
    spark.sparkContext.setJobGroup("task-fails-once", "rerun with a task failing once")
    try:
        assert main(_run_args(runs["new"], out, DATE)) == 0
    finally:
        for key in ("spark.jobGroup.id", "spark.job.description"):
            spark.sparkContext.setLocalProperty(key, None)
    assert _failed_tasks(spark, "task-fails-once") == 1  # the injected failure, retried
    assert _rows(spark, out, DATE) == runs["new_rows"]
    assert _digest(out, EARLIER) == runs["earlier"]
    leftovers = [n for n in os.listdir(out / "_runs" / DATE) if n.startswith((".staging-", ".lock", "current."))]
    assert leftovers == []
