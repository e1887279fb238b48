"""Warm vs cold start of the nightly WALS model over a simulated sequence of days.

    .venv/bin/python scripts/bench_warm_start.py [--data ../shared/data/ml-100k] [--days 6]
        [--datasets movielens,generated,large,xlarge] [--set KEY=VALUE ...]

Protocol. The interactions (MovieLens 100K u.data, every rating a positive interaction of weight 1
as in bench_models.py; and generated streams from recsys_spark/data/sample_data.py, timestamps
uniform over 180 days, seed 7: `generated` 2000 users, 800 items, 60k draws; `large` 20,000 users,
4,000 items, 1M draws; `xlarge` 100,000 users, 20,000 items, 5M draws, where the fit outweighs the
fixed costs; the default runs the first three) are cut by timestamp: day 0 is the first 60% of the
time span, and each of `--days` later days adds an equal share of the rest; a day's input is
everything up to its cut. A fixed hold-out is taken once from the whole stream
(recsys_spark.data.split.random_split: 20% of each user with at least 5 interactions, seed 42):
a day trains on the other rows up to its cut and is evaluated (NDCG@10 of its top 10, seen items
excluded, recsys_spark.evaluation.metrics.ranking_metrics) on the held-out rows up to its cut whose
user and item it knows. Day 0 has no earlier model, so both sequences start from the same cold
model; from day 1 on the cold sequence trains from random factors every day (model.warm_start=off)
and the warm one from the previous day's model, found as `recsys-spark run` finds it: each mode
writes its days in the nightly run's layout (`_runs/DATE/RUN/model`, `current` naming the run), and
app/steps.train's warm-start plan finds and reads the previous date's. Both train model.kind=wals
(model.kind=auto would pick EASE for these catalogs, which has no warm start). Churn: 1 - mean
overlap of consecutive days' top 10 per user (recsys_spark/evaluation/stability.py, as in the
manifest).

Seconds, per mode and day, each mode on the day's data prepared for it alone (the nightly run's
prepare stage, its interactions materialised: "prepare s", untimed otherwise), later days
alternating which mode runs first: "fit s" the WALS iterations, "train s" train_model's (collecting
the interactions and today's id maps, the warm start's read of the earlier rows and reconciliation,
"reconcile s", beside the collection, fitting, building the factor tables), "stage s" the nightly
run's train stage (app/nightly.py: the warm-start plan and train_model, saving the model and reading
it back for scoring). With the TensorFlow kernel one untimed iteration first compiles XLA's kernels
for the day's shapes, so neither mode is charged for it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ml-100k"))
    parser.add_argument("--days", type=int, default=6, help="days after day 0 (default 6)")
    parser.add_argument("--datasets", default="movielens,generated,large",
                        help="comma-separated: movielens, generated, large, xlarge")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from recsys_spark.app.session import build_session
    from recsys_spark.config import SparkConfig
    from recsys_spark.data.sample_data import generate_interactions

    spark = build_session(SparkConfig(master="local[2]", app_name="bench-warm-start", conf={
        "spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "4",
        "spark.driver.memory": "8g", "spark.ui.enabled": "false"}))
    datasets = []
    u_data = Path(args.data) / "u.data"
    wanted = args.datasets.split(",")
    if "movielens" not in wanted:
        pass
    elif u_data.is_file():
        ml = pd.read_csv(u_data, sep="\t", names=["user_id", "item_id", "weight", "ts"]).assign(weight=1.0)
        datasets.append(("MovieLens 100K", ml))
    else:
        print(f"skipped MovieLens: {u_data} not found (pass --data DIR)")
    if "generated" in wanted:
        datasets.append(("generated (2000 users, 800 items, 60k draws, seed 7)",
                         generate_interactions(n_users=2000, n_items=800, n_interactions=60_000, seed=7)))
    if "large" in wanted:
        datasets.append(("large generated (20,000 users, 4,000 items, 1M draws, seed 7)",
                         generate_interactions(n_users=20_000, n_items=4_000, n_interactions=1_000_000, seed=7)))
    if "xlarge" in wanted:
        datasets.append(("xlarge generated (100,000 users, 20,000 items, 5M draws, seed 7)",
                         generate_interactions(n_users=100_000, n_items=20_000, n_interactions=5_000_000, seed=7)))
    print("command: python scripts/bench_warm_start.py" + f" --days {args.days} --datasets {args.datasets}"
          + "".join(f" --set {o}" for o in args.overrides))
    store = Path(tempfile.mkdtemp(prefix="bench-warm-start-"))
    try:
        for number, (title, raw) in enumerate(datasets):
            load = os.getloadavg()[0]
            table = run_days(spark, raw, args.days, args.overrides, store / str(number))
            print(f"\n{title} (load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)\n"
                  f"{markdown(table)}\n{summary(table)}", flush=True)
    finally:
        spark.stop()
        shutil.rmtree(store, ignore_errors=True)


def run_days(spark, raw: pd.DataFrame, days: int, overrides: list[str], store: Path) -> pd.DataFrame:
    """Train, score and evaluate days 0..days cold and warm; one row per day."""
    from recsys_spark.config import load_config

    start, end = raw.ts.min(), raw.ts.max()
    cuts = [start + (end - start) * (0.6 + 0.4 * d / days) for d in range(days + 1)]
    cuts[-1] = end
    configs = {"cold": load_config(None, ["model.kind=wals", "model.warm_start=off", *overrides]),
               "warm": load_config(None, ["model.kind=wals", "model.warm_start=auto", *overrides])}
    train_rows, test_rows = hold_out(spark, raw)
    rows, previous = [], {"cold": None, "warm": None}
    for day, cut in enumerate(cuts):
        upto = train_rows[train_rows.ts <= cut]
        row = {"day": day}
        # Day 0 has no earlier model: the warm sequence starts from the cold day 0 (copied into its
        # output). Later days alternate which mode trains first, so neither gains from the other's
        # warmed-up JVM.
        modes = ["cold"] if day == 0 else (["cold", "warm"] if day % 2 else ["warm", "cold"])
        for mode in modes:
            prepared = prepare_day(spark, upto)  # each mode's train stage materialises its own, as a nightly run's does
            if "test pairs" not in row:
                test = known_test(spark, prepared, test_rows[test_rows.ts <= cut])
                row.update({"interactions": prepared.stats["interactions"], "users": prepared.n_users,
                            "items": prepared.n_items, "test pairs": test.count()})
            compile_for_shapes(spark, upto, configs[mode])
            result = day_result(spark, prepared, configs[mode], test, previous[mode], store / mode, day)
            result["prepare s"] = prepared.stats["bench prepare s"]
            prepared.interactions.unpersist()
            previous[mode] = result
            if day == 0:
                shutil.copytree(store / "cold" / RUNS, store / "warm" / RUNS, symlinks=True)
                previous["warm"] = result
        for mode in ("cold", "warm"):
            row.update({f"{mode} {k}": v for k, v in previous[mode].items() if k in COLUMNS})
        test.unpersist()
        spark.catalog.clearCache()  # the day's prepared data; recs and models are read from their files
        rows.append(row)
        print(row, flush=True)
    return pd.DataFrame(rows)


RUNS = "_runs"
COLUMNS = ("iterations", "fit s", "reconcile s", "train s", "stage s", "prepare s", "ndcg@10", "churn")


def hold_out(spark, raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train rows, held-out rows) of the whole stream: random_split over its distinct (user, item)
    pairs; every row of a held-out pair is held out."""
    from recsys_spark.data.split import random_split

    pairs = raw[["user_id", "item_id"]].drop_duplicates().reset_index(drop=True)
    indexed = pd.DataFrame({"user_index": pd.factorize(pairs.user_id)[0].astype("int32"),
                            "item_index": pd.factorize(pairs.item_id)[0].astype("int32"),
                            "weight": 1.0, "ts": pairs.index.astype("int64")})  # ts carries the pair's number
    _, test = random_split(spark.createDataFrame(indexed), fraction=0.2, min_history=5, seed=42)
    held_pairs = pairs.loc[test.select("ts").toPandas().ts].assign(_held=True)
    held = raw.merge(held_pairs, on=["user_id", "item_id"], how="left")["_held"].fillna(False).to_numpy(bool)
    return raw[~held], raw[held]


def known_test(spark, prepared, held: pd.DataFrame):
    """Held-out (user_id, item_id) pairs whose user and item the day's model knows."""
    users = set(prepared.user_ids.toPandas().user_id)
    items = set(prepared.item_ids.toPandas().item_id)
    pairs = held[held.user_id.isin(users) & held.item_id.isin(items)][["user_id", "item_id"]].drop_duplicates()
    return spark.createDataFrame(pairs.assign(weight=1.0)).persist()


def prepare_day(spark, upto: pd.DataFrame):
    """The day's input prepared as the nightly run's prepare stage leaves it (app/steps.read_and_prepare):
    interactions persisted and materialised; its seconds in stats["bench prepare s"]."""
    from recsys_spark.config import PrepareConfig
    from recsys_spark.data.prepare import prepare

    frame = spark.createDataFrame(upto[["user_id", "item_id", "weight", "ts"]])
    started = time.perf_counter()
    prepared = prepare(frame, PrepareConfig())
    prepared.interactions = prepared.interactions.persist()
    prepared.interactions.count()
    prepared.stats["bench prepare s"] = round(time.perf_counter() - started, 2)
    return prepared


def compile_for_shapes(spark, upto: pd.DataFrame, cfg) -> None:
    """With the TensorFlow kernel, one untimed WALS iteration on the day's data (on a prepared copy of
    its own): XLA compiles per shape, once per process and day, and neither mode is charged for it."""
    from recsys_spark.config import WalsConfig
    from recsys_spark.models.driver_data import collect_interactions
    from recsys_spark.models.wals import driver_kernel, fit_interactions

    if driver_kernel(cfg.model.wals.kernel) != "tensorflow":
        return
    prepared = prepare_day(spark, upto)
    data = collect_interactions(prepared.interactions, prepared.n_users, prepared.n_items)
    prepared.interactions.unpersist()
    params = {k: v for k, v in vars(cfg.model.wals).items() if k not in ("iterations", "tolerance")}
    fit_interactions(data, WalsConfig(**params, iterations=1, tolerance=0.0), cfg.model.rank, cfg.model.seed)


def day_result(spark, prepared, cfg, test, previous: dict | None, output: Path, day: int) -> dict:
    """Day `day` of one mode, written under `output` as the nightly run lays it out (the run's model in
    `_runs/DATE/RUN/model`, `current` naming the run), so the next day's warm start finds it as
    `recsys-spark run` does. "stage s" is the nightly run's train stage (app/nightly.py): the warm-start
    plan and train_model (app/steps.train), saving the model and reading it back for scoring."""
    import datetime as dt

    from recsys_spark.app.steps import train
    from recsys_spark.evaluation.metrics import ranking_metrics
    from recsys_spark.evaluation.stability import user_recs_stability
    from recsys_spark.serving.scoring import recommend
    from recsys_spark.serving.tables import user_recs_table
    from recsys_spark.storage.layout import DateLayout, new_run_id
    from recsys_spark.storage.stores import load_model, save_model

    layout = DateLayout(str(output), (dt.date(2026, 1, 1) + dt.timedelta(days=day)).isoformat())
    run_id = new_run_id()
    run = Path(layout.run(run_id))
    started = time.perf_counter()
    save_model(train(spark, cfg, prepared, layout), str(run / "model"))
    model = load_model(spark, str(run / "model"))
    stage = time.perf_counter() - started
    (run / "manifest.json").write_text(json.dumps({"run_id": run_id, "run_date": layout.run_date}))
    os.symlink(run_id, layout.current)  # published, for the next day's warm start
    recs = user_recs_table(recommend(model, prepared.interactions, cfg.score), model.kind)
    recs.write.parquet(str(run / "user_recs"))
    recs = spark.read.parquet(str(run / "user_recs"))
    values = {(r.metric, r.k): r.value for r in ranking_metrics(recs, test, [10])}
    churn = None
    if previous is not None:
        churn = user_recs_stability(recs, previous["recs"], cfg.score.top_n)["churn"]
    meta = model.metadata
    return {"recs": recs, "iterations": meta["iterations_run"], "fit s": round(sum(h["seconds"] for h in meta["history"]), 2),
            "reconcile s": (meta.get("warm_start") or {}).get("seconds", 0.0), "train s": meta["train_seconds"],
            "stage s": round(stage, 2), "ndcg@10": round(values[("ndcg", 10)], 4),
            "churn": None if churn is None else round(churn, 4)}


def summary(table: pd.DataFrame) -> str:
    """Days 1..n: NDCG@10 (mean, and warm - cold on the worst day), iterations, and for each of fit,
    train_model and the nightly train stage the seconds summed over the days with warm / cold of the
    sums and the median of the days' ratios; churn."""
    later = table[table.day > 0]
    ndcg = later["warm ndcg@10"] - later["cold ndcg@10"]
    parts = [f"days 1..{int(table.day.max())}: NDCG@10 cold {later['cold ndcg@10'].mean():.4f}, warm "
             f"{later['warm ndcg@10'].mean():.4f} (warm - cold {ndcg.mean():+.4f}, worst day {ndcg.min():+.4f})",
             f"iterations cold {later['cold iterations'].mean():.1f}, warm {later['warm iterations'].mean():.1f}"]
    for column, name in (("fit s", "fit"), ("train s", "train_model"), ("stage s", "train stage"),
                         ("prepare s", "prepare")):
        cold, warm = later[f"cold {column}"], later[f"warm {column}"]
        parts.append(f"{name} seconds cold {cold.sum():.1f}, warm {warm.sum():.1f} (warm/cold {warm.sum() / cold.sum():.2f},"
                     f" median of days {(warm / cold).median():.2f})")
    parts.append(f"reconcile seconds (warm, overlapped with the collection) median {later['warm reconcile s'].median():.2f}")
    parts.append(f"churn cold {later['cold churn'].dropna().mean():.4f}, warm {later['warm churn'].dropna().mean():.4f}")
    return "; ".join(parts)


def markdown(table: pd.DataFrame) -> str:
    rows = [list(table.columns), ["---"] * len(table.columns)] + table.astype(str).values.tolist()
    return "\n".join("| " + " | ".join(map(str, row)) + " |" for row in rows)


if __name__ == "__main__":
    main()
