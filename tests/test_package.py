"""scripts/package.sh builds what spark-submit needs, and the packaged job runs with spark-submit."""

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pyarrow.parquet as pq

from recsys_spark.data.sample_data import generate_interactions

ROOT = Path(__file__).resolve().parents[1]
SPARK_SUBMIT = Path(sys.executable).parent / "spark-submit"


def test_packaged_job_runs_with_spark_submit(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([str(ROOT / "scripts" / "package.sh")], env={**os.environ, "DIST": str(dist),
                   "PYTHON": sys.executable}, check=True, capture_output=True, timeout=300)
    assert {"jobs", "conf", "recsys_spark.zip"} <= set(os.listdir(dist))
    assert any(n.endswith(".whl") for n in os.listdir(dist))
    names = zipfile.ZipFile(dist / "recsys_spark.zip").namelist()
    assert "recsys_spark/app/nightly.py" in names and not any(n.endswith((".pyc", ".pkl", ".pickle")) for n in names)

    source = tmp_path / "interactions.csv"
    generate_interactions(n_users=30, n_items=15, n_interactions=300, seed=4).to_csv(source, index=False)
    out = tmp_path / "warehouse"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "JDK_JAVA_OPTIONS": "-XX:TieredStopAtLevel=1"}  # a short-lived JVM starts faster with C1 alone
    for variable in ("RECSYS_SPARK_FAULT", "TF_CPP_MIN_LOG_LEVEL"):  # the log levels a user gets by default
        env.pop(variable, None)
    # WALS and bfloat16 scoring import TensorFlow in the driver and in every Python worker; the
    # nightly evaluation ranks items by popularity (once a window without partition).
    result = subprocess.run(
        [str(SPARK_SUBMIT), "--master", "local[2]", "--py-files", str(dist / "recsys_spark.zip"),
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
