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
CHURN_PLOT = "churn.png"
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


_CHURN_COLUMNS = ("run_date", "compared_with", "churn", "mean", "p10", "p50", "p90")


def churn_history(manifests: list[dict]) -> pd.DataFrame:
    """user_recs stability of published runs, from their manifests (storage/published.published_manifests):
    run_date, compared_with, churn, mean, p10, p50, p90 (overlap), one row per date that was
    compared with an earlier one, oldest first."""
    rows = []
    for manifest in manifests:
        stability = manifest.get("stability") or {}
        recs = stability.get("user_recs") or {}
        if recs.get("churn") is None:
            continue
        rows.append((manifest["run_date"], stability.get("compared_with"), recs["churn"],
                     *(recs["overlap"].get(name) for name in ("mean", "p10", "p50", "p90"))))
    return pd.DataFrame(rows, columns=list(_CHURN_COLUMNS)).sort_values("run_date", ignore_index=True)


def plot_churn(history: pd.DataFrame) -> bytes:
    """Churn of user_recs per published date, with the overlap's p10-p90 band. history: churn_history."""
    dates = history["run_date"].tolist()
    x = range(len(dates))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(dates)), 3.5))
    ax.plot(x, history["churn"], marker="o", label="churn (1 - mean overlap)")
    ax.fill_between(x, 1 - history["p90"].astype(float), 1 - history["p10"].astype(float), alpha=0.2,
                    label="1 - overlap, p10-p90 of users")
    ax.plot(x, 1 - history["p50"].astype(float), linestyle="--", label="1 - median overlap")
    ax.set_xticks(list(x))
    ax.set_xticklabels(dates, rotation=45, ha="right", fontsize="small")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of top-N replaced")
    ax.set_title("user_recs churn against the previous published date")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return _png(fig)


def render_report(metrics: pd.DataFrame, profiles: pd.DataFrame, histograms: pd.DataFrame,
                  title: str = "Evaluation", details: Optional[dict] = None,
                  churn: Optional[pd.DataFrame] = None) -> dict[str, bytes]:
    """report.md and its PNG plots as {file name: content}; storage/reports.py writes them.

    metrics: model, metric, k, value (k null for metrics without a cut-off). churn: churn_history
    of the output's published dates; plotted when it has a row (two published dates or more).
    """
    files = {METRICS_PLOT: plot_metrics(metrics), POPULARITY_PLOT: plot_popularity(profiles),
             SCORES_PLOT: plot_scores(histograms)}
    if churn is not None and not churn.empty:
        files[CHURN_PLOT] = plot_churn(churn)
    lines = [f"# {title}", ""]
    for key, value in (details or {}).items():
        lines.append(f"- {key}: {value}")
    lines += ["", "## Metrics", "", metrics_table(metrics), "",
              "Definitions: docs/metrics.md. Test users without recommendations count as zero.", "",
              f"![metrics vs k]({METRICS_PLOT})", "",
              "## Popularity of recommended items vs the catalog", "", f"![popularity]({POPULARITY_PLOT})", "",
              "## Score distribution", "", f"![scores]({SCORES_PLOT})", "",
              "## Churn of published user_recs", ""]
    if CHURN_PLOT in files:
        lines += [f"Share of each user's top-N replaced since the previous published date ({len(churn)} "
                  "comparisons; definition: docs/publishing.md, Manifest).", "", f"![churn]({CHURN_PLOT})", ""]
    else:
        lines += ["No plot: the output has fewer than two published dates with stability in their manifests.", ""]
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
