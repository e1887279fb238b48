"""Evaluation report: Markdown plus PNG plots (matplotlib, Agg backend).

The Spark side only aggregates (popularity buckets, score histograms: a few dozen rows per model);
the plotting side takes those small pandas frames and the metrics table and writes local files.
"""

from __future__ import annotations

import io
import math
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from pyspark.sql import DataFrame  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from recsys_spark.config import RANKING_METRICS  # noqa: E402
from recsys_spark.data.schema import ITEM_ID, RANK, SCORE  # noqa: E402
from recsys_spark.evaluation.metrics import POPULARITY_RANK, popularity_ranks  # noqa: E402

METRICS_PLOT = "metrics_vs_k.png"
POPULARITY_PLOT = "popularity.png"
SCORES_PLOT = "scores.png"
REPORT_FILE = "report.md"
_PLOTTED = (*RANKING_METRICS, "coverage", "novelty")
_TITLES = {"coverage": "coverage (share of catalog)", "novelty": "novelty (mean popularity rank)"}


def popularity_profile(recs: DataFrame, interactions: DataFrame, k: int, buckets: int = 10,
                       item_col: str = ITEM_ID, rank_col: str = RANK) -> pd.DataFrame:
    """Share of interactions and of top-k recommendations per catalog popularity bucket.

    Items are ranked by interaction count (1 = most popular) and cut into `buckets` equal groups
    of the ranked items; recommended items never interacted with fall in the last bucket.
    Returns bucket (1..buckets), interactions_share, recs_share.
    """
    ranks = popularity_ranks(interactions, item_col)
    n_ranked = max(ranks.count(), 1)
    bucket = F.least(F.lit(buckets), F.ceil(F.coalesce(F.col(POPULARITY_RANK), F.lit(n_ranked)) * buckets / n_ranked))
    seen = interactions.select(item_col).join(ranks, item_col).groupBy(bucket.alias("bucket")).count()
    recommended = (recs.filter(F.col(rank_col) <= k).select(item_col).join(ranks, item_col, "left")
                   .groupBy(bucket.alias("bucket")).count())
    frame = pd.DataFrame({"bucket": range(1, buckets + 1)})
    for name, counts in (("interactions_share", seen), ("recs_share", recommended)):
        pdf = counts.toPandas()
        total = pdf["count"].sum()
        shares = dict(zip(pdf["bucket"].astype(int), pdf["count"] / total if total else pdf["count"] * 0.0))
        frame[name] = [float(shares.get(b, 0.0)) for b in frame["bucket"]]
    return frame


def score_histogram(recs: DataFrame, bins: int = 30, score_col: str = SCORE) -> pd.DataFrame:
    """Histogram of recommendation scores in `bins` equal-width bins: left, right, count."""
    bounds = recs.agg(F.min(score_col).alias("lo"), F.max(score_col).alias("hi")).first()
    if bounds["lo"] is None:
        return pd.DataFrame({"left": [], "right": [], "count": []})
    lo, hi = float(bounds["lo"]), float(bounds["hi"])
    width = (hi - lo) / bins if hi > lo else 1.0
    index = F.least(F.lit(bins - 1), F.floor((F.col(score_col) - F.lit(lo)) / F.lit(width)).cast("int"))
    counts = {int(r["b"]): int(r["count"]) for r in recs.groupBy(index.alias("b")).count().collect()}
    return pd.DataFrame({
        "left": [lo + b * width for b in range(bins)],
        "right": [lo + (b + 1) * width for b in range(bins)],
        "count": [counts.get(b, 0) for b in range(bins)],
    })


def plot_metrics(metrics: pd.DataFrame) -> bytes:
    """One panel per metric, value vs k, one line per model. metrics: model, metric, k, value."""
    ranked = metrics[metrics["metric"].isin(_PLOTTED) & metrics["k"].notna()]
    names = [m for m in _PLOTTED if m in set(ranked["metric"])]
    cols = min(4, max(len(names), 1))
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for model, group in ranked[ranked["metric"] == name].groupby("model"):
            group = group.sort_values("k")
            ax.plot(group["k"], group["value"], marker="o", label=model)
        ax.set_title(_TITLES.get(name, name))
        ax.set_xlabel("k")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    if names:
        axes.flat[0].legend(fontsize="small")
    fig.tight_layout()
    return _png(fig)


def plot_popularity(profiles: pd.DataFrame) -> bytes:
    """Bars per popularity bucket: the catalog's interactions vs each model's recommendations.

    profiles: model, bucket, interactions_share, recs_share (one profile per model).
    """
    models = list(dict.fromkeys(profiles["model"]))
    catalog = profiles[profiles["model"] == models[0]] if models else profiles
    width = 0.8 / (len(models) + 1)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(catalog["bucket"] - 0.4 + width / 2, catalog["interactions_share"], width, label="interactions (train)",
           color="grey")
    for i, model in enumerate(models, start=1):
        group = profiles[profiles["model"] == model]
        ax.bar(group["bucket"] - 0.4 + width * (i + 0.5), group["recs_share"], width, label=f"recs: {model}")
    ax.set_xlabel("item popularity bucket (1 = most popular)")
    ax.set_ylabel("share")
    ax.set_xticks(sorted(set(profiles["bucket"])))
    ax.legend(fontsize="small")
    fig.tight_layout()
    return _png(fig)


def plot_scores(histograms: pd.DataFrame) -> bytes:
    """One panel per model with its score histogram. histograms: model, left, right, count."""
    models = list(dict.fromkeys(histograms["model"])) or ["(none)"]
    fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.2), squeeze=False)
    for ax, model in zip(axes.flat, models):
        group = histograms[histograms["model"] == model]
        ax.bar(group["left"], group["count"], width=(group["right"] - group["left"]), align="edge")
        ax.set_title(f"scores: {model}")
        ax.set_xlabel("score")
    fig.tight_layout()
    return _png(fig)


def render_report(metrics: pd.DataFrame, profiles: pd.DataFrame, histograms: pd.DataFrame,
                  title: str = "Evaluation", details: Optional[dict] = None) -> dict[str, bytes]:
    """report.md and its three PNG plots as {file name: content}; storage/reports.py writes them.

    metrics: model, metric, k, value (k null for metrics without a cut-off).
    """
    files = {METRICS_PLOT: plot_metrics(metrics), POPULARITY_PLOT: plot_popularity(profiles),
             SCORES_PLOT: plot_scores(histograms)}
    lines = [f"# {title}", ""]
    for key, value in (details or {}).items():
        lines.append(f"- {key}: {value}")
    lines += ["", "## Metrics", "", metrics_table(metrics), "",
              "Definitions: docs/metrics.md. Test users without recommendations count as zero.", "",
              f"![metrics vs k]({METRICS_PLOT})", "",
              "## Popularity of recommended items vs the catalog", "", f"![popularity]({POPULARITY_PLOT})", "",
              "## Score distribution", "", f"![scores]({SCORES_PLOT})", ""]
    return {REPORT_FILE: "\n".join(lines).encode(), **files}


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def metrics_table(metrics: pd.DataFrame) -> str:
    """A Markdown table: one row per metric@k (or metric), one column per model."""
    if metrics.empty:
        return "(no metrics)"
    label = metrics.apply(lambda r: r["metric"] if pd.isna(r["k"]) else f"{r['metric']}@{int(r['k'])}", axis=1)
    wide = metrics.assign(row=label).pivot_table(index="row", columns="model", values="value", sort=False)
    header = "| metric | " + " | ".join(map(str, wide.columns)) + " |"
    rule = "|---|" + "---:|" * len(wide.columns)
    body = [f"| {name} | " + " | ".join(_fmt(v) for v in row) + " |" for name, row in wide.iterrows()]
    return "\n".join([header, rule, *body])


def _fmt(value) -> str:
    if pd.isna(value):
        return ""
    return f"{value:.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.4f}"
