"""Column and table names, defined once and imported everywhere."""

# Prepared interactions (internal, dense indexes).
USER_INDEX = "user_index"
ITEM_INDEX = "item_index"
WEIGHT = "weight"
TS = "ts"

# Raw text input: the whole line when it was malformed, else null.
CORRUPT_RECORD = "_corrupt_record"

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
RUNS_TABLE = "runs"  # one row per published date: its manifest, for the catalog

USER_RECS_COLUMNS = (USER_ID, RANK, ITEM_ID, SCORE, SOURCE, MODEL)
ITEM_SIMILAR_COLUMNS = (ITEM_ID, RANK, SIMILAR_ITEM_ID, SCORE, MODEL)

MAX_INDEX = 2**31 - 1
