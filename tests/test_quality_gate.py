"""The quality gate: a run whose NDCG falls past publish.max_metric_drop is not published."""

import json
import os

import pytest

from recsys_spark.app.nightly import run_nightly
from recsys_spark.config import load_config
from recsys_spark.data.sample_data import generate_interactions
from recsys_spark.storage import fs
from recsys_spark.storage.audit import QualityGateError

SETTINGS = ["model.kind=popularity", "evaluate.enabled=true", "evaluate.models=[popularity]", "evaluate.ks=[10]",
            "publish.max_metric_drop=0.2"]


def _report_only(*args, **kwargs):
    raise AssertionError("the nightly evaluation computed an aggregate only `recsys-spark evaluate`'s report plots")


def test_a_run_whose_ndcg_dropped_is_refused_and_yesterday_stays(spark, tmp_path, monkeypatch):
    from recsys_spark.evaluation import holdout

    monkeypatch.setattr(holdout, "popularity_profile", _report_only)
    monkeypatch.setattr(holdout, "score_histogram", _report_only)
    source = tmp_path / "in.csv"
    generate_interactions(n_users=60, n_items=30, n_interactions=900, seed=8).to_csv(source, index=False)
    out = str(tmp_path / "out")
    cfg = load_config(None, SETTINGS)
    first = run_nightly(spark, cfg, str(source), out, "2026-06-01").manifest
    ndcg = first["metrics"]["popularity"]["ndcg@10"]
    assert 0 < ndcg < 1 and first["quality_gate"]["skipped"]
    # Pretend yesterday's model was much better than today's can be.
    manifest_path = os.path.join(out, "_runs", "2026-06-01", "current", "manifest.json")
    manifest = json.load(open(manifest_path))
    manifest["metrics"]["popularity"]["ndcg@10"] = ndcg / 0.7
    fs.write_text(spark, manifest_path, json.dumps(manifest))  # through Hadoop, which keeps a checksum beside it
    with pytest.raises(QualityGateError, match=r"popularity ndcg@10 is .* below .*nothing was published"):
        run_nightly(spark, cfg, str(source), out, "2026-06-02")
    assert not os.path.lexists(os.path.join(out, "user_recs", "run_date=2026-06-02"))
    assert not os.path.lexists(os.path.join(out, "_runs", "2026-06-02", "current"))
    partition = os.path.join(out, "user_recs", "run_date=2026-06-01")
    assert os.path.isdir(partition) and not os.path.islink(partition)  # the default layout: a real directory
