"""Train/test splits of interactions, in Spark, seeded and deterministic.

Every split returns (train, test) with each input row in exactly one of them. Randomness comes
from a hash of (seed, user, item), never from rand() over partitions, so the result does not
depend on how the input is partitioned. Column names are arguments: the splits work on any
table with a user, an item and (for time-based splits) a timestamp column.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys_spark.config import SPLIT_KINDS
from recsys_spark.data.schema import ITEM_INDEX, TS, USER_INDEX
from recsys_spark.errors import SplitError

_TEST = "_is_test"


def random_split(
    df: DataFrame,
    fraction: float = 0.2,
    min_history: int = 5,
    seed: int = 42,
    user_col: str = USER_INDEX,
    item_col: str = ITEM_INDEX,
) -> tuple[DataFrame, DataFrame]:
    """Hold out a random `fraction` of each user's interactions.

    A user with n >= min_history interactions gets round(fraction * n) of them in test (at least
    1 and at most n - 1, so every test user keeps some history); users with fewer interactions
    stay whole in train. Which rows go to test is decided by a hash of (seed, user, item).
    """
    if not 0.0 < fraction < 1.0:
        raise SplitError(f"fraction must be between 0 and 1 (exclusive); got {fraction!r}")
    if min_history < 2:
        raise SplitError(f"min_history must be >= 2 so that test users keep a history; got {min_history!r}")
    by_user = Window.partitionBy(user_col)
    ordered = by_user.orderBy(_hash(seed, user_col, item_col), *_total_order(df))
    n = F.count(F.lit(1)).over(by_user)
    n_test = F.least(n - 1, F.greatest(F.lit(1), F.round(n * F.lit(fraction)).cast("long")))
    is_test = (n >= min_history) & (F.row_number().over(ordered) <= n_test)
    return _divide(df, is_test)


def last_n_split(
    df: DataFrame,
    n: int = 1,
    min_history: int = 2,
    seed: int = 42,
    user_col: str = USER_INDEX,
    item_col: str = ITEM_INDEX,
    ts_col: str = TS,
) -> tuple[DataFrame, DataFrame]:
    """Hold out each user's latest `n` interactions by timestamp.

    Users with fewer than max(min_history, n + 1) interactions stay whole in train. Equal
    timestamps are ordered by a hash of (seed, user, item), then by the columns; null timestamps
    count as the oldest.
    """
    if n < 1:
        raise SplitError(f"n must be >= 1; got {n!r}")
    by_user = Window.partitionBy(user_col)
    latest_first = by_user.orderBy(F.col(ts_col).desc_nulls_last(), _hash(seed, user_col, item_col),
                                   *_total_order(df))
    count = F.count(F.lit(1)).over(by_user)
    is_test = (count >= max(min_history, n + 1)) & (F.row_number().over(latest_first) <= n)
    return _divide(df, is_test)


def time_split(df: DataFrame, cutoff, ts_col: str = TS) -> tuple[DataFrame, DataFrame]:
    """Interactions at or after `cutoff` are test, earlier ones (and null timestamps) train.

    cutoff: epoch seconds (int or digit string) or an ISO date/date-time (UTC unless it says).
    Test may contain users and items absent from train; callers decide what to do with them.
    """
    seconds = parse_cutoff(cutoff)
    return _divide(df, F.coalesce(F.col(ts_col) >= F.lit(seconds), F.lit(False)))


def parse_cutoff(cutoff) -> int:
    """Epoch seconds of a cut-off given as epoch seconds or an ISO date/date-time."""
    if isinstance(cutoff, bool) or cutoff is None:
        raise SplitError("a time split needs a cutoff: epoch seconds or an ISO date such as 2024-01-31")
    if isinstance(cutoff, (int, float)):
        return int(cutoff)
    text = str(cutoff).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise SplitError(f"cutoff {cutoff!r} is neither epoch seconds nor an ISO date such as 2024-01-31") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return int(moment.timestamp())


def split(df: DataFrame, kind: str, *, fraction: float = 0.2, min_history: int = 5, n: int = 1,
          cutoff=None, seed: int = 42, user_col: str = USER_INDEX, item_col: str = ITEM_INDEX,
          ts_col: str = TS) -> tuple[DataFrame, DataFrame]:
    """Dispatch to random_split, last_n_split or time_split by `kind` (random | last_n | time)."""
    if kind == "random":
        return random_split(df, fraction, min_history, seed, user_col, item_col)
    if kind == "last_n":
        return last_n_split(df, n, min_history, seed, user_col, item_col, ts_col)
    if kind == "time":
        return time_split(df, cutoff, ts_col)
    raise SplitError(f"split kind must be one of {', '.join(SPLIT_KINDS)}; got {kind!r}")


def _hash(seed: int, user_col: str, item_col: str) -> Column:
    return F.xxhash64(F.lit(int(seed)), F.col(user_col), F.col(item_col))


def _total_order(df: DataFrame) -> list[Column]:
    # Train and test are computed separately, so the order within a user must be total: only
    # fully identical rows may tie, and swapping those changes nothing.
    return [F.col(f.name) for f in df.schema.fields if not isinstance(f.dataType, T.MapType)]


def _divide(df: DataFrame, is_test: Column) -> tuple[DataFrame, DataFrame]:
    tagged = df.withColumn(_TEST, is_test)
    columns = df.columns
    return (tagged.filter(~F.col(_TEST)).select(*columns),
            tagged.filter(F.col(_TEST)).select(*columns))
