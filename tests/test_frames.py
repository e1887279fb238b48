"""tests/frames.py's local_frame gives the frame spark.createDataFrame gives for the same rows."""

import math

import pytest
from frames import local_frame

SCHEMA = "name string, n int, big bigint, x double, f float, flag boolean"
ROWS = [("a", 1, 9007199254740993, 1.5, 0.25, True), (None, None, None, None, None, None),
        ("日本", -2, -1, math.nan, math.inf, False)]


def _values(frame):
    return [tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in row) for row in frame.collect()]


def test_local_frame_equals_create_data_frame(spark):
    got, want = local_frame(spark, ROWS, SCHEMA), spark.createDataFrame(ROWS, SCHEMA)
    assert got.schema == want.schema
    assert _values(got) == _values(want)  # NaN stays NaN, None is null, 64-bit ids exact
    empty = local_frame(spark, [], SCHEMA)
    assert empty.schema == want.schema and empty.count() == 0


def test_rows_of_the_wrong_length_are_refused(spark):
    with pytest.raises(ValueError, match="6 values"):
        local_frame(spark, [("a", 1)], SCHEMA)
