"""The run manifest: what a published run was made of (run id, input, rows, model, rules, config)."""

from __future__ import annotations

import datetime as dt

from recsys_spark.config import Config
from recsys_spark.data.quarantine import MALFORMED_LINE
from recsys_spark.data.schema import USER_RECS
from recsys_spark.models.factor_model import FactorModel
from recsys_spark.serving.rules import Rules
from recsys_spark.storage.layout import DateLayout


def base_manifest(cfg: Config, layout: DateLayout, run_id: str, prepared_stats: dict, model: FactorModel,
                  rules: Rules, audit_results: dict) -> dict:
    """The manifest's fixed part; the caller adds row counts, audit, metrics and timings."""
    rejected = dict(prepared_stats.get("rejected", {}))
    rejected[MALFORMED_LINE] = prepared_stats.get("input", {}).get("malformed_lines", 0)
    return {
        "run_id": run_id, "run_date": layout.run_date,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "input": prepared_stats.get("input", {}), "rows": prepared_stats.get("rows", {}),
        "rejected_by_reason": rejected, "prepare": prepared_stats, "model": model.metadata,
        "rules": {**rules.summary, "fallback": cfg.rules.fallback,
                  "fallback_rows": audit_results.get(USER_RECS, {}).get("_fallback_rows", 0)},
        "config": cfg.to_record(),
    }
