"""Scale tests (`make test-slow`): the nightly run on 1M generated interactions, checked in Spark
against the input. Timings live in scripts/bench_scale.py, not here."""

import pytest
from pyspark.sql import functions as F

from recsys_spark.app.nightly import run_nightly
from recsys_spark.config import load_config
from recsys_spark.storage.sample_files import write_interactions

pytestmark = pytest.mark.slow


def test_a_million_interactions_publish_complete_lists_without_seen_items(spark, tmp_path):
    n_users, n_items = 50_000, 5_000
    data = write_interactions(tmp_path / "in.parquet", fmt="parquet", n_users=n_users, n_items=n_items,
                              n_interactions=1_000_000, seed=3)
    cfg = load_config(None, ["model.wals.iterations=3", "model.rank=32"])
    summary = run_nightly(spark, cfg, str(data), str(tmp_path / "out"), "2026-08-01")
    recs = spark.read.parquet(str(tmp_path / "out" / "user_recs" / "run_date=2026-08-01"))
    seen = spark.read.parquet(str(data)).select("user_id", "item_id").distinct()
    catalog = seen.select("item_id").distinct().count()
    per_user = seen.groupBy("user_id").agg(F.count(F.lit(1)).alias("n_seen"))
    got = recs.groupBy("user_id").agg(F.count(F.lit(1)).alias("rows"))
    wrong = (per_user.join(got, "user_id", "left")
             .filter(F.coalesce("rows", F.lit(0)) != F.least(F.lit(10), F.lit(catalog) - F.col("n_seen"))).count())
    assert wrong == 0
    assert recs.join(seen, ["user_id", "item_id"], "left_semi").count() == 0
    assert summary.counts["user_recs"] == recs.count() == per_user.count() * 10  # 5,000 items: every list is full
    assert summary.manifest["rules"]["fallback_rows"] == 0
