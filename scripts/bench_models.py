"""Model quality as a user gets it, beside references computed in the same run on the same split.

    .venv/bin/python scripts/bench_models.py [--datasets ml-100k,ml-100k-binary,steam,generated]
        [--models auto,wals,ease,...] [--data-root ../shared/data] [--set KEY=VALUE ...] [--write]

(`pip install -e ".[bench]"` brings the references' packages: implicit, threadpoolctl.)

Protocol (P1): every (user, item) pair is one interaction (duplicate rows summed); users with at
least 5 interactions keep a random 20% (at least one) as test (seed 42); recommendations are the
top 10 items outside the user's training items; an item is relevant when it is in the user's test
set; NDCG, precision, recall and MAP at 10 are averaged over the test users (a user without a
list counts 0); coverage is the share of the training catalog in some list.

Each model kind runs the real CLI path: train.csv (user_id, item_id, weight as the data has it, ts)
goes through `recsys-spark run --set model.kind=KIND` in a fresh process, with nothing else set,
and the published user_recs are read back with pyarrow. The references use the same split in
numpy: popularity; EASE (Steck 2019, closed form) with lambda tuned on a validation split carved
from train the same way (seed 43); `implicit`'s ALS (CPU, conjugate gradient, BLAS pinned to one
thread) tuned on that validation split over factors, regularisation, alpha and the weighting
(binary or log(1 + w)); both refit on the whole train split with the chosen values.

Data sets: ml-100k (MovieLens 100K, weight = the rating), ml-100k-binary (weight 1 on every row),
steam (Steam play hours; its value column as given), generated
(recsys_spark.data.sample_data, 3000 users, 1500 items). --write puts the tables into
docs/benchmarks-models.md (its hand-written notes, from "## Notes" on, are kept).
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("auto", "wals", "ease", "als", "autoencoder", "two_tower", "mf", "popularity")
DATASETS = ("ml-100k", "ml-100k-binary", "steam", "generated")
K = 10
NOTES = "\n## Notes"
RUN_DATE = "2026-01-01"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--no-references", action="store_true", help="only the project's models")
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks-models.md")
    args = parser.parse_args()
    sections = []
    for name in [d for d in args.datasets.split(",") if d]:
        frame = load(name, Path(args.data_root))
        if frame is None:
            print(f"{name}: skipped, its files are not under {args.data_root}")
            continue
        train, test = split(frame, seed=42)
        print(f"\n{name}: {train.user_id.nunique()} users, {train.item_id.nunique()} items, "
              f"{len(train)} train and {len(test)} test interactions", flush=True)
        rows = []
        for kind in [m for m in args.models.split(",") if m]:
            rows.append(run_cli(kind, train, test, args.overrides))
            print(rows[-1], flush=True)
        if not args.no_references:
            for reference in (popularity_reference, ease_reference, implicit_reference):
                rows.append(reference(train, test))
                print(rows[-1], flush=True)
        table = pd.DataFrame(rows)
        references = table[table.model.str.startswith("ref:")]
        if len(references):
            table["vs best reference"] = (table["ndcg@10"] / references["ndcg@10"].max()).round(3)
        sections.append((name, weights_summary(train), table))
        print(table.to_string(index=False), flush=True)
    if args.write:
        write_page(sections, args)


# ---- data and protocol

def load(name: str, root: Path) -> pd.DataFrame | None:
    """user_id, item_id, weight, ts with one row per pair (duplicates summed), or None when absent."""
    if name.startswith("ml-100k"):
        path = root / "ml-100k" / "u.data"
        if not path.is_file():
            return None
        frame = pd.read_csv(path, sep="\t", names=["user_id", "item_id", "weight", "ts"])
        if name == "ml-100k-binary":
            frame["weight"] = 1.0
    elif name == "steam":
        path = root / "steam-200k" / "steam-200k.csv"
        if not path.is_file():
            return None
        frame = pd.read_csv(path, usecols=[0, 1, 2])  # user-id, game-title, value (hours; a purchase is 1)
        frame.columns = ["user_id", "item_id", "weight"]
        frame = frame.astype({"item_id": str})
        frame["ts"] = 0
    elif name == "generated":
        sys.path.insert(0, str(ROOT))
        from recsys_spark.data.sample_data import generate_interactions

        frame = generate_interactions(n_users=3000, n_items=1500, n_interactions=120_000, seed=7)
    else:
        raise SystemExit(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    frame = frame.dropna(subset=["user_id", "item_id", "weight"])
    return frame.groupby(["user_id", "item_id"], as_index=False).agg(weight=("weight", "sum"), ts=("ts", "max"))


def split(frame: pd.DataFrame, seed: int, fraction: float = 0.2, min_history: int = 5):
    """Protocol P1: users with >= min_history pairs keep a random `fraction` (at least one) as test."""
    shuffled = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    size = shuffled.groupby("user_id")["item_id"].transform("size")
    position = shuffled.groupby("user_id").cumcount()
    held = (size >= min_history) & (position < np.maximum(1, np.floor(size * fraction)))
    return shuffled[~held].reset_index(drop=True), shuffled[held].reset_index(drop=True)


def metrics(recs: dict, test: pd.DataFrame, n_items: int) -> dict:
    """Precision, recall, NDCG, MAP at K and coverage; users in test without a list count 0."""
    truth = test.groupby("user_id")["item_id"].apply(set).to_dict()
    discount = 1.0 / np.log2(np.arange(2, K + 2))
    totals = np.zeros(4)
    covered = set()
    for user, relevant in truth.items():
        ranked = list(recs.get(user, []))[:K]
        covered.update(ranked)
        hits = np.array([item in relevant for item in ranked], dtype=float)
        ideal = discount[:min(len(relevant), K)].sum()
        precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1) if len(hits) else hits
        totals += [hits.sum() / K, hits.sum() / len(relevant), (hits * discount[:len(hits)]).sum() / ideal,
                   (precision_at * hits).sum() / min(len(relevant), K)]
    values = totals / max(len(truth), 1)
    return {"precision@10": values[0], "recall@10": values[1], "ndcg@10": values[2], "map@10": values[3],
            "coverage": len(covered) / n_items}


def row(model: str, recs: dict, train: pd.DataFrame, test: pd.DataFrame, seconds: float, **extra) -> dict:
    values = metrics(recs, test, train.item_id.nunique())
    return {"model": model, **{k: round(v, 4) for k, v in values.items()}, "seconds": round(seconds, 1), **extra}


def weights_summary(train: pd.DataFrame) -> str:
    w = train.weight.to_numpy(float)
    return (f"weights: min {w.min():.3g}, median {np.median(w):.3g}, mean {w.mean():.3g}, max {w.max():.3g}, "
            f"{len(np.unique(w))} distinct")


# ---- the project's CLI

def run_cli(kind: str, train: pd.DataFrame, test: pd.DataFrame, overrides: list[str]) -> dict:
    """`recsys-spark run` on train.csv with model.kind=KIND (plus --set overrides); top 10 read back."""
    import pyarrow.dataset as ds

    with tempfile.TemporaryDirectory(prefix=f"bench-models-{kind}-") as work:
        train.to_csv(f"{work}/train.csv", index=False)
        command = [sys.executable, "-m", "recsys_spark.app.cli", "run", "--input", f"{work}/train.csv",
                   "--output", f"{work}/out", "--run-date", RUN_DATE, "--set", f"model.kind={kind}"]
        for override in overrides:
            command += ["--set", override]
        env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYTHONPATH=str(ROOT))
        started = time.time()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.time() - started
        if done.returncode != 0:
            print(done.stderr[-3000:])
            return {"model": kind, "ndcg@10": float("nan"), "seconds": round(seconds, 1), "note": "run failed"}
        recs_table = ds.dataset(f"{work}/out/user_recs/run_date={RUN_DATE}", format="parquet").to_table().to_pandas()
        trained = _trained_kind(f"{work}/out")
    recs = {u: list(g.sort_values("rank").item_id) for u, g in recs_table.groupby("user_id")}
    return row(kind, _typed(recs, train), train, test, seconds, trained=trained)


def _trained_kind(output: str) -> str:
    import json

    manifest = json.loads(Path(f"{output}/_runs/{RUN_DATE}/current/manifest.json").read_text())
    return manifest["model"]["kind"]


def _typed(recs: dict, train: pd.DataFrame) -> dict:
    """Recommendation ids in the type of the train ids (the CSV round trip may change it)."""
    cast = type(train.item_id.iloc[0])
    user_cast = type(train.user_id.iloc[0])
    return {user_cast(u): [cast(i) for i in items] for u, items in recs.items()}


# ---- references (numpy / implicit), same split

def _indexed(train: pd.DataFrame):
    users, user_index = np.unique(train.user_id.to_numpy(), return_inverse=True)
    items, item_index = np.unique(train.item_id.to_numpy(), return_inverse=True)
    return users, items, user_index, item_index


def _top(scores: np.ndarray, seen_users, seen_items) -> np.ndarray:
    scores = scores.astype(np.float64, copy=True)
    scores[seen_users, seen_items] = -np.inf
    top = np.argpartition(-scores, K, axis=1)[:, :K]
    order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
    return np.take_along_axis(top, order, 1)


def _recs(users, items, top) -> dict:
    return {users[r]: list(items[top[r]]) for r in range(len(users))}


def popularity_reference(train, test) -> dict:
    started = time.time()
    users, items, u, i = _indexed(train)
    scores = np.tile(np.bincount(i, minlength=len(items)).astype(float), (len(users), 1))
    return row("ref: popularity", _recs(users, items, _top(scores, u, i)), train, test, time.time() - started)


def ease_scores(train: pd.DataFrame, lam: float):
    users, items, u, i = _indexed(train)
    x = np.zeros((len(users), len(items)))
    x[u, i] = 1.0
    gram = x.T @ x
    gram[np.diag_indices_from(gram)] += lam
    inverse = np.linalg.inv(gram)
    b = -inverse / np.diag(inverse)
    b[np.diag_indices_from(b)] = 0.0
    return users, items, u, i, x @ b


def _tuned(train, candidates, fit_and_recommend):
    """The candidate whose recommendations on a validation split of train score the best NDCG@10."""
    fit, valid = split(train, seed=43)
    best, best_value = None, -1.0
    for candidate in candidates:
        value = metrics(fit_and_recommend(fit, candidate), valid, fit.item_id.nunique())["ndcg@10"]
        if value > best_value:
            best, best_value = candidate, value
    return best


def ease_reference(train, test) -> dict:
    started = time.time()

    def recommend(data, lam):
        users, items, u, i, scores = ease_scores(data, lam)
        return _recs(users, items, _top(scores, u, i))

    lam = _tuned(train, [50, 100, 200, 300, 500, 800, 1200], recommend)
    return row("ref: EASE", recommend(train, lam), train, test, time.time() - started, tuned=f"lambda={lam}")


def implicit_reference(train, test) -> dict:
    try:
        from implicit.cpu.als import AlternatingLeastSquares
        from scipy.sparse import csr_matrix
        from threadpoolctl import threadpool_limits
    except ImportError:
        print("implicit reference skipped: pip install -e '.[bench]' (implicit, threadpoolctl)")
        return {"model": "ref: implicit ALS", "ndcg@10": float("nan"), "note": "implicit not installed"}
    started = time.time()

    def recommend(data, params):
        factors, reg, alpha, weighting = params
        users, items, u, i = _indexed(data)
        values = np.ones(len(data)) if weighting == "binary" else np.log1p(data.weight.to_numpy(float))
        matrix = csr_matrix((values.astype(np.float32), (u, i)), shape=(len(users), len(items)))
        with threadpool_limits(limits=1, user_api="blas"):  # as implicit asks; checked when the model is built
            model = AlternatingLeastSquares(factors=factors, regularization=reg, alpha=alpha, iterations=15,
                                            use_cg=True, random_state=42, num_threads=os.cpu_count() or 1)
            model.fit(matrix, show_progress=False)
        ids, _ = model.recommend(np.arange(len(users)), matrix, N=K, filter_already_liked_items=True)
        return {users[r]: list(items[ids[r][ids[r] >= 0]]) for r in range(len(users))}

    # Coordinate search: regularisation x alpha x weighting at 64 factors, then the factor count at the best.
    coarse = _tuned(train, list(itertools.product([64], [0.1, 1.0, 5.0, 20.0, 80.0], [0.3, 1.0, 3.0, 10.0],
                                                  ["binary", "log"])), recommend)
    params = _tuned(train, [(factors, *coarse[1:]) for factors in (32, 64, 128)], recommend)
    return row("ref: implicit ALS", recommend(train, params), train, test, time.time() - started,
               tuned="factors={}, regularization={}, alpha={}, weights={}".format(*params))


# ---- the page

def write_page(sections, args) -> None:
    command = "python scripts/bench_models.py" + "".join(f" --set {o}" for o in args.overrides) + " --write"
    lines = ["# Model quality benchmark", "", f"Command: `{command}` (from the repository root; `pip install -e "
             "\".[bench]\"` first for the implicit reference).", "",
             "Generated by scripts/bench_models.py; its docstring gives the protocol. Every project row is "
             "`recsys-spark run` with `model.kind` set and nothing else; `ref:` rows are computed in the same "
             "run on the same split (tuned on a validation split carved from train).", ""]
    for name, weights, table in sections:
        lines += [f"## {name}", "", weights, "", markdown(table.fillna("")), ""]
    page = ROOT / "docs" / "benchmarks-models.md"
    notes = page.read_text().partition(NOTES)[2] if page.exists() else ""
    page.write_text("\n".join(lines) + (NOTES + notes if notes else ""))


def markdown(table: pd.DataFrame) -> str:
    rows = [list(table.columns), ["---"] * len(table.columns)] + table.astype(str).values.tolist()
    return "\n".join("| " + " | ".join(map(str, r)) + " |" for r in rows)


if __name__ == "__main__":
    main()
