"""`recsys-spark sql`: one query in a session configured like the run's (same catalog), rows printed."""

from __future__ import annotations

import sys

from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession

from recsys_spark.errors import QueryError


def run_sql(spark: SparkSession, query: str, limit: int) -> None:
    """Run `query` and print at most `limit` rows as a table (header and rows, nothing truncated)."""
    try:
        result = spark.sql(query)
    except AnalysisException as exc:  # also ParseException; the first line names the problem
        first_line = (str(exc).strip().splitlines() or ["?"])[0]
        raise QueryError(f"Spark cannot run the query: {first_line}") from None
    result.show(limit, truncate=False)
    sys.stdout.flush()
