"""`recsys-spark score --model DIR [--input PATH]`: a saved model scores new input or a later date's
prepared data, new users folded in, without retraining."""

import pandas as pd
import pyarrow.parquet as pq
import pytest

from recsys_spark.app.cli import main
from recsys_spark.data.sample_data import generate_interactions

FAST = ["--set", "model.kind=wals", "--set", "model.rank=8", "--set", "model.wals.iterations=5", "--set", "similar.enabled=false", "--quiet"]


@pytest.fixture(scope="module")
def earlier_model(spark, tmp_path_factory):
    """A model published for 2026-03-01 from interactions without every 7th user."""
    tmp = tmp_path_factory.mktemp("refresh")
    interactions = generate_interactions(n_users=300, n_items=120, n_interactions=9000, seed=9)
    users = sorted(interactions.user_id.unique())
    new_users = users[::7]
    old = interactions[~interactions.user_id.isin(new_users)]
    (tmp / "old.csv").write_text(old.to_csv(index=False))
    out = tmp / "warehouse"
    assert main(["run", "--input", str(tmp / "old.csv"), "--output", str(out), "--run-date", "2026-03-01", *FAST]) == 0
    return {"tmp": tmp, "out": out, "interactions": interactions, "old": old, "users": users, "new_users": new_users,
            "model_dir": out / "_runs" / "2026-03-01" / "current" / "model"}


def test_saved_model_scores_new_users_without_retraining(earlier_model):
    tmp, out, interactions, old = (earlier_model[k] for k in ("tmp", "out", "interactions", "old"))
    new_users = earlier_model["new_users"]
    # A user the model cannot fold in: every item they touched is new too. The fallback serves them.
    cold = pd.DataFrame({"user_id": "cold-user", "item_id": ["new-item-1", "new-item-2"], "weight": 1.0,
                         "ts": interactions.ts.max()})
    (tmp / "all.csv").write_text(pd.concat([interactions, cold]).to_csv(index=False))
    assert main(["score", "--model", str(earlier_model["model_dir"]), "--input", str(tmp / "all.csv"),
                 "--output", str(out), "--run-date", "2026-03-02", *FAST]) == 0
    assert main(["publish", "--output", str(out), "--run-date", "2026-03-02", *FAST]) == 0

    recs = pq.read_table(out / "user_recs" / "run_date=2026-03-02").to_pandas()
    seen = interactions.groupby("user_id")["item_id"].agg(set)
    n_items = old.item_id.nunique()
    assert set(recs.user_id) == set(interactions.user_id) | {"cold-user"}
    # the fallback ranks the model's items by users per item in the new input
    popular = interactions[interactions.item_id.isin(old.item_id)].groupby("item_id").user_id.nunique()
    popular = popular.loc[sorted(popular.index)].sort_values(ascending=False, kind="stable")
    cold_recs = recs[recs.user_id == "cold-user"].sort_values("rank")
    assert cold_recs.item_id.tolist() == popular.index[:10].tolist()
    assert (cold_recs.source == "fallback").all()
    n_users = interactions.user_id.nunique() + 1
    assert cold_recs.score.tolist() == pytest.approx((popular.iloc[:10] / n_users).tolist(), abs=1e-6)
    recs = recs[recs.user_id != "cold-user"]
    assert (recs.source == "model").all()
    counts = recs.groupby("user_id").size()
    for user in new_users:
        known_seen = len(seen[user] & set(old.item_id))
        assert counts[user] == min(10, n_items - known_seen)
    assert not any(item in seen[user] for user, item in zip(recs.user_id, recs.item_id))
    # New users get personal lists from their folded-in factors, not one shared list.
    firsts = recs[recs.user_id.isin(new_users) & (recs["rank"] == 1)].item_id
    assert firsts.nunique() > 1


def test_score_input_without_model_is_a_clear_error(tmp_path, capsys):
    assert main(["score", "--input", str(tmp_path / "x.csv"), "--output", str(tmp_path), "--quiet"]) == 1
    assert "score --input needs --model" in capsys.readouterr().err


def test_score_with_an_earlier_model_maps_the_dates_prepared_data_to_its_index_space(earlier_model):
    # The earlier model knows fewer users, so the date's prepared indexes differ from the model's:
    # without the mapping, seen items would be masked for the wrong users.
    tmp, out, interactions, old, users = (earlier_model[k] for k in ("tmp", "out", "interactions", "old", "users"))
    (tmp / "later.csv").write_text(interactions.to_csv(index=False))
    assert main(["prepare", "--input", str(tmp / "later.csv"), "--output", str(out), "--run-date", "2026-03-03",
                 *FAST]) == 0
    assert main(["score", "--model", str(earlier_model["model_dir"]), "--output", str(out), "--run-date", "2026-03-03",
                 *FAST]) == 0
    assert main(["publish", "--output", str(out), "--run-date", "2026-03-03", *FAST]) == 0
    recs = pq.read_table(out / "user_recs" / "run_date=2026-03-03").to_pandas()
    seen = interactions.groupby("user_id")["item_id"].agg(set)
    assert set(recs.user_id) == set(users)
    assert not any(item in seen[user] for user, item in zip(recs.user_id, recs.item_id))
    n_items = old.item_id.nunique()
    counts = recs.groupby("user_id").size()
    assert all(counts[u] == min(10, n_items - len(seen[u] & set(old.item_id))) for u in users)
