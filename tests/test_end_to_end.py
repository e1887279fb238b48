"""The CLI on generated data, as a user runs it."""

import hashlib
import json
import logging
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from recsys_spark.app.cli import main
from recsys_spark.data.sample_data import generate_interactions
from tests.reference import precision_at_k

ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
FAST = ["--set", "model.rank=16", "--quiet"]


def _split(interactions: pd.DataFrame, seed: int = 7):
    """Hold out 20% of each user's distinct items (users with >= 5 items)."""
    rng = np.random.default_rng(seed)
    pairs = interactions.drop_duplicates(["user_id", "item_id"])[["user_id", "item_id"]]
    held = {}
    for user, group in pairs.groupby("user_id"):
        items = group["item_id"].to_numpy()
        if len(items) >= 5:
            held[user] = set(rng.choice(items, size=len(items) // 5, replace=False))
    mask = [item in held.get(user, ()) for user, item in zip(interactions.user_id, interactions.item_id)]
    return interactions[~np.array(mask)], held


def _files(root: Path) -> dict:
    return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _recs(out: Path, date: str) -> pd.DataFrame:
    return pq.read_table(out / "user_recs" / f"run_date={date}").to_pandas()


class _Messages(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@contextmanager
def _info_log():
    """The messages recsys_spark logs at INFO and above while the block runs (--quiet or not)."""
    logger, handler = logging.getLogger("recsys_spark"), _Messages()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture(scope="module")
def nightly(spark, tmp_path_factory):
    """Three dates, same training input: WALS on 2026-01-01, popularity on
    2026-01-02, Spark ALS on 2026-01-03; and the log of the first."""
    tmp = tmp_path_factory.mktemp("e2e")
    interactions = generate_interactions(n_users=600, n_items=200, n_interactions=24000, seed=5)
    train, held = _split(interactions)
    source = tmp / "interactions.csv"
    train.to_csv(source, index=False)
    out = tmp / "warehouse"
    with _info_log() as log_lines:
        assert main(["run", "--input", str(source), "--output", str(out), "--run-date", "2026-01-01",
                     "--set", "model.kind=wals", *FAST]) == 0
    first = _files(out / "user_recs" / "run_date=2026-01-01")
    assert main(["run", "--input", str(source), "--output", str(out), "--run-date", "2026-01-02",
                 "--set", "model.kind=popularity", "--quiet"]) == 0
    assert main(["run", "--input", str(source), "--output", str(out), "--run-date", "2026-01-03",
                 "--set", "model.kind=als", "--set", "model.als.max_iter=8", *FAST]) == 0
    return out, train, held, first, log_lines


def test_tables_have_the_documented_schemas(nightly):
    out = nightly[0]
    recs = pq.read_table(out / "user_recs" / "run_date=2026-01-01")
    similar = pq.read_table(out / "item_similar" / "run_date=2026-01-01")
    assert recs.schema.names == ["user_id", "rank", "item_id", "score", "source", "model"]
    assert similar.schema.names == ["item_id", "rank", "similar_item_id", "score", "model"]
    assert str(recs.schema.field("user_id").type) == "string"
    assert set(recs.column("model").to_pylist()) == {"wals"}


def test_every_user_gets_n_unseen_items(nightly):
    out, train, *_ = nightly
    recs = _recs(out, "2026-01-01")
    seen = train.groupby("user_id")["item_id"].agg(set)
    n_items = train.item_id.nunique()
    counts = recs.groupby("user_id").size()
    for user, items in seen.items():
        assert counts.get(user, 0) == min(10, n_items - len(items))
    recs["seen"] = [item in seen[user] for user, item in zip(recs.user_id, recs.item_id)]
    assert not recs["seen"].any()
    assert (recs.groupby("user_id")["rank"].apply(lambda r: sorted(r) == list(range(1, len(r) + 1)))).all()


def test_the_log_has_one_line_per_stage_with_its_rows_and_seconds(nightly):
    out, train, _, _, lines = nightly
    done = {m.group(1): m.group(2) for m in map(re.compile(r"^(\w+): done in \d+\.\ds(?:, (.*))?$").match, lines) if m}
    assert list(done) == ["prepare", "train", "score", "similar", "evaluate", "audit", "publish"], lines
    pairs = train.drop_duplicates(["user_id", "item_id"])
    recs = _recs(out, "2026-01-01")
    similar = pq.read_table(out / "item_similar" / "run_date=2026-01-01").to_pandas()
    users, items = train.user_id.nunique(), train.item_id.nunique()
    assert done["prepare"] == f"{len(pairs):,} interactions, {users:,} users, {items:,} items, 0 rows quarantined"
    assert done["train"] == f"wals latent dim 16 on {len(pairs):,} interactions ({users:,} users x {items:,} items)"
    assert done["score"] == f"{len(recs):,} user_recs rows for {recs.user_id.nunique():,} users"
    assert done["similar"] == f"{len(similar):,} item_similar rows for {similar.item_id.nunique():,} items"
    assert done["audit"] == f"user_recs {len(recs):,} rows, item_similar {len(similar):,} rows passed"
    iterations = [line for line in lines if line.startswith("wals: iteration ")]
    manifest = json.loads((out / "_runs" / "2026-01-01" / "current" / "manifest.json").read_text())
    ran = manifest["model"]["iterations_run"]  # model.wals.tolerance may stop before the 15-iteration cap
    assert 1 <= ran <= 15 and len(iterations) == ran
    assert all(re.search(r"s elapsed, ~[\d.hms]+ left$", line) for line in iterations)
    assert iterations[-1].startswith(f"wals: iteration {ran}/15 ")  # the estimate runs to the cap
    if ran == 15:  # (an early stop's estimate may round to 0.0s too when iterations take milliseconds)
        assert iterations[-1].endswith("~0.0s left")


def test_second_date_leaves_the_first_byte_identical(nightly):
    out, _, _, first, _ = nightly
    assert _files(out / "user_recs" / "run_date=2026-01-01") == first
    assert set(_recs(out, "2026-01-02")["model"]) == {"popularity"}


def test_models_beat_popularity_on_held_out_items(nightly):
    out, _, held, *_ = nightly
    scores = {}
    for date in ("2026-01-01", "2026-01-02", "2026-01-03"):
        recs = _recs(out, date).sort_values(["user_id", "rank"])
        scores[set(recs.model).pop()] = precision_at_k(recs.groupby("user_id")["item_id"].agg(list).to_dict(), held, 10)
    assert scores["wals"] > 1.3 * scores["popularity"], scores
    assert scores["als"] > 1.3 * scores["popularity"], scores


def test_spark_sql_reads_both_tables(spark, nightly):
    out = nightly[0]
    rows = spark.sql(f"SELECT run_date, count(*) AS n FROM parquet.`{out}/user_recs` GROUP BY run_date ORDER BY run_date").collect()
    assert [str(r.run_date) for r in rows] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    assert spark.sql(f"SELECT count(*) FROM parquet.`{out}/item_similar` WHERE rank = 1").first()[0] == 3 * 200


def test_movielens_format_reads_through_conf_alone(spark, tmp_path):
    root = Path(__file__).resolve().parents[1]
    rows = generate_interactions(n_users=40, n_items=30, n_interactions=400, seed=3)
    rows["user_id"] = rows.user_id.str[1:].astype(int) + 1
    rows["item_id"] = rows.item_id.str[1:].astype(int) + 1
    data = tmp_path / "u.data"
    rows[["user_id", "item_id", "weight", "ts"]].to_csv(data, sep="\t", header=False, index=False)
    out = tmp_path / "out"
    assert main(["prepare", "--conf", str(root / "conf" / "movielens.yaml"), "--input", str(data),
                 "--output", str(out), "--run-date", "2026-02-01", "--quiet"]) == 0
    users = pq.read_table(out / "_runs" / "2026-02-01" / "prepared" / "user_ids").to_pandas()
    assert users.user_id.dtype == np.int64
    assert set(users.user_id) == set(rows.user_id)
    common = ["--output", str(out), "--run-date", "2026-02-01", "--set", "model.kind=popularity", "--quiet"]
    for stage in ("train", "similar", "score", "publish"):  # score and similar in either order
        assert main([stage, *common]) == 0
    recs = _recs(out, "2026-02-01")
    assert recs.user_id.dtype == np.int64 and recs.item_id.dtype == np.int64
    assert set(recs.user_id) == set(rows.user_id)
    assert len(pq.read_table(out / "item_similar" / "run_date=2026-02-01")) == 30 * 10


def test_ml100k_reads_through_conf_alone(spark, tmp_path):
    if not (ML100K / "u.data").exists():
        pytest.skip(f"MovieLens 100K is not at {ML100K} (it is not redistributable, so not in the repo)")
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "out"
    assert main(["prepare", "--conf", str(root / "conf" / "movielens.yaml"), "--input", str(ML100K / "u.data"),
                 "--output", str(out), "--run-date", "2026-02-01", "--quiet"]) == 0
    stats = pd.read_json(out / "_runs" / "2026-02-01" / "prepared" / "prepared.json", typ="series")["stats"]
    assert (stats["rows_read"], stats["interactions"], stats["users"], stats["items"]) == (100000, 100000, 943, 1682)
