"""Quality and training time of every model on MovieLens 100K and on generated data.

    .venv/bin/python scripts/bench_models.py [--data ../shared/data/ml-100k] [--generated] [--write]

Protocol (the issue's): every rating is a positive interaction (weight 1; mf alone trains on the
rating values, being an explicit-feedback model); users with at least 5 interactions keep a
random 20% as test (recsys_spark.data.split.random_split, seed 42); the top 10 unseen items per user
come from the project's scoring stage; precision, recall, NDCG and MAP at 10 from
recsys_spark.evaluation.metrics, catalog coverage at 10, and the seconds spent in the trainer.
Every model runs with the defaults of recsys_spark/config/ (model.rank and all); `--set` overrides
them as `recsys-spark --set` does. With --generated the same runs on generated data too (no
content model there: it has no item features). --write puts the tables into
docs/benchmarks-models.md.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("popularity", "als", "wals", "mf", "two_tower", "autoencoder", "ease", "content")
METRICS = ("precision", "recall", "ndcg", "map")
NOTES = "\n## Notes"  # the page's hand-written section from this heading on survives --write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "ml-100k"))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--generated", action="store_true", help="also run on generated data")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks-models.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    data = Path(args.data)
    if not (data / "u.data").is_file():
        print(f"skipped: MovieLens 100K not found at {data} (u.data missing); pass --data DIR")
        return
    from recsys_spark.app.session import build_session
    from recsys_spark.config import SparkConfig

    spark = build_session(SparkConfig(master="local[2]", app_name="bench-models", conf={
        "spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "4",
        "spark.driver.memory": "4g", "spark.ui.enabled": "false"}))
    spark.sparkContext.setCheckpointDir(str(Path("/tmp") / "bench-models-checkpoints"))
    models = [m for m in args.models.split(",") if m]
    tables = [("MovieLens 100K", run_dataset(spark, movielens(data), models, args.overrides, data / "u.item"))]
    if args.generated:
        from recsys_spark.data.sample_data import generate_interactions

        generated = generate_interactions(n_users=3000, n_items=1500, n_interactions=120_000, seed=7)
        tables.append(("generated (3000 users, 1500 items, 120k draws, seed 7)",
                       run_dataset(spark, generated, [m for m in models if m != "content"], args.overrides, None)))
    for title, table in tables:
        print(f"\n{title}\n{table.to_string(index=False)}")
    if args.write:
        write_page(tables, args)
    spark.stop()


def movielens(data: Path) -> pd.DataFrame:
    """u.data as user_id, item_id, weight (the rating), ts."""
    return pd.read_csv(data / "u.data", sep="\t", names=["user_id", "item_id", "weight", "ts"])


def run_dataset(spark, raw: pd.DataFrame, models, overrides, item_features) -> pd.DataFrame:
    """Prepare, split, train every model and evaluate its top 10; one row per model."""
    from pyspark.sql import functions as F

    from recsys_spark.config import PrepareConfig
    from recsys_spark.data.prepare import PreparedData, prepare
    from recsys_spark.data.schema import ITEM_ID, ITEM_INDEX, USER_ID, USER_INDEX, WEIGHT
    from recsys_spark.data.split import random_split

    prepared = prepare(spark.createDataFrame(raw), PrepareConfig())
    train, test = random_split(prepared.interactions, fraction=0.2, min_history=5, seed=42)
    train, test = train.persist(), test.persist()
    test_ids = test.join(prepared.user_ids, USER_INDEX).join(prepared.item_ids, ITEM_INDEX).select(USER_ID, ITEM_ID)
    rated = PreparedData(train, prepared.user_ids, prepared.item_ids, prepared.n_users, prepared.n_items, prepared.stats)
    positive = PreparedData(train.withColumn(WEIGHT, F.lit(1.0)).persist(), prepared.user_ids, prepared.item_ids,
                            prepared.n_users, prepared.n_items, prepared.stats)
    print(f"{prepared.n_users} users, {prepared.n_items} items, {train.count()} train, {test.count()} test interactions")
    rows = []
    for kind in models:
        if kind == "wals" and importlib.util.find_spec("recsys_spark.models.wals") is None:
            print("wals: recsys_spark/models/wals.py does not exist yet; skipped")
            continue
        extra = []
        if kind == "content":
            extra = [f"model.content.features_path={item_features}", "model.content.features_format=movielens"]
        rows.append(evaluate_model(kind, rated if kind == "mf" else positive, test_ids, overrides + extra))
        print(rows[-1])
    return pd.DataFrame(rows)


def evaluate_model(kind: str, prepared, test_ids, overrides) -> dict:
    """Train `kind` with the config defaults plus overrides, score the top 10, compute the metrics."""
    from recsys_spark.config import load_config
    from recsys_spark.data.schema import ITEM_ID, ITEM_INDEX, USER_ID, USER_INDEX
    from recsys_spark.evaluation.metrics import catalog_metrics, ranking_metrics
    from recsys_spark.models.registry import TRAINERS
    from recsys_spark.serving.scoring import recommend

    cfg = load_config(None, [f"model.kind={kind}"] + list(overrides))
    cfg.score.top_n = 10
    module = importlib.import_module(f"recsys_spark.models.{TRAINERS[kind]}")
    started = time.time()
    model = module.train(prepared, cfg.model, cfg.train)
    model.user_factors.persist().count()
    seconds = time.time() - started
    recs = recommend(model, prepared.interactions, cfg.score).persist()
    values = {(row.metric, row.k): row.value for row in ranking_metrics(recs, test_ids, [10])}
    train_ids = (prepared.interactions.join(prepared.user_ids, USER_INDEX).join(prepared.item_ids, ITEM_INDEX)
                 .select(USER_ID, ITEM_ID))
    coverage = {(r.metric, r.k): r.value for r in catalog_metrics(recs, train_ids, [10], prepared.n_items)}
    recs.unpersist()
    row = {"model": kind}
    row.update({f"{m}@10": round(values[(m, 10)], 4) for m in METRICS})
    row["coverage@10"] = round(coverage[("coverage", 10)], 4)
    row["train_s"] = round(seconds, 1)
    return row


def write_page(tables, args) -> None:
    command = "python scripts/bench_models.py" + (" --generated" if args.generated else "") + "".join(
        f" --set {o}" for o in args.overrides) + " --write"
    lines = ["# Model quality benchmark", "", f"Command: `{command}` (from the repository root).", "",
             "Generated by scripts/bench_models.py; see its docstring for the protocol.", ""]
    for title, table in tables:
        lines += [f"## {title}", "", markdown(table), ""]
    page = ROOT / "docs" / "benchmarks-models.md"
    notes = page.read_text().partition(NOTES)[2] if page.exists() else ""
    page.write_text("\n".join(lines) + (NOTES + notes if notes else ""))


def markdown(table: pd.DataFrame) -> str:
    rows = [list(table.columns), ["---"] * len(table.columns)] + table.astype(str).values.tolist()
    return "\n".join("| " + " | ".join(map(str, row)) + " |" for row in rows)


if __name__ == "__main__":
    main()
