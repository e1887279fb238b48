#!/usr/bin/env bash
# Build what spark-submit needs, into dist/ (or $DIST):
#   recsys_spark.zip                   the package, for --py-files (driver and executors import it)
#   recsys_spark-<version>-py3-none-any.whl   the same as a wheel, for container images (pip install)
#   jobs/                              the entry points: spark-submit dist/jobs/nightly.py ...
#   conf/                              local.yaml, cluster.yaml, ... (pass one with --conf)
# Executors also need numpy, pandas and pyarrow (pandas UDFs): see docs/publishing.md ("Cluster").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DIST=${DIST:-dist}
rm -rf "$DIST" && mkdir -p "$DIST"
"$PYTHON" - "$DIST/recsys_spark.zip" <<'PY'
import pathlib, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as archive:
    for path in sorted(pathlib.Path("recsys_spark").rglob("*.py")):
        archive.write(path, path.as_posix())
PY
had_build=$([ -e build ] && echo yes || echo no)
"$PYTHON" -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir "$DIST" . >/dev/null
[ "$had_build" = yes ] || rm -rf build   # setuptools' scratch directory, when we made it
cp -R jobs conf "$DIST"/
chmod -R go-w "$DIST"
echo "built $DIST: $(cd "$DIST" && ls -m)"
