"""Bad and odd inputs through the CLI: every bad row quarantined with its reason and counted, odd
shapes (catalog smaller than N, int64 ids, RFC 4180 quoted ids) published correctly, stray files of
an input directory skipped, and inputs that cannot be used (one user or one item among them) stop
the run before training with a clear message that never quotes the file, publishing nothing."""

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from frames import local_frame

from recsys_spark.app.cli import main
from recsys_spark.config import MODEL_KINDS, InputConfig
from recsys_spark.errors import ConfigError, InputError, ItemFeaturesError, RulesError, TooFewIdsError

FAST = ["--set", "model.kind=popularity", "--quiet"]
BIG = 9007199254740993  # 2**53 + 1: not representable as a double, so any float round trip shows


def _run(source, out, date, *extra):
    return main(["run", "--input", str(source), "--output", str(out), "--run-date", date, *FAST, *extra])


def _table(out: Path, table: str, date: str) -> pd.DataFrame:
    return pq.read_table(out / table / f"run_date={date}").to_pandas()


def _manifest(out: Path, date: str) -> dict:
    return json.loads((out / "_runs" / date / "current" / "manifest.json").read_text())


BAD_CSV = """user_id,item_id,weight,ts
ü1,é1,1.0,100
ü1,é2,2.0,100
ü1,é2,3.0,200
ü1,é2,3.0,200
-7,é3,1.0,9999999999
-7,é1,1e300,100
u3,é3,1,100
u3,é4,1,100
,é1,1,100
u3,,1,100
u3,é1,NaN,100
u3,é2,inf,100
u3,é5,-1,100
u3,é6,heavy,100
u3,é6,,100
u3,é6,1,yesterday
u3,é6,1,100,extra
u3
"""


@pytest.fixture(scope="module")
def bad_run(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    source = tmp / "bad.csv"
    source.write_text(BAD_CSV, encoding="utf-8")
    out = tmp / "out"
    assert _run(source, out, "2026-04-01") == 0
    return source, out


def test_every_bad_row_is_quarantined_with_its_reason(spark, bad_run):
    _, out = bad_run
    run_dir = out / "_runs" / "2026-04-01" / "current"
    quarantine = pq.read_table(run_dir / "quarantine").to_pandas()
    assert quarantine.reason.value_counts().to_dict() == {
        "malformed_line": 2, "null_user_id": 1, "null_item_id": 1, "non_finite_weight": 2,
        "weight_out_of_range": 1, "negative_weight": 1, "unparseable_weight": 1, "null_weight": 1,
        "unparseable_ts": 1}
    assert set(quarantine.loc[quarantine.reason == "malformed_line", "record"]) == {"u3,é6,1,100,extra", "u3"}
    manifest = _manifest(out, "2026-04-01")
    assert manifest["rows"] == {"read": 18, "malformed_lines": 2, "rejected": 9, "quarantined": 11,
                                "duplicates_merged": 2, "distinct_valid_pairs": 5,
                                "filtered_by_min_interactions": 0, "interactions": 5}
    assert manifest["rejected_by_reason"]["malformed_line"] == 2
    assert manifest["row_counts"]["quarantine"] == 11


def test_odd_ids_weights_and_timestamps_survive_exactly(spark, bad_run):
    _, out = bad_run
    recs = _table(out, "user_recs", "2026-04-01")
    # seen: ü1 {é1, é2}, -7 {é3} (a future ts is valid; its 1e300 weight does not fit float32 and
    # is quarantined), u3 {é3, é4}; catalog é1..é4.
    assert {u: set(g.item_id) for u, g in recs.groupby("user_id")} == {
        "ü1": {"é3", "é4"}, "-7": {"é1", "é2", "é4"}, "u3": {"é1", "é2"}}
    assert recs.user_id.dtype == object


def test_rerunning_a_date_gives_the_same_content_and_leaves_other_dates(spark, bad_run, tmp_path):
    source, out = bad_run
    ints = tmp_path / "ints.csv"
    ints.write_text(f"user_id,item_id\n{BIG},-1\n{BIG},2\n-5,2\n")
    assert _run(ints, out, "2026-04-02", "--set", "score.top_n=10") == 0
    before = {t: _table(out, t, "2026-04-01").sort_values(list(_table(out, t, "2026-04-01").columns[:3]))
              for t in ("user_recs", "item_similar")}
    other = sorted((p.name, p.read_bytes()) for p in (out / "user_recs" / "run_date=2026-04-02").rglob("*") if p.is_file())
    first_run = _manifest(out, "2026-04-01")["run_id"]
    assert _run(source, out, "2026-04-01") == 0
    assert _manifest(out, "2026-04-01")["run_id"] != first_run
    for table, frame in before.items():
        again = _table(out, table, "2026-04-01").sort_values(list(frame.columns[:3]))
        pd.testing.assert_frame_equal(again.reset_index(drop=True), frame.reset_index(drop=True))
    assert sorted((p.name, p.read_bytes()) for p in (out / "user_recs" / "run_date=2026-04-02").rglob("*")
                  if p.is_file()) == other
    recs = _table(out, "user_recs", "2026-04-02")
    # int64 ids stay exact; catalog {-1, 2} is smaller than N: BIG saw both, -5 gets the one left.
    assert recs.user_id.dtype == "int64" and recs[["user_id", "item_id"]].values.tolist() == [[-5, -1]]
    assert sorted(_table(out, "item_similar", "2026-04-02").item_id) == [-1, 2]


@pytest.mark.parametrize("rows, extra, message", [
    ("u1,a\nu1,b\nu1,c\n", [], "only 1 user and 3 items are left to train on"),
    ("u1,a\nu2,a\nu3,a\n", [], "only 3 users and 1 item are left to train on"),
    ("u1,a\nu2,a\nu1,b\n", ["--set", "prepare.min_item_interactions=2"],
     "only 2 users and 1 item are left to train on after prepare.min_user_interactions / min_item_interactions"),
], ids=["one_user", "one_item", "one_item_after_filters"])
def test_one_user_or_one_item_is_a_clear_error_not_a_traceback(spark, tmp_path, capsys, rows, extra, message):
    source = tmp_path / "in.csv"
    source.write_text("user_id,item_id\n" + rows)
    out = tmp_path / "out"
    # The default model (WALS) died on one user with a TensorFlow shape error.
    code = main(["run", "--input", str(source), "--output", str(out), "--run-date", "2026-04-03", "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == TooFewIdsError.exit_code == 1
    assert message in err and "at least two of each" in err and "Traceback" not in err
    assert not (out / "user_recs" / "run_date=2026-04-03").exists()


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_every_trainer_refuses_one_user_and_one_item(spark, kind):
    from recsys_spark.config import load_config
    from recsys_spark.models.registry import train_model
    from tests.prepared_frames import prepared_from_pandas

    cfg = load_config(None, [f"model.kind={kind}", "model.content.features_path=features.csv"])
    for users, items in ((["u1"] * 3, ["a", "b", "c"]), (["u1", "u2", "u3"], ["a"] * 3)):
        prepared = prepared_from_pandas(spark, pd.DataFrame({"user_id": users, "item_id": items, "weight": 1.0}))
        with pytest.raises(TooFewIdsError, match="at least two of each"):
            train_model(prepared, cfg)


def _refused(capsys, source, out, date="2026-04-04"):
    assert _run(source, out, date) == 1
    assert not (out / "user_recs" / f"run_date={date}").exists()
    return capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    ("user_id,item_id,weight\n", "no valid interactions"),
    ("", "is empty"),
    ("user_id,item_id,weight\nu1,i1,-1\n,i2,1\nu2,i2,NaN\n", "no valid interactions"),
    ("user,item_id\nu1,i1\n", "column 'user_id' (input.user_col) not found"),
], ids=["header_only", "empty_file", "all_invalid", "missing_column"])
def test_unusable_text_input_stops_before_training(spark, tmp_path, capsys, content, message):
    source = tmp_path / "in.csv"
    source.write_text(content)
    assert message in _refused(capsys, source, tmp_path / "out")


def test_parquet_schema_drift_and_corrupt_files_stop_before_training(spark, tmp_path, capsys):
    drifted = tmp_path / "drifted"
    local_frame(spark, [("u1", "i1", "heavy")], "user_id string, item_id string, weight string").write.parquet(str(drifted))
    err = _refused(capsys, drifted, tmp_path / "out")
    assert "column 'weight' (input.weight_col)" in err and "must hold numbers" in err
    nested = tmp_path / "nested"
    spark.sql("SELECT array(1) AS user_id, 'i1' AS item_id").write.parquet(str(nested))
    assert "must hold strings or integers" in _refused(capsys, nested, tmp_path / "out")
    corrupt = tmp_path / "corrupt"
    local_frame(spark, [("u1", "i1", 1.0)], "user_id string, item_id string, weight double").write.parquet(str(corrupt))
    (corrupt / "part-99999-broken.parquet").write_bytes(b"PAR1 this is not parquet")
    assert "cannot read the Parquet input" in _refused(capsys, corrupt, tmp_path / "out")


def test_a_run_date_built_to_escape_the_output_is_refused(spark, tmp_path, capsys):
    source = tmp_path / "in.csv"
    source.write_text("user_id,item_id\nu1,i1\n")
    assert main(["run", "--input", str(source), "--output", str(tmp_path / "out"), "--run-date", "../../etc", *FAST]) == 2
    assert "run date must be YYYY-MM-DD" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out")


# Ids as pandas (and Excel) write them: RFC 4180 quoting, a quote doubled inside quotes.
ODD_IDS = ['quote "q"', "a,b", "with space", 'all "of, it"', "plain"]


def test_quoted_ids_round_trip_and_stray_files_in_the_input_directory_are_skipped(spark, tmp_path, caplog):
    source = tmp_path / "export"
    source.mkdir()
    # Integer users, each leaving two items unseen, so every item is recommended to someone.
    rows = [(user, item) for user in range(1, 6) for j, item in enumerate(ODD_IDS) if j not in (user % 5, (user + 1) % 5)]
    pd.DataFrame(rows, columns=["user_id", "item_id"]).to_csv(source / "part-0.csv", index=False)
    # A note whose lines split into four fields was read as interactions, turning user_id into a string.
    (source / "NOTES.txt").write_text("user_id,item_id,weight,ts\nre-export,on,monday,please\n")
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        assert _run(source, out, "2026-04-05") == 0
    recs = _table(out, "user_recs", "2026-04-05")
    assert recs.user_id.dtype == "int64" and set(recs.user_id) == {1, 2, 3, 4, 5}
    assert set(recs.item_id) == set(ODD_IDS)
    similar = _table(out, "item_similar", "2026-04-05")
    assert set(similar.item_id) == set(similar.similar_item_id) == set(ODD_IDS)
    assert _manifest(out, "2026-04-05")["input"]["skipped_files"] == ["NOTES.txt"]
    assert any(r.levelname == "WARNING" and "NOTES.txt" in r.getMessage() and "input.glob" in r.getMessage()
               for r in caplog.records)


def test_csv_reader_keeps_quoted_ids_and_line_breaks_exactly(spark, tmp_path):
    from recsys_spark.storage.readers import read_interactions

    path = tmp_path / "in.csv"
    pd.DataFrame({"user_id": ODD_IDS, "item_id": ["i1"] * len(ODD_IDS)}).to_csv(path, index=False)
    frame, skipped = read_interactions(spark, InputConfig(), str(path))
    assert sorted(r.user_id for r in frame.collect()) == sorted(ODD_IDS) and skipped == []
    broken = ["line\nbreak", 'both "\n", here']
    pd.DataFrame({"user_id": broken, "item_id": ["i1", "i2"]}).to_csv(path, index=False)
    frame, _ = read_interactions(spark, InputConfig(multiline=True), str(path))
    assert sorted(r.user_id for r in frame.collect()) == sorted(broken)


def test_an_input_directory_with_no_matching_file_is_refused(spark, tmp_path):
    from recsys_spark.storage.readers import read_interactions

    (tmp_path / "notes.txt").write_text("user_id,item_id\nu1,i1\n")
    with pytest.raises(InputError, match=r"no file in the input directory .* matches input.glob"):
        read_interactions(spark, InputConfig(), str(tmp_path))
    frame, skipped = read_interactions(spark, InputConfig(glob="*.txt"), str(tmp_path))
    assert frame.count() == 1 and skipped == []
    with pytest.raises(ConfigError, match="a table has none"):
        InputConfig(format="table", glob="*.csv")


SECRET = "aws_secret_access_key=AKIAXSECRETX42"


def test_error_messages_never_print_file_contents(spark, tmp_path, capsys):
    from recsys_spark.storage.readers import read_config_file, read_interactions, read_item_features

    secrets = tmp_path / "secrets.csv"
    secrets.write_text(f"{SECRET}\nsecond line,{SECRET}\n")
    source = tmp_path / "in.csv"
    source.write_text("user_id,item_id\nu1,a\nu2,b\n")
    # A rule table pointed at a secrets file echoed its first line (the CSV header).
    code = main(["run", "--input", str(source), "--output", str(tmp_path / "out"), "--run-date", "2026-04-06",
                 *FAST, "--set", f"rules.exclude_items_path={secrets}"])
    err = capsys.readouterr().err
    assert code == RulesError.exit_code and "rules.exclude_items_path" in err and str(secrets) in err
    assert "AKIAX" not in err and "has no column item_id" in err
    with pytest.raises(InputError) as raised:
        read_interactions(spark, InputConfig(), str(secrets))
    assert "column 'user_id' (input.user_col) not found" in str(raised.value) and "AKIAX" not in str(raised.value)
    with pytest.raises(ItemFeaturesError) as raised:
        read_item_features(spark, str(secrets))
    assert "has no item_id column" in str(raised.value) and "AKIAX" not in str(raised.value)
    config = tmp_path / "conf.yaml"
    config.write_text(f"spark: [{SECRET}\n")
    with pytest.raises(ConfigError) as raised:
        read_config_file(str(config))
    assert "is not valid YAML at line" in str(raised.value) and "AKIAX" not in str(raised.value)
