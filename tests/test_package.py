"""scripts/package.sh builds what spark-submit needs. The packaged job itself runs with spark-submit
in tests/test_cluster.py (`make test-cluster`, which CI runs after `make test`): on local[2] and on a
standalone cluster."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_package(dist: Path) -> Path:
    """scripts/package.sh into `dist`; returns `dist`."""
    subprocess.run([str(ROOT / "scripts" / "package.sh")], env={**os.environ, "DIST": str(dist),
                   "PYTHON": sys.executable}, check=True, capture_output=True, timeout=300)
    return dist


def test_package_holds_the_zip_the_wheel_the_jobs_and_the_confs(tmp_path):
    dist = build_package(tmp_path / "dist")
    assert {"jobs", "conf", "recsys_spark.zip"} <= set(os.listdir(dist))
    assert any(n.endswith(".whl") for n in os.listdir(dist))
    names = zipfile.ZipFile(dist / "recsys_spark.zip").namelist()
    assert "recsys_spark/app/nightly.py" in names and not any(n.endswith((".pyc", ".pkl", ".pickle")) for n in names)
