"""Rule tables in the nightly run, as a user configures them, against a numpy reference."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from recsys_spark.app.cli import main
from recsys_spark.data.sample_data import generate_interactions

FAST = ["--set", "model.kind=wals", "--set", "model.rank=8", "--set", "model.wals.iterations=5", "--quiet"]
TOP = 10


@pytest.fixture(scope="module")
def ruled_run(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rules")
    interactions = generate_interactions(n_users=120, n_items=50, n_interactions=2400, seed=11)
    source = tmp / "interactions.csv"
    interactions.to_csv(source, index=False)
    items = sorted(interactions.item_id.unique())
    rng = np.random.default_rng(3)
    popular = interactions.item_id.value_counts().index[:3].tolist()
    excluded = set(popular)
    included = set(rng.choice(items, size=35, replace=False))
    users = sorted(interactions.user_id.unique())
    pairs = {(u, i) for u in rng.choice(users, size=15, replace=False) for i in rng.choice(items, size=4, replace=False)}
    pd.DataFrame({"item_id": sorted(excluded) + ["not-in-catalog"]}).to_csv(tmp / "exclude.csv", index=False)
    pd.DataFrame({"item_id": sorted(included)}).to_parquet(tmp / "include.parquet")
    pd.DataFrame(sorted(pairs), columns=["user_id", "item_id"]).to_csv(tmp / "user_exclude.csv", index=False)
    out = tmp / "warehouse"
    rules = ["--set", f"rules.exclude_items_path={tmp / 'exclude.csv'}",
             "--set", f"rules.include_items_path={tmp / 'include.parquet'}",
             "--set", f"rules.exclude_user_items_path={tmp / 'user_exclude.csv'}"]
    assert main(["run", "--input", str(source), "--output", str(out), "--run-date", "2026-07-01", *FAST, *rules]) == 0
    return tmp, out, interactions, excluded, included, pairs


def test_every_rule_is_applied_and_lists_are_the_exact_top_n(ruled_run):
    _, out, interactions, excluded, included, pairs = ruled_run
    recs = pq.read_table(out / "user_recs" / "run_date=2026-07-01").to_pandas()
    assert list(recs.columns) == ["user_id", "rank", "item_id", "score", "source", "model"]
    model_dir = out / "_runs" / "2026-07-01" / "current" / "model"
    user_vec = {r.user_id: np.asarray(r.factors, np.float64) for r in pd.read_parquet(model_dir / "user_factors").itertuples()}
    item_vec = {r.item_id: np.asarray(r.factors, np.float64) for r in pd.read_parquet(model_dir / "item_factors").itertuples()}
    seen = interactions.groupby("user_id")["item_id"].agg(set)
    allowed = included - excluded
    for user, items in seen.items():
        pool = sorted(allowed - items - {i for u, i in pairs if u == user})
        reference = sorted((user_vec[user] @ item_vec[i] for i in pool), reverse=True)[:TOP]
        got = recs[recs.user_id == user].sort_values("rank")
        assert got["rank"].tolist() == list(range(1, len(reference) + 1)), user
        assert set(got.item_id) <= set(pool), user
        np.testing.assert_allclose(got.score, [user_vec[user] @ item_vec[i] for i in got.item_id], atol=1e-4)
        np.testing.assert_allclose(got.score, reference, atol=1e-4)
    assert (recs.source == "model").all()  # every user and item has factors: nothing to fall back on


def test_item_similar_never_names_an_item_the_rules_forbid(ruled_run):
    _, out, interactions, excluded, included, _ = ruled_run
    similar = pq.read_table(out / "item_similar" / "run_date=2026-07-01").to_pandas()
    allowed = included - excluded
    assert set(similar.similar_item_id) <= allowed
    counts = similar.groupby("item_id").size()
    for item in interactions.item_id.unique():
        assert counts.get(item, 0) == min(10, len(allowed - {item})), item


def test_manifest_counts_the_rule_tables(ruled_run):
    _, out, _, excluded, included, pairs = ruled_run
    manifest = json.loads((out / "_runs" / "2026-07-01" / "current" / "manifest.json").read_text())
    rules = manifest["rules"]
    assert rules["exclude_items"] == {"rows": len(excluded) + 1, "matched": len(excluded)}
    assert rules["include_items"] == {"rows": len(included), "matched": len(included)}
    assert rules["exclude_user_items"] == {"rows": len(pairs), "matched": len(pairs)}
    assert rules["fallback_rows"] == 0
    assert manifest["audit"]["user_recs"]["item_not_allowed"] == 0
    assert manifest["audit"]["item_similar"]["item_not_allowed"] == 0


def test_a_missing_rule_table_fails_the_run_and_publishes_nothing(ruled_run, capsys):
    tmp, out, *_ = ruled_run
    code = main(["run", "--input", str(tmp / "interactions.csv"), "--output", str(out), "--run-date", "2026-07-02",
                 *FAST, "--set", f"rules.exclude_items_path={tmp / 'missing.csv'}"])
    assert code == 1
    assert "rules.exclude_items_path" in capsys.readouterr().err
    assert not (out / "user_recs" / "run_date=2026-07-02").exists()


def test_an_include_list_matching_no_item_is_an_error(ruled_run, capsys):
    tmp, out, *_ = ruled_run
    pd.DataFrame({"item_id": ["x1", "x2"]}).to_csv(tmp / "foreign.csv", index=False)
    code = main(["run", "--input", str(tmp / "interactions.csv"), "--output", str(out), "--run-date", "2026-07-03",
                 *FAST, "--set", f"rules.include_items_path={tmp / 'foreign.csv'}"])
    assert code == 1
    assert "matches none of the catalog" in capsys.readouterr().err
    assert not (out / "user_recs" / "run_date=2026-07-03").exists()
