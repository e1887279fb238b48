"""`publish` as its own stage: it needs what `score` and `similar` staged, made by one model."""

import shutil

import pyarrow.parquet as pq

from recsys_spark.app.cli import main
from recsys_spark.data.sample_data import generate_interactions


def test_publish_needs_both_tables_staged_by_the_same_model(spark, tmp_path, capsys):
    rows = generate_interactions(n_users=40, n_items=25, n_interactions=500, seed=8)
    rows.to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "out"
    common = ["--output", str(out), "--run-date", "2026-04-01", "--set", "model.kind=popularity", "--quiet"]
    assert main(["prepare", "--input", str(tmp_path / "in.csv"), *common]) == 0
    assert main(["train", *common]) == 0
    capsys.readouterr()

    assert main(["publish", *common]) == 1
    err = capsys.readouterr().err
    assert "user_recs and item_similar not staged" in err and "`recsys-spark score`" in err
    assert main(["score", *common]) == 0
    assert not (out / "user_recs").exists()  # staged, not published
    assert main(["publish", *common]) == 1
    assert "item_similar not staged" in capsys.readouterr().err

    other = tmp_path / "other-model"
    shutil.copytree(out / "_runs" / "2026-04-01" / "model", other)
    assert main(["similar", "--model", str(other), *common]) == 0
    assert main(["publish", *common]) == 1
    assert "made by different models" in capsys.readouterr().err
    assert not (out / "user_recs").exists()

    assert main(["similar", *common]) == 0
    assert main(["publish", *common]) == 0
    recs = pq.read_table(out / "user_recs" / "run_date=2026-04-01").to_pandas()
    assert recs.user_id.nunique() == rows.user_id.nunique()
    assert len(pq.read_table(out / "item_similar" / "run_date=2026-04-01")) == rows.item_id.nunique() * 10
    current = out / "_runs" / "2026-04-01" / "current"
    assert (current / "_SUCCESS").exists() and (current / "quarantine").exists()
    assert not list((out / "_runs" / "2026-04-01" / ".stage").glob("*.json"))
