"""`recsys-spark score --model DIR --input PATH`: a saved model scores new input, new users folded in."""

import pyarrow.parquet as pq

from recsys_spark.cli import main
from recsys_spark.sample_data import generate_interactions


def test_saved_model_scores_new_users_without_retraining(spark, tmp_path):
    interactions = generate_interactions(n_users=300, n_items=120, n_interactions=9000, seed=9)
    new_users = sorted(interactions.user_id.unique())[:15]
    old = interactions[~interactions.user_id.isin(new_users)]
    (tmp_path / "old.csv").write_text(old.to_csv(index=False))
    (tmp_path / "all.csv").write_text(interactions.to_csv(index=False))
    out = tmp_path / "warehouse"
    fast = ["--set", "model.rank=8", "--set", "model.wals.iterations=5", "--quiet"]
    assert main(["run", "--input", str(tmp_path / "old.csv"), "--output", str(out), "--run-date", "2026-03-01",
                 *fast]) == 0
    model_dir = out / "_runs" / "2026-03-01" / "current" / "model"
    assert main(["score", "--model", str(model_dir), "--input", str(tmp_path / "all.csv"), "--output", str(out),
                 "--run-date", "2026-03-02", "--set", "similar.enabled=false", *fast]) == 0

    recs = pq.read_table(out / "user_recs" / "run_date=2026-03-02").to_pandas()
    seen = interactions.groupby("user_id")["item_id"].agg(set)
    n_items = old.item_id.nunique()
    assert set(recs.user_id) == set(interactions.user_id)
    counts = recs.groupby("user_id").size()
    for user in new_users:
        known_seen = len(seen[user] & set(old.item_id))
        assert counts[user] == min(10, n_items - known_seen)
    assert not any(item in seen[user] for user, item in zip(recs.user_id, recs.item_id))
    # New users get personal lists from their folded-in factors, not one shared list.
    firsts = recs[recs.user_id.isin(new_users) & (recs["rank"] == 1)].item_id
    assert firsts.nunique() > 1


def test_score_input_without_model_is_a_clear_error(spark, tmp_path, capsys):
    assert main(["score", "--input", str(tmp_path / "x.csv"), "--output", str(tmp_path), "--quiet"]) == 1
    assert "score --input needs --model" in capsys.readouterr().err
