"""Column names and table schemas, defined once and imported everywhere."""

from pyspark.sql import types as T

# Prepared interactions (internal, dense indexes).
USER_INDEX = "user_index"
ITEM_INDEX = "item_index"
WEIGHT = "weight"
TS = "ts"

# External ids, as they were in the input.
USER_ID = "user_id"
ITEM_ID = "item_id"

# Factor tables.
FACTORS = "factors"

# Output tables.
RANK = "rank"
SCORE = "score"
MODEL = "model"
SOURCE = "source"
SIMILAR_ITEM_ID = "similar_item_id"
RUN_DATE = "run_date"

USER_RECS = "user_recs"
ITEM_SIMILAR = "item_similar"

USER_RECS_COLUMNS = (USER_ID, RANK, ITEM_ID, SCORE, SOURCE, MODEL)
ITEM_SIMILAR_COLUMNS = (ITEM_ID, RANK, SIMILAR_ITEM_ID, SCORE, MODEL)

PREPARED_SCHEMA = T.StructType([
    T.StructField(USER_INDEX, T.IntegerType(), False),
    T.StructField(ITEM_INDEX, T.IntegerType(), False),
    T.StructField(WEIGHT, T.DoubleType(), False),
    T.StructField(TS, T.LongType(), True),
])

# Scoring-kernel output before ids are attached.
INDEXED_RECS_SCHEMA = T.StructType([
    T.StructField(USER_INDEX, T.IntegerType(), False),
    T.StructField(RANK, T.IntegerType(), False),
    T.StructField(ITEM_INDEX, T.IntegerType(), False),
    T.StructField(SCORE, T.FloatType(), False),
])

INDEXED_SIMILAR_SCHEMA = T.StructType([
    T.StructField(ITEM_INDEX, T.IntegerType(), False),
    T.StructField(RANK, T.IntegerType(), False),
    T.StructField("similar_item_index", T.IntegerType(), False),
    T.StructField(SCORE, T.FloatType(), False),
])

MAX_INDEX = 2**31 - 1
