"""Business rules on recommendations, as tables: exclusions, an include list, a popularity fallback.

The rule tables arrive keyed by external ids (io reads them); here they are mapped to the prepared
indexes so that scoring can apply them exactly:

- global exclusions and the include list restrict the candidate item set once, on the driver;
- per-user exclusions join each user's seen items, so they are masked like seen items;
- the fallback ranks candidate items by popularity in the prepared interactions and fills users
  without factors, and lists left short, after the model's rows (source `fallback`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.config import RulesConfig
from recsys_spark.data.prepare import PreparedData, item_popularity
from recsys_spark.data.schema import ITEM_ID, ITEM_INDEX, USER_ID, USER_INDEX
from recsys_spark.errors import RulesError

log = logging.getLogger(__name__)

POPULARITY = "popularity"
SOURCE_MODEL = "model"
SOURCE_FALLBACK = "fallback"
# The columns each rule table must have (storage/readers.read_rule_table checks them by path).
RULE_COLUMNS = {"exclude_items": (ITEM_ID,), "exclude_user_items": (USER_ID, ITEM_ID), "include_items": (ITEM_ID,)}


@dataclass
class Rules:
    """Rule tables in index space (every field optional)."""
    exclude_items: Optional[DataFrame] = None  # item_index
    exclude_user_items: Optional[DataFrame] = None  # user_index, item_index
    include_items: Optional[DataFrame] = None  # item_index
    fallback_users: Optional[DataFrame] = None  # user_index, user_id: users to serve, with or without factors
    item_popularity: Optional[DataFrame] = None  # item_index, item_id, popularity: the fallback ranking
    summary: dict = field(default_factory=dict)  # per rule table: rows given, rows matching the catalog


def build_rules(
    prepared: PreparedData,
    cfg: RulesConfig,
    exclude_items: Optional[DataFrame] = None,
    exclude_user_items: Optional[DataFrame] = None,
    include_items: Optional[DataFrame] = None,
) -> Rules:
    """Rules in index space from id-keyed tables (as io read them) and the prepared data.

    exclude_items / include_items: column item_id; exclude_user_items: columns user_id, item_id.
    Ids absent from the prepared data are ignored (they cannot be recommended anyway) and counted
    in `summary`; an include list that matches no item of the catalog is an error (every list
    would be empty).
    """
    rules = Rules(
        exclude_items=None if exclude_items is None else item_indexes(exclude_items, prepared.item_ids).persist(),
        exclude_user_items=None if exclude_user_items is None else
        user_item_indexes(exclude_user_items, prepared.user_ids, prepared.item_ids).persist(),
        include_items=None if include_items is None else item_indexes(include_items, prepared.item_ids).persist(),
    )
    for name, given in (("exclude_items", exclude_items), ("exclude_user_items", exclude_user_items),
                        ("include_items", include_items)):
        if given is not None:
            rules.summary[name] = {"rows": given.count(), "matched": getattr(rules, name).count()}
            log.info("rules: %s has %d rows, %d distinct of them match the catalog", name,
                     rules.summary[name]["rows"], rules.summary[name]["matched"])
            if rules.summary[name]["rows"] and not rules.summary[name]["matched"]:
                log.warning("rules: none of the %d rows of %s match the catalog's ids; check that it holds the "
                            "same ids as the input (it is applied, but filters nothing)", rules.summary[name]["rows"], name)
    if include_items is not None:
        allowed = rules.include_items
        if rules.exclude_items is not None:
            allowed = allowed.join(rules.exclude_items, ITEM_INDEX, "left_anti")
        if rules.summary["include_items"]["matched"] == 0 or allowed.limit(1).count() == 0:
            raise RulesError("no item may be recommended: rules.include_items_path matches none of the catalog's "
                             "item ids, or every match is excluded; check that the table holds the same ids as the "
                             "input's item column")
    if cfg.fallback:
        rules.fallback_users = prepared.user_ids.select(USER_INDEX, USER_ID)
        rules.item_popularity = (item_popularity(prepared).join(prepared.item_ids, ITEM_INDEX)
                                 .select(ITEM_INDEX, ITEM_ID, F.col(POPULARITY)))
    return rules


def item_indexes(items: DataFrame, item_ids: DataFrame) -> DataFrame:
    """Distinct item_index of the item_id values in `items` (ids cast to the catalog's id type)."""
    _require(items, (ITEM_ID,))
    typed = items.select(F.col(ITEM_ID).try_cast(item_ids.schema[ITEM_ID].dataType).alias(ITEM_ID)).distinct()
    return typed.join(item_ids, ITEM_ID).select(ITEM_INDEX)


def user_item_indexes(pairs: DataFrame, user_ids: DataFrame, item_ids: DataFrame) -> DataFrame:
    """Distinct (user_index, item_index) of the (user_id, item_id) pairs in `pairs`."""
    _require(pairs, (USER_ID, ITEM_ID))
    typed = pairs.select(F.col(USER_ID).try_cast(user_ids.schema[USER_ID].dataType).alias(USER_ID),
                         F.col(ITEM_ID).try_cast(item_ids.schema[ITEM_ID].dataType).alias(ITEM_ID)).distinct()
    return typed.join(user_ids, USER_ID).join(item_ids, ITEM_ID).select(USER_INDEX, ITEM_INDEX)


def candidate_mask(rules: Rules, n_items: int) -> np.ndarray:
    """Bool (n_items,) of items that may be recommended: in the include list (if any), not excluded.

    Collects the two item lists to the driver on purpose: they are bounded by the catalog.
    """
    mask = np.ones(n_items, dtype=bool)
    if rules.include_items is not None:
        mask[:] = False
        mask[_collect_indexes(rules.include_items, n_items)] = True
    if rules.exclude_items is not None:
        mask[_collect_indexes(rules.exclude_items, n_items)] = False
    if rules.include_items is not None or rules.exclude_items is not None:
        log.info("rules: %d of %d items may be recommended", int(mask.sum()), n_items)
    return mask


def item_pools(rules: Rules, item_ids: DataFrame, model_items: DataFrame) -> DataFrame:
    """item_index, model_pool, fallback_pool, allowed (booleans) for every item of the catalog.

    model_pool: items a user with factors may get (allowed, and with factors or a fallback
    popularity); fallback_pool: items a user without factors may get (allowed, with popularity).
    model_items: item_index of the items with factors. This restates the rules for the audit.
    """
    items = item_ids.select(ITEM_INDEX).distinct()
    allowed = F.lit(True)
    if rules.include_items is not None:
        items = items.join(rules.include_items.distinct().withColumn("_included", F.lit(True)), ITEM_INDEX, "left")
        allowed = allowed & F.col("_included").isNotNull()
    if rules.exclude_items is not None:
        items = items.join(rules.exclude_items.distinct().withColumn("_excluded", F.lit(True)), ITEM_INDEX, "left")
        allowed = allowed & F.col("_excluded").isNull()
    items = items.join(model_items.select(ITEM_INDEX).distinct().withColumn("_factors", F.lit(True)), ITEM_INDEX, "left")
    popular = F.lit(False)
    if rules.item_popularity is not None:
        items = items.join(rules.item_popularity.filter(~F.isnan(POPULARITY)).select(ITEM_INDEX)
                           .withColumn("_popular", F.lit(True)), ITEM_INDEX, "left")
        popular = F.col("_popular").isNotNull()
    return items.select(ITEM_INDEX, (allowed & (F.col("_factors").isNotNull() | popular)).alias("model_pool"),
                        (allowed & popular).alias("fallback_pool"), allowed.alias("allowed"))


def served_users(rules: Rules, model_users: DataFrame) -> DataFrame:
    """user_index, user_id, has_factors of every user who gets a list (with the fallback: every user)."""
    with_factors = model_users.select(USER_INDEX, USER_ID, F.lit(True).alias("has_factors"))
    if rules.fallback_users is None:
        return with_factors
    without = (rules.fallback_users.select(USER_INDEX, USER_ID).join(with_factors.select(USER_INDEX), USER_INDEX,
                                                                        "left_anti")
               .withColumn("has_factors", F.lit(False)))
    return with_factors.unionByName(without)


def popularity_ranking(popularity: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Candidate item indexes by popularity desc, ties by lower index; items without popularity (NaN) left out."""
    items = np.flatnonzero(candidates & ~np.isnan(popularity))
    return items[np.lexsort((items, -popularity[items]))].astype(np.int32)


def _collect_indexes(df: DataFrame, n_items: int) -> np.ndarray:
    values = df.select(ITEM_INDEX).toPandas()[ITEM_INDEX].to_numpy(dtype=np.int64)
    return values[(values >= 0) & (values < n_items)]


def _require(df: DataFrame, columns: tuple) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        # Not the columns it has: a CSV's header line is the file's content.
        raise RulesError(f"rule table needs column(s) {', '.join(missing)}; it has {len(df.columns)} others: "
                         f"rename the columns or point the rules.* path at the right table")
