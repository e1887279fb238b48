"""Rows that cannot be used are quarantined with a reason, never dropped silently, and every row
read is accounted for: rows read = distinct valid pairs + quarantined + duplicates merged.

Malformed text lines (the reader's corrupt-record column) are split off before prepare; the rows
prepare rejects (null id, bad weight, ...) join them in the run's `quarantine` table, all columns
as strings so that any input fits: reason, user_id, item_id, weight, ts, record.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.data.prepare import PreparedData
from recsys_spark.data.schema import CORRUPT_RECORD, ITEM_ID, TS, USER_ID, WEIGHT
from recsys_spark.errors import AccountingError

MALFORMED_LINE = "malformed_line"
REASON = "reason"
RECORD = "record"


def profile_input(raw: DataFrame) -> dict:
    """Rows read, malformed lines and an order-independent content hash, in one pass."""
    malformed = F.col(CORRUPT_RECORD).isNotNull() if CORRUPT_RECORD in raw.columns else F.lit(False)
    row_hash = F.xxhash64(*[F.col(c).cast("string") for c in raw.columns]).cast("decimal(38,0)")
    result = raw.agg(F.count(F.lit(1)).alias("rows"),
                     F.sum(F.when(malformed, 1).otherwise(0)).alias("malformed"),
                     F.sum(row_hash).alias("hash")).first()
    return {"rows_read": int(result["rows"]), "malformed_lines": int(result["malformed"] or 0),
            "content_hash": format(int(result["hash"] or 0) % (1 << 64), "016x")}


def split_malformed(raw: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(well-formed rows without the corrupt-record column, malformed lines as quarantine rows)."""
    if CORRUPT_RECORD not in raw.columns:
        empty = raw.limit(0).select(*_as_quarantine(raw, F.lit(MALFORMED_LINE), F.lit(None)))
        return raw, empty
    corrupt = F.col(CORRUPT_RECORD)
    wellformed = raw.filter(corrupt.isNull()).drop(CORRUPT_RECORD)
    malformed = raw.filter(corrupt.isNotNull()).select(*_as_quarantine(raw, F.lit(MALFORMED_LINE), corrupt))
    return wellformed, malformed


def quarantine_rows(malformed: DataFrame, prepared: PreparedData) -> DataFrame:
    """Malformed lines and the rows prepare rejected, as one table of strings with a reason."""
    rejected = prepared.rejected_rows
    if rejected is None:
        return malformed
    return malformed.unionByName(rejected.select(*_as_quarantine(rejected, F.col(REASON), F.lit(None))))


def _as_quarantine(df: DataFrame, reason, record) -> list:
    return [reason.cast("string").alias(REASON),
            *[F.col(c).cast("string").alias(c) for c in (USER_ID, ITEM_ID, WEIGHT, TS)],
            record.cast("string").alias(RECORD)]


def account(profile: dict, stats: dict, quarantined: int) -> dict:
    """The row accounting for the manifest; raises AccountingError when it does not add up."""
    rejected = sum(stats["rejected"].values())
    rows = {
        "read": profile["rows_read"],
        "malformed_lines": profile["malformed_lines"],
        "rejected": rejected,
        "quarantined": quarantined,
        "duplicates_merged": stats["duplicates_merged"],
        "distinct_valid_pairs": stats["rows_valid"] - stats["duplicates_merged"],
        "filtered_by_min_interactions": stats["filtered_interactions"],
        "interactions": stats["interactions"],
    }
    checks = {
        "read = distinct valid pairs + quarantined + duplicates merged":
            rows["read"] == rows["distinct_valid_pairs"] + quarantined + rows["duplicates_merged"],
        "quarantined = malformed lines + rejected": quarantined == rows["malformed_lines"] + rejected,
        "distinct valid pairs = interactions + filtered":
            rows["distinct_valid_pairs"] == rows["interactions"] + rows["filtered_by_min_interactions"],
    }
    broken = [name for name, ok in checks.items() if not ok]
    if broken:
        raise AccountingError(f"row accounting does not add up ({'; '.join(broken)}): {rows}; nothing was published")
    return rows
