"""Publishing pieces on a local session: path safety, the lock, the audit, the quality gate,
the one-step publish in both modes, retention and permissions."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from frames import local_frame
from readers import visible_counts

from recsys_spark.storage import fs
from recsys_spark.storage.audit import (
    AuditError,
    QualityGateError,
    audit_recs,
    audit_similar,
    quality_gate,
    require_clean,
)
from recsys_spark.storage.cleanup import apply_retention, clean_date
from recsys_spark.storage.layout import DateLayout, UnsafePathError, check_name, new_run_id, table_path, under
from recsys_spark.storage.lock import DateLock, LockedError
from recsys_spark.storage.publish import publish, seal
from recsys_spark.storage.published import published_dates, published_manifest, published_run

RECS = "user_id string, rank int, item_id string, score float, source string"
SIMILAR = "item_id string, rank int, similar_item_id string, score float"


@pytest.mark.parametrize("date", ["../2026-01-01", "2026-01-01/..", "2026-13-01", "..", "2026-01-01\x00", " 2026-01-01"])
def test_run_dates_built_to_escape_the_root_are_rejected(date):
    with pytest.raises(UnsafePathError):
        DateLayout("/out", date)


@pytest.mark.parametrize("name", ["../etc", "user_recs/../../x", "a b", "Users", "x;drop table y", "", ".hidden"])
def test_table_names_built_to_escape_the_root_are_rejected(name):
    with pytest.raises(UnsafePathError):
        check_name(name)
    with pytest.raises(UnsafePathError):
        DateLayout("/out", "2026-01-01").partition(name)


def test_paths_stay_under_the_root():
    layout = DateLayout("hdfs://nn/out/", "2026-01-01")
    assert layout.partition("user_recs") == "hdfs://nn/out/user_recs/run_date=2026-01-01"
    run_id = new_run_id()
    assert layout.staging(run_id) == f"hdfs://nn/out/_runs/2026-01-01/.staging-{run_id}"
    for bad in ("..", "a/b", ""):
        with pytest.raises(UnsafePathError):
            under("/out", bad)
    with pytest.raises(UnsafePathError):
        layout.run("../../etc")


def test_a_second_run_of_a_date_is_locked_out_and_a_stale_lock_is_reclaimed(spark, tmp_path):
    path = str(tmp_path / "_runs" / "2026-01-01" / ".lock")
    with DateLock(spark, path, new_run_id(), stale_seconds=600):
        with pytest.raises(LockedError):
            DateLock(spark, path, new_run_id(), stale_seconds=600).__enter__()
    assert not os.path.exists(path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with open(path, "w") as out:  # left by a process that died
        json.dump({"run_id": "x", "host": os.uname().nodename, "pid": int(dead.stdout), "started": 0}, out)
    with DateLock(spark, path, new_run_id(), stale_seconds=600):
        assert json.load(open(path))["pid"] == os.getpid()
    with open(path, "w") as out:  # another host, not refreshed for long
        json.dump({"run_id": "x", "host": "elsewhere", "pid": 1, "started": 0}, out)
    os.utime(path, (0, 0))
    with DateLock(spark, path, new_run_id(), stale_seconds=600):
        pass
    with open(path, "w") as out:  # another host, fresh: held
        json.dump({"run_id": "x", "host": "elsewhere", "pid": 1, "started": 0}, out)
    with pytest.raises(LockedError):
        DateLock(spark, path, new_run_id(), stale_seconds=600).__enter__()


def _recs(spark, rows):
    rows = [row if len(row) == 5 else (*row, "model") for row in rows]
    return spark.createDataFrame(pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "score", "source"]), RECS)


def test_audit_passes_a_correct_table_and_names_every_broken_check(spark):
    # 4 items; u1 saw i1, u2 saw i1..i3 (1 unseen left), u3 saw nothing; N = 2.
    expected = local_frame(spark, [("u1", 2), ("u2", 1), ("u3", 2)], "user_id string, expected int")
    seen = local_frame(spark, [("u1", "i1"), ("u2", "i1"), ("u2", "i2"), ("u2", "i3")], "user_id string, item_id string")
    good = [("u1", 1, "i2", 0.9), ("u1", 2, "i3", 0.5), ("u2", 1, "i4", 0.3), ("u3", 1, "i1", 0.8), ("u3", 2, "i2", 0.8)]
    result = audit_recs(_recs(spark, good), expected, seen)
    require_clean({"user_recs": result})
    assert (result["_total_rows"], result["_expected_keys"]) == (5, 3)
    bad = [("u1", 1, "i1", 0.9),                                     # seen item
           ("u1", 2, "i3", 0.95),                                    # score rises with rank
           ("u2", 1, "i4", float("nan")), ("u2", 2, "i3", 0.1),      # NaN, seen, one row too many
           ("u3", 1, "i1", 0.8), ("u3", 3, "i1", 0.7),               # rank gap, duplicate item
           ("u9", 1, "i1", 0.5)]                                     # not an eligible user
    result = audit_recs(_recs(spark, bad), expected, seen)
    assert result["seen_item_recommended"] == 2
    assert result["score_increases_with_rank"] == 1
    assert result["non_finite_score"] == 1
    assert result["wrong_row_count"] == 1  # u2 (u9 is counted as unknown)
    assert result["ranks_not_1_to_k"] == 1
    assert result["duplicate_items"] == 1
    assert result["rows_for_unknown_keys"] == 1
    with pytest.raises(AuditError, match="user_recs.seen_item_recommended=2"):
        require_clean({"user_recs": result})


def test_audit_checks_the_rules_and_the_fallback_rows(spark):
    # i9 is excluded for everyone, (u1, i3) for u1; fallback rows (popularity) follow model rows.
    expected = local_frame(spark, [("u1", 3), ("u2", 2)], "user_id string, expected int")
    seen = local_frame(spark, [("u1", "i1")], "user_id string, item_id string")
    excluded = local_frame(spark, [("u1", "i3")], "user_id string, item_id string")
    allowed = local_frame(spark, [(f"i{i}",) for i in range(1, 9)], "item_id string")
    good = [("u1", 1, "i2", 0.1, "model"), ("u1", 2, "i4", 0.9, "fallback"), ("u1", 3, "i5", 0.4, "fallback"),
            ("u2", 1, "i4", 0.9, "fallback"), ("u2", 2, "i5", 0.4, "fallback")]
    result = audit_recs(_recs(spark, good), expected, seen, excluded=excluded, allowed_items=allowed)
    require_clean({"user_recs": result})  # a fallback score above the model's last score is fine
    assert result["_fallback_rows"] == 4
    bad = [("u1", 1, "i3", 0.1, "fallback"), ("u1", 2, "i4", 0.9, "model"),  # excluded pair; fallback first
           ("u1", 3, "i9", 1.5, "fallback"),                                 # not allowed; score > 1
           ("u2", 1, "i4", 0.4, "fallback"), ("u2", 2, "i5", 0.5, "other")]   # unknown source
    result = audit_recs(_recs(spark, bad), expected, seen, excluded=excluded, allowed_items=allowed)
    assert result["excluded_item_recommended"] == 1
    assert result["item_not_allowed"] == 1
    assert result["fallback_before_model"] == 1
    assert result["fallback_score_out_of_range"] == 1
    assert result["unknown_source"] == 1
    assert result["score_increases_with_rank"] == 1  # u1's fallback rows 0.1 -> 1.5


def test_audit_of_item_similar(spark):
    items = local_frame(spark, [("a",), ("b",), ("c",)], "item_id string")
    good = [("a", 1, "b", 0.5), ("a", 2, "c", -0.2), ("b", 1, "a", 0.5), ("b", 2, "c", 0.1),
            ("c", 1, "b", 0.1), ("c", 2, "a", -0.2)]
    require_clean({"item_similar": audit_similar(local_frame(spark, good, SIMILAR), items, top_k=5)})
    bad = [("a", 1, "a", 1.0), ("a", 2, "c", -0.2), ("b", 1, "a", 1.5), ("b", 2, "c", 0.1), ("c", 1, "b", 0.1)]
    result = audit_similar(local_frame(spark, bad, SIMILAR), items, top_k=5)
    assert (result["self_pair"], result["cosine_out_of_range"], result["wrong_row_count"]) == (1, 1, 1)
    one = local_frame(spark, [("a",)], "item_id string")
    require_clean({"item_similar": audit_similar(local_frame(spark, [], SIMILAR), one, top_k=5)})


def test_quality_gate_refuses_a_drop_past_the_threshold():
    before = {"als": {"ndcg@10": 0.20}}
    assert quality_gate({"als": {"ndcg@10": 0.19}}, before, "als", "ndcg@10", 0.1)["passed"]
    with pytest.raises(QualityGateError, match="ndcg@10 is 0.1700"):
        quality_gate({"als": {"ndcg@10": 0.17}}, before, "als", "ndcg@10", 0.1)
    assert "skipped" in quality_gate(None, before, "als", "ndcg@10", 0.1)
    assert "skipped" in quality_gate({"als": {"ndcg@10": 0.01}}, None, "als", "ndcg@10", 0.1)


def _stage_run(spark, layout, rows, run_id=None):
    run_id = run_id or new_run_id()
    staging = layout.staging(run_id)
    _recs(spark, rows).write.parquet(table_path(staging, "user_recs"))
    local_frame(spark, [("a", 1, "b", 0.5)], SIMILAR).write.parquet(table_path(staging, "item_similar"))
    seal(spark, layout, run_id, {"run_id": run_id, "rows": len(rows)})
    return run_id


def _read(spark, root, date):
    df = spark.read.parquet(f"{root}/user_recs").filter(f"run_date = '{date}'").toPandas()
    return sorted(map(tuple, df[["user_id", "rank", "item_id"]].to_numpy().tolist()))


@pytest.mark.parametrize("mode", ["pointer", "rename"])
def test_publish_replaces_one_date_whole_and_keeps_the_others(spark, tmp_path, mode):
    root = str(tmp_path / "out")
    first, second = DateLayout(root, "2026-01-01"), DateLayout(root, "2026-01-02")
    publish(spark, first, _stage_run(spark, first, [("u1", 1, "i1", 1.0)]), mode)
    old = _stage_run(spark, second, [("u1", 1, "i2", 1.0)])
    publish(spark, second, old, mode)
    before = {p: open(p, "rb").read() for p in _files(tmp_path / "out" / "user_recs" / "run_date=2026-01-01")}
    new = _stage_run(spark, second, [("u2", 1, "i3", 1.0), ("u2", 2, "i4", 0.5)])
    assert _read(spark, root, "2026-01-02") == [("u1", 1, "i2")]  # sealed but not published: invisible
    assert publish(spark, second, new, mode) == old
    assert _read(spark, root, "2026-01-02") == [("u2", 1, "i3"), ("u2", 2, "i4")]
    assert _read(spark, root, "2026-01-01") == [("u1", 1, "i1")]
    assert {p: open(p, "rb").read() for p in _files(tmp_path / "out" / "user_recs" / "run_date=2026-01-01")} == before
    assert published_run(spark, second) == new and published_manifest(spark, second)["rows"] == 2
    assert (os.path.islink(second.partition("user_recs")) and os.path.islink(second.current)) == (mode == "pointer")
    stray = _stage_run(spark, second, [("u3", 1, "i1", 1.0)])
    os.symlink("gone", second.current + ".20260101T000000Z-deadbeef")  # left by a run killed inside publish
    assert sorted(clean_date(spark, second, keep={new, old})) == sorted([stray, "current.20260101T000000Z-deadbeef"])
    assert _read(spark, root, "2026-01-02") == [("u2", 1, "i3"), ("u2", 2, "i4")]


def _files(root):
    return sorted(str(p) for p in root.rglob("*") if p.is_file())


def test_retention_removes_old_dates_partitions_first(spark, tmp_path):
    root = str(tmp_path / "out")
    for date in ("2026-01-01", "2026-01-05", "2026-01-08"):
        layout = DateLayout(root, date)
        publish(spark, layout, _stage_run(spark, layout, [("u1", 1, "i1", 1.0)]), "pointer")
    assert apply_retention(spark, root, retention_days=5, published_date="2026-01-08") == ["2026-01-01"]
    assert published_dates(spark, root) == ["2026-01-05", "2026-01-08"]
    assert not os.path.lexists(DateLayout(root, "2026-01-01").partition("user_recs"))
    assert sorted(spark.read.parquet(f"{root}/user_recs").toPandas().run_date.astype(str).unique()) == \
        ["2026-01-05", "2026-01-08"]


def test_sealed_runs_are_not_world_readable(spark, tmp_path):
    layout = DateLayout(str(tmp_path / "out"), "2026-01-01")
    run_id = _stage_run(spark, layout, [("u1", 1, "i1", 1.0)])
    for dirpath, dirnames, filenames in os.walk(layout.run(run_id)):
        for name in [*dirnames, *filenames]:
            assert not os.stat(os.path.join(dirpath, name)).st_mode & stat.S_IROTH, name
    assert fs.local_path(spark, layout.root) == layout.root


@pytest.mark.parametrize("through", ["os", "hadoop"])
def test_restrict_permissions_sets_the_umask_modes_on_every_entry_and_leaves_link_targets(spark, tmp_path,
                                                                                        monkeypatch, through):
    tree, outside = tmp_path / "tree", tmp_path / "outside.txt"
    (tree / "a" / "b").mkdir(parents=True)
    for path in (tree / "f", tree / "a" / "g", tree / "a" / "b" / "h", tree / "a" / "b" / ".h.crc", outside):
        path.write_text("x")
        path.chmod(0o666)
    for path in (tree, tree / "a", tree / "a" / "b"):
        path.chmod(0o777)
    (tree / "a" / "link").symlink_to(outside)
    if through == "hadoop":  # the walk a remote file system gets
        monkeypatch.setattr(fs, "local_path", lambda session, path: None)
    fs.restrict_permissions(spark, str(tree), dir_mode=0o750, file_mode=0o640)
    modes = {str(p.relative_to(tree)): stat.S_IMODE(p.stat().st_mode) for p in [tree, *tree.rglob("*")]
             if not p.is_symlink()}
    assert modes == {".": 0o750, "a": 0o750, "a/b": 0o750, "f": 0o640, "a/g": 0o640, "a/b/h": 0o640,
                     "a/b/.h.crc": 0o640}  # (Hadoop reaches a checksum file through the file it checks)
    if through == "os":
        assert stat.S_IMODE(outside.stat().st_mode) == 0o666


@pytest.mark.parametrize("mode", ["rename", "pointer"])
def test_readers_during_repeated_swaps_see_one_whole_run_and_never_a_missing_date(spark, tmp_path, mode):
    import threading

    import pyarrow.parquet as pq

    layout = DateLayout(str(tmp_path / "out"), "2026-01-01")
    runs = [_stage_run(spark, layout, [("u1", 1, "i1", 1.0)]),
            _stage_run(spark, layout, [("u2", 1, "i2", 1.0), ("u2", 2, "i3", 0.5)])]
    publish(spark, layout, runs[0], mode)
    expected = {(("u1", "i1"),), (("u2", "i2"), ("u2", "i3"))}
    seen, problems, empty, done = set(), [], [], threading.Event()

    def read_forever():
        while not done.is_set():
            if not os.path.exists(layout.partition("user_recs")):
                problems.append("date missing")
                continue
            try:
                table = pq.read_table(layout.partition("user_recs"))
            except Exception as exc:  # pyarrow wraps a vanished file in several error types
                if "No such file" not in str(exc) and not isinstance(exc, FileNotFoundError):
                    problems.append(repr(exc))
                continue  # listed before a swap, opened after it: fails, never mixes
            if table.num_columns == 0:
                # Names listed through the old run, each then looked up (and skipped as gone) through
                # the new one: an empty read, documented in docs/publishing.md ("Queries in flight").
                empty.append(1)
                continue
            rows = tuple(sorted(zip(table.column("user_id").to_pylist(), table.column("item_id").to_pylist())))
            if rows in expected:
                seen.add(rows)
            else:
                problems.append(rows)

    def read_until_done():
        try:
            read_forever()
        except Exception as exc:  # a crashed reader must fail the test, not end it quietly
            problems.append(f"reader crashed: {exc!r}")

    reader = threading.Thread(target=read_until_done)
    reader.start()
    for i in range(60):
        publish(spark, layout, runs[(i + 1) % 2], mode)
    done.set()
    reader.join()
    assert problems == []
    assert seen <= expected and seen


def test_audit_of_item_similar_with_allowed_neighbours(spark):
    items = local_frame(spark, [("a",), ("b",), ("c",)], "item_id string")
    neighbours = local_frame(spark, [("a",), ("b",)], "item_id string")  # c is excluded
    good = [("a", 1, "b", 0.5), ("b", 1, "a", 0.5), ("c", 1, "b", 0.1), ("c", 2, "a", -0.2)]
    require_clean({"item_similar": audit_similar(local_frame(spark, good, SIMILAR), items, 5, neighbours)})
    bad = [("a", 1, "c", 0.5), ("b", 1, "a", 0.5), ("c", 1, "b", 0.1)]
    result = audit_similar(local_frame(spark, bad, SIMILAR), items, 5, neighbours)
    assert (result["item_not_allowed"], result["wrong_row_count"]) == (1, 1)


def test_retention_during_a_backfill_never_removes_a_newer_date(spark, tmp_path):
    root = str(tmp_path / "out")
    for date in ("2026-01-01", "2026-01-05", "2026-01-20", "2026-01-03"):  # 01-03 is the backfill
        layout = DateLayout(root, date)
        publish(spark, layout, _stage_run(spark, layout, [("u1", 1, "i1", 1.0)]), "rename")
    with DateLock(spark, DateLayout(root, "2026-01-03").lock, new_run_id(), stale_seconds=600):
        assert apply_retention(spark, root, retention_days=5, published_date="2026-01-03") == ["2026-01-01"]
    assert published_dates(spark, root) == ["2026-01-03", "2026-01-05", "2026-01-20"]
    assert apply_retention(spark, root, retention_days=5, published_date="2026-01-20") == ["2026-01-03", "2026-01-05"]


# -- what real readers see: Spark SQL, pyarrow datasets, DuckDB ------------------------------

def _stage(spark, layout, n):
    """A sealed run with n user_recs rows and n + 1 item_similar rows; returns (run id, counts)."""
    run_id = new_run_id()
    staging = layout.staging(run_id)
    _recs(spark, [(f"u{i}", 1, "i1", 1.0) for i in range(n)]).write.parquet(table_path(staging, "user_recs"))
    local_frame(spark, [(f"a{i}", 1, "b", 0.5) for i in range(n + 1)], SIMILAR).write.parquet(
        table_path(staging, "item_similar"))
    counts = {"user_recs": n, "item_similar": n + 1}
    seal(spark, layout, run_id, {"run_id": run_id, "row_counts": counts})
    return run_id, counts


def _matches_current(spark, layout, readers=("spark", "pyarrow", "duckdb")) -> None:
    counts = published_manifest(spark, layout)["row_counts"]
    assert visible_counts(spark, layout.root, layout.run_date, readers) == {r: counts for r in readers}
    assert not os.path.exists(f"{layout.runs}/.publishing")
    dangling = [str(p) for p in Path(layout.root).rglob("*") if p.is_symlink() and not p.exists()]
    assert dangling == []


def test_switching_publish_mode_either_way_shows_every_reader_the_new_run(spark, tmp_path):
    layout = DateLayout(str(tmp_path / "out"), "2026-02-01")
    other = DateLayout(layout.root, "2026-01-31")
    publish(spark, other, _stage(spark, other, 7)[0], "rename")
    publish(spark, layout, _stage(spark, layout, 2)[0], "pointer")
    _matches_current(spark, layout, readers=("spark", "pyarrow"))  # DuckDB does not follow the partition symlink
    for n, mode in ((3, "rename"), (4, "pointer"), (5, "rename"), (6, "rename")):
        run_id, counts = _stage(spark, layout, n)
        publish(spark, layout, run_id, mode)
        assert published_run(spark, layout) == run_id
        _matches_current(spark, layout, readers=("spark", "pyarrow", "duckdb") if mode == "rename" else ("spark", "pyarrow"))
        assert os.path.islink(layout.partition("user_recs")) == (mode == "pointer")
    _matches_current(spark, other)


def test_a_publish_that_fails_half_way_puts_the_previous_run_back(spark, tmp_path, monkeypatch):
    from recsys_spark.storage import publish as publishing

    layout = DateLayout(str(tmp_path / "out"), "2026-02-01")
    for first_mode in ("rename", "pointer"):
        previous, _ = _stage(spark, layout, 2)
        publish(spark, layout, previous, first_mode)
        real_exchange, calls = fs.exchange, []

        def exchange_fails_on_the_second_table(a, b):
            calls.append(b)
            if len(calls) == 2:
                raise OSError(28, "No space left on device")
            return real_exchange(a, b)

        monkeypatch.setattr(publishing.fs, "exchange", exchange_fails_on_the_second_table)
        failing, _ = _stage(spark, layout, 3)
        with pytest.raises(OSError, match="No space left"):
            publish(spark, layout, failing, "rename")
        monkeypatch.setattr(publishing.fs, "exchange", real_exchange)
        assert published_run(spark, layout) == previous
        _matches_current(spark, layout, ("spark", "pyarrow", "duckdb") if first_mode == "rename" else ("spark", "pyarrow"))
        publish(spark, layout, failing, "rename")  # the failed run itself is intact
        _matches_current(spark, layout)


class _Killed(BaseException):
    """Stands for SIGKILL inside publish: nothing after it runs, no rollback (tests/test_faults.py
    kills real processes at the same points)."""


@pytest.mark.parametrize("point", ["publish_swap", "publish_current"])
@pytest.mark.parametrize("mode", ["rename", "pointer"])
def test_a_publish_killed_half_way_is_finished_by_repair(spark, tmp_path, monkeypatch, mode, point):
    from recsys_spark.storage import publish as publishing

    layout = DateLayout(str(tmp_path / "out"), "2026-02-01")
    publish(spark, layout, _stage(spark, layout, 2)[0], "rename" if mode == "pointer" else "pointer")
    run_id, counts = _stage(spark, layout, 3)

    def kill(name):
        if name == point:
            raise _Killed

    monkeypatch.setattr(publishing, "fault_point", kill)
    with pytest.raises(_Killed):
        publish(spark, layout, run_id, mode)
    monkeypatch.undo()
    for table, rows in visible_counts(spark, layout.root, layout.run_date, ("spark",))["spark"].items():
        assert rows in (2 + (table == "item_similar"), counts[table])  # each table shows one whole run
    assert publishing.repair(spark, layout) == run_id
    assert published_run(spark, layout) == run_id
    _matches_current(spark, layout, ("spark", "pyarrow", "duckdb") if mode == "rename" else ("spark", "pyarrow"))
    assert publishing.repair(spark, layout) is None
