"""Report aggregates against hand/numpy values; report files with the expected plots."""

import io

import numpy as np
import pandas as pd
import pytest
from frames import local_frame
from matplotlib import image

from recsys_spark.evaluation.report import (
    CHURN_PLOT,
    METRICS_PLOT,
    POPULARITY_PLOT,
    REPORT_FILE,
    SCORES_PLOT,
    churn_history,
    metrics_table,
    popularity_profile,
    render_report,
    score_histogram,
)
from recsys_spark.storage.reports import write_report

RECS_SCHEMA = "user_id string, rank int, item_id string, score float"


def test_popularity_profile_hand_computed(spark):
    interactions = local_frame(spark, [(f"u{i}", item) for i, item in enumerate("aaaabbbccd")],
                               "user_id string, item_id string")
    recs = local_frame(spark, [("u1", 1, "a", 1.0), ("u1", 2, "x", 0.5), ("u2", 1, "c", 1.0),
                                  ("u2", 2, "b", 0.9), ("u3", 3, "a", 0.1)], RECS_SCHEMA)
    got = popularity_profile(recs, interactions, k=2, buckets=2)
    # Ranks a1 b2 | c3 d4; the unknown item x falls in the last bucket; rank 3 is beyond k.
    assert got["bucket"].tolist() == [1, 2]
    assert got["interactions_share"].tolist() == pytest.approx([0.7, 0.3])
    assert got["recs_share"].tolist() == pytest.approx([0.5, 0.5])


def test_score_histogram_matches_numpy(spark):
    scores = np.random.default_rng(3).normal(size=200).astype(np.float32)
    recs = local_frame(spark, [("u", i + 1, f"i{i}", float(s)) for i, s in enumerate(scores)], RECS_SCHEMA)
    got = score_histogram(recs, bins=7)
    counts, edges = np.histogram(scores.astype(np.float64), bins=7, range=(float(scores.min()), float(scores.max())))
    assert got["count"].tolist() == counts.tolist()
    assert got["left"].to_numpy() == pytest.approx(edges[:-1], rel=1e-6)
    assert score_histogram(local_frame(spark, [], RECS_SCHEMA)).empty


def _metrics():
    rows = []
    for model, scale in (("als", 1.0), ("popularity", 0.5)):
        for metric in ("precision", "recall", "ndcg", "map", "hit_rate", "mrr", "coverage", "novelty"):
            rows += [(model, metric, k, scale * k / 20) for k in (1, 5, 10)]
        rows.append((model, "test_users", None, 120.0))
    return pd.DataFrame(rows, columns=["model", "metric", "k", "value"])


def test_metrics_table_has_a_row_per_metric_and_k_and_a_column_per_model():
    lines = metrics_table(_metrics()).splitlines()
    assert lines[0] == "| metric | als | popularity |"
    assert "| ndcg@5 | 0.2500 | 0.1250 |" in lines
    assert "| test_users | 120 | 120 |" in lines
    assert len(lines) == 2 + 8 * 3 + 1


def test_write_report_creates_markdown_and_plots(tmp_path):
    profiles = pd.concat([pd.DataFrame({"model": m, "bucket": [1, 2], "interactions_share": [0.7, 0.3],
                                        "recs_share": share}) for m, share in (("als", [0.4, 0.6]),
                                                                                ("popularity", [1.0, 0.0]))])
    histograms = pd.concat([pd.DataFrame({"model": m, "left": [0.0, 0.5], "right": [0.5, 1.0], "count": [3, 4]})
                            for m in ("als", "popularity")])
    files = write_report(tmp_path / "report", _metrics(), profiles, histograms, title="Nightly",
                         details={"split": "random"})
    names = sorted(f.name for f in files)
    assert names == sorted([REPORT_FILE, METRICS_PLOT, POPULARITY_PLOT, SCORES_PLOT])
    for name in (METRICS_PLOT, POPULARITY_PLOT, SCORES_PLOT):
        pixels = image.imread(tmp_path / "report" / name)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    text = (tmp_path / "report" / REPORT_FILE).read_text()
    assert text.startswith("# Nightly")
    assert "- split: random" in text
    for name in (METRICS_PLOT, POPULARITY_PLOT, SCORES_PLOT):
        assert f"]({name})" in text


def _manifest(date: str, churn=None) -> dict:
    if churn is None:
        return {"run_date": date, "stability": {"compared_with": None, "reason": "no date published before"}}
    overlap = {"mean": 1 - churn, "p10": 0.2, "p50": 1 - churn, "p90": 1.0}
    return {"run_date": date, "stability": {"compared_with": "earlier", "user_recs": {"churn": churn,
                                                                                      "overlap": overlap}}}


def _report_inputs():
    profiles = pd.DataFrame({"model": "als", "bucket": [1, 2], "interactions_share": [0.7, 0.3],
                             "recs_share": [0.4, 0.6]})
    histograms = pd.DataFrame({"model": "als", "left": [0.0, 0.5], "right": [0.5, 1.0], "count": [3, 4]})
    return _metrics(), profiles, histograms


def test_churn_history_reads_the_manifests_stability():
    history = churn_history([_manifest("2026-06-02", 0.3), _manifest("2026-06-01"), {"run_date": "2026-05-30"}])
    assert history.to_dict("records") == [{"run_date": "2026-06-02", "compared_with": "earlier", "churn": 0.3,
                                           "mean": 0.7, "p10": 0.2, "p50": 0.7, "p90": 1.0}]


def test_report_plots_churn_of_two_published_dates_and_says_why_not_otherwise():
    files = render_report(*_report_inputs(), churn=churn_history([_manifest("2026-06-01"),
                                                                  _manifest("2026-06-02", 0.25)]))
    assert files[CHURN_PLOT].startswith(b"\x89PNG")
    pixels = image.imread(io.BytesIO(files[CHURN_PLOT]))
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert f"![churn]({CHURN_PLOT})" in files[REPORT_FILE].decode()
    for churn in (None, churn_history([_manifest("2026-06-01")])):
        files = render_report(*_report_inputs(), churn=churn)
        assert CHURN_PLOT not in files
        assert "No plot: the output has fewer than two published dates" in files[REPORT_FILE].decode()
