"""What the tool writes and prints: secrets redacted everywhere, one umask for every file and
directory, spark.conf reaching the session, and an unwritable output as a one-line error (exit 6).

Tests run as root here, where chmod does not stop a write: the unwritable output is a path under
/sys (sysfs refuses mkdir even to root); as any other user, a directory chmod'ed 0555.
"""

import errno
import logging
import os
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml

from recsys_spark.app.cli import main
from recsys_spark.config import load_config
from recsys_spark.data.sample_data import generate_interactions
from recsys_spark.errors import EXIT_OUTPUT, OutputError
from recsys_spark.storage.writable import output_error

DATE = "2026-04-01"
SECRET_YAML, SECRET_SET = "yaml-secret-5a1t", "set-secret-p3pp3r"
SECRET_KEYS = ("spark.hadoop.fs.s3a.secret.key", "spark.hadoop.fs.s3a.access.key")
SMALL = ["--set", "model.kind=popularity", "--set", "score.top_n=5", "--set", "similar.top_k=3",
         "--set", "spark.conf.spark.sql.shuffle.partitions=2"]


@pytest.fixture(scope="module")
def studies(spark, tmp_path_factory):
    """run, evaluate and tune into one output, with secret keys set by YAML and by --set; returns
    (output, everything they printed and logged)."""
    tmp = tmp_path_factory.mktemp("safety")
    source = tmp / "interactions.csv"
    generate_interactions(n_users=40, n_items=20, n_interactions=500, seed=3).to_csv(source, index=False)
    conf = tmp / "secret.yaml"
    conf.write_text(yaml.safe_dump({"spark": {"conf": {SECRET_KEYS[0]: SECRET_YAML}}}))
    out = tmp / "out"
    common = ["--input", str(source), "--output", str(out), "--run-date", DATE, "--conf", str(conf),
              "--set", f"spark.conf.{SECRET_KEYS[1]}={SECRET_SET}", *SMALL]
    printed = tmp / "printed.txt"
    with open(printed, "w") as sink, _everything_printed_to(sink):
        try:
            codes = [main(["run", *common]),
                     main(["evaluate", *common, "--report-dir", str(out / "report")]),
                     main(["tune", *common, "--param", "model.rank=4,8"])]
        finally:
            for key in SECRET_KEYS:
                spark.conf.unset(key)
    assert codes == [0, 0, 0], printed.read_text()[-3000:]
    return out, printed.read_text()


@contextmanager
def _everything_printed_to(sink):
    """sys.stdout, sys.stderr, the log (INFO and up) and file descriptors 1 and 2 into `sink`."""
    saved = os.dup(1), os.dup(2)
    handler, root = logging.StreamHandler(sink), logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    os.dup2(sink.fileno(), 1)
    os.dup2(sink.fileno(), 2)
    try:
        with redirect_stdout(sink), redirect_stderr(sink):
            yield
    finally:
        sink.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        root.removeHandler(handler)
        root.setLevel(level)


def test_secret_values_appear_in_no_file_and_no_output(studies):
    out, printed = studies
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) > 20 and (out / "tune" / "best.yaml") in files
    for secret in (SECRET_YAML, SECRET_SET):
        assert [str(p) for p in files if secret.encode() in p.read_bytes()] == []
        assert secret not in printed
    manifest = yaml.safe_load((out / "_runs" / DATE / "current" / "manifest.json").read_text())
    spark_conf = manifest["config"]["spark"]["conf"]
    assert {key: spark_conf[key] for key in SECRET_KEYS} == {key: "***" for key in SECRET_KEYS}
    assert spark_conf["spark.driver.memory"] == "4g"  # the defaults stay beside the --set key


def test_every_file_and_directory_written_honours_the_umask(studies):
    out, _ = studies
    opened = []
    for root, dirs, files in os.walk(out):
        for name in dirs + files:
            path = Path(root) / name
            if not path.is_symlink() and path.lstat().st_mode & 0o007:
                opened.append(f"{oct(path.lstat().st_mode & 0o777)} {path.relative_to(out)}")
    assert opened == []
    assert {p.name for p in out.iterdir()} >= {"_runs", "user_recs", "metrics", "report", "tune"}


def test_spark_conf_set_key_reaches_the_session(spark):
    from recsys_spark.app.session import build_session

    current = spark.conf.get("spark.sql.shuffle.partitions")
    cfg = load_config(None, ["spark.conf.spark.recsys.probe.setting=from-set",
                             f"spark.conf.spark.sql.shuffle.partitions={current}"])
    try:
        assert build_session(cfg.spark).conf.get("spark.recsys.probe.setting") == "from-set"
    finally:
        spark.conf.unset("spark.recsys.probe.setting")


@pytest.fixture
def unwritable(tmp_path):
    """A directory nothing can be written under."""
    if os.geteuid() == 0:
        yield Path("/sys/recsys-spark-test-output")  # sysfs refuses mkdir to root too
        return
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    yield locked / "out"
    locked.chmod(0o755)


def test_unwritable_output_is_one_line_and_its_own_exit_code(spark, tmp_path, unwritable, capsys):
    source = tmp_path / "interactions.csv"
    generate_interactions(n_users=10, n_items=8, n_interactions=60, seed=1).to_csv(source, index=False)
    for argv in (["run", "--input", str(source), "--output", str(unwritable), *SMALL],
                 ["prepare", "--input", str(source), "--output", str(unwritable)],
                 ["evaluate", "--input", str(source), "--output", str(tmp_path / "out"),
                  "--report-dir", str(unwritable / "report")]):
        assert main(argv) == EXIT_OUTPUT, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("recsys-spark: error: cannot "), err
        assert str(unwritable) in err[0] and "Traceback" not in err[0]
    assert not any(p.name.startswith(".write-probe") for p in (tmp_path / "out").rglob("*"))


def test_a_write_refused_by_the_jvm_maps_to_output_error(spark, unwritable):
    with pytest.raises(Exception) as failure:  # a Spark job writing under it: the task fails in the JVM
        spark.range(3).write.mode("overwrite").parquet(str(unwritable / "table"))
    mapped = output_error(failure.value, [str(unwritable)])
    assert isinstance(mapped, OutputError) and str(unwritable) in str(mapped)
    assert output_error(failure.value, ["/somewhere/else"]) is None  # e.g. a denied read of the input


def test_a_full_disk_maps_to_output_error_wherever_it_happens():
    full = OSError(errno.ENOSPC, "No space left on device", "/data/out/_runs/x")
    assert "no space left on device" in str(output_error(full, ["/other"]))
    assert output_error(FileNotFoundError(errno.ENOENT, "missing", "/data/in.csv"), ["/data/out"]) is None
    assert output_error(ValueError("not an I/O error"), ["/data/out"]) is None


def test_log_level_sets_tensorflow_and_py4j_for_driver_and_workers(monkeypatch):
    from recsys_spark.app.session import quiet_libraries

    py4j = logging.getLogger("py4j")
    level = py4j.level
    try:
        for log_level, tf_level, py4j_level in (("WARN", "3", logging.WARNING), ("INFO", "0", logging.NOTSET)):
            monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
            assert quiet_libraries(log_level) == {"spark.executorEnv.TF_CPP_MIN_LOG_LEVEL": tf_level}
            assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == tf_level and py4j.level == py4j_level
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")  # the user's own setting wins
        assert quiet_libraries("WARN") == {"spark.executorEnv.TF_CPP_MIN_LOG_LEVEL": "1"}
    finally:
        py4j.setLevel(level)


def test_tensorflow_start_up_lines_below_the_level_are_dropped():
    from recsys_spark.kernels.tf_runtime import keep_line

    startup = [b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
               b"I0000 00:00:1796174886.131372   25015 port.cc:153] oneDNN custom operations are on.\n",
               b"E0000 00:00:1796174888.907727   25015 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n"]
    assert [keep_line(line, 3) for line in startup] == [False, False, False]
    assert [keep_line(line, 2) for line in startup] == [False, False, True]
    assert keep_line(b"Traceback (most recent call last):\n", 3)  # anything else passes unchanged
    assert keep_line(b"F0000 00:00:1.0 1 x.cc:1] fatal\n", 3)
