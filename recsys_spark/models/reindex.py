"""Re-express prepared data in a saved model's index space (scoring with a model trained on other data).

Users the model has not seen get factors by fold-in (recsys_spark/foldin.py) when they have an
item the model knows; users with none keep an index but no factors, so the popularity fallback
(rules.fallback) can serve them. Items the model does not know are dropped: they cannot be scored.
"""

from __future__ import annotations

import logging

from pyspark.sql import functions as F

from recsys_spark.data.prepare import PreparedData, dense_index
from recsys_spark.data.schema import ITEM_ID, ITEM_INDEX, TS, USER_ID, USER_INDEX, WEIGHT
from recsys_spark.models.factor_model import FactorModel
from recsys_spark.models.foldin import FoldInError, add_new_users

log = logging.getLogger(__name__)


def in_model_space(prepared: PreparedData, model: FactorModel) -> tuple[PreparedData, FactorModel]:
    """Fold in unknown users and map the interactions to the model's user and item indexes."""
    user_type = model.user_factors.schema[USER_ID].dataType
    item_type = model.item_factors.schema[ITEM_ID].dataType
    with_ids = (prepared.interactions.join(prepared.user_ids, USER_INDEX).join(prepared.item_ids, ITEM_INDEX)
                .select(F.col(USER_ID).try_cast(user_type).alias(USER_ID),
                        F.col(ITEM_ID).try_cast(item_type).alias(ITEM_ID), WEIGHT, TS))
    unmappable = with_ids.filter(F.col(USER_ID).isNull() | F.col(ITEM_ID).isNull()).limit(1).collect()
    if unmappable:
        raise FoldInError(f"the prepared ids cannot take the model's id types ({user_type.simpleString()} users, "
                          f"{item_type.simpleString()} items): the input's ids are not of the kind the model was "
                          "trained on; set input.id_type to match, or retrain")
    with_ids = with_ids.persist()
    known_users = model.user_factors.select(USER_ID)
    unknown = with_ids.select(USER_ID).distinct().join(known_users, USER_ID, "left_anti").persist()
    new_users = unknown.count()
    if new_users:
        with_known_items = unknown.join(with_ids.join(model.item_factors.select(ITEM_ID), ITEM_ID)
                                        .select(USER_ID).distinct(), USER_ID, "left_semi").count()
        if with_known_items:
            model = add_new_users(model, with_ids.select(USER_ID, ITEM_ID, WEIGHT))
    model = FactorModel(model.user_factors.persist(), model.item_factors, dict(model.metadata))
    user_map = model.user_factors.select(USER_INDEX, USER_ID)
    cold, n_cold = dense_index(unknown.join(user_map, USER_ID, "left_anti"), USER_ID, USER_INDEX)
    if n_cold:
        largest = user_map.agg(F.max(USER_INDEX)).first()[0]
        offset = 0 if largest is None else largest + 1
        user_map = user_map.unionByName(cold.select((F.col(USER_INDEX) + F.lit(offset)).cast("int").alias(USER_INDEX),
                                                    USER_ID))
    user_map = user_map.persist()
    if new_users:
        model.metadata["folded_in_users"] = new_users - n_cold
    item_map = model.item_factors.select(ITEM_INDEX, ITEM_ID)
    interactions = (with_ids.join(user_map, USER_ID).join(item_map, ITEM_ID)
                    .select(USER_INDEX, ITEM_INDEX, WEIGHT, TS).persist())
    kept = interactions.count()
    stats = dict(prepared.stats, folded_in_users=new_users - n_cold, users_without_factors=n_cold,
                 interactions_in_model=kept, interactions_with_unknown_items=prepared.stats["interactions"] - kept)
    log.info("model space: %d new users folded in, %d without any item the model knows (no factors); "
             "%d of %d interactions on items the model knows", new_users - n_cold, n_cold, kept,
             prepared.stats["interactions"])
    return PreparedData(interactions, user_map, item_map, user_map.count(), item_map.count(), stats,
                        prepared.rejected_rows), model
