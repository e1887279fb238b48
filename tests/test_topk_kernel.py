import numpy as np
import pytest

from recsys_spark.kernels import topk
from recsys_spark.kernels.engines import cpu_has_amx_bf16, resolve_precision
from recsys_spark.kernels.fallback import fill_from_ranking
from recsys_spark.kernels.topk import MISSING, prepare_items, top_n
from tests.reference import top_n_reference

PRECISIONS = pytest.mark.parametrize("precision", ["float32", "bfloat16"])


def _top(users, items, n, indptr=None, indices=None, block_items=4096, precision="float32"):
    return top_n(users, prepare_items(items, block_items, precision), n, indptr, indices)


def _csr(lists):
    indptr = np.r_[0, np.cumsum([len(s) for s in lists])].astype(np.int64)
    indices = np.concatenate([np.asarray(s, dtype=np.int64) for s in lists]) if lists else np.empty(0, np.int64)
    return indptr, indices


@PRECISIONS
@pytest.mark.parametrize("block_items", [1, 7, 13, 61, 1000])
def test_top_n_equals_brute_force_for_uneven_blocks(block_items, precision):
    rng = np.random.default_rng(3)
    users = rng.normal(size=(40, 6)).astype(np.float32)
    items = rng.normal(size=(61, 6)).astype(np.float32)
    seen = [rng.choice(61, size=rng.integers(0, 20), replace=False) for _ in range(40)]
    seen[0] = np.arange(58)  # only 3 unseen items left: fewer than n
    seen[1] = np.arange(61)  # nothing left
    indptr, indices = _csr(seen)
    idx, scores = _top(users, items, 10, indptr, indices, block_items, precision)
    expected = top_n_reference(users, items, 10, seen)
    for u in range(40):
        got = [(int(i), float(s)) for i, s in zip(idx[u], scores[u]) if i != MISSING]
        assert [i for i, _ in got] == [i for i, _ in expected[u]]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in expected[u]], rtol=1e-5, atol=1e-5)
    assert (idx[1] == MISSING).all() and np.isneginf(scores[1]).all()
    assert (idx[0, 3:] == MISSING).all()


@PRECISIONS
def test_ties_go_to_the_lower_item_index(precision):
    users = np.ones((1, 2), dtype=np.float32)
    items = np.array([[1, 0], [0, 1], [1, 0], [2, 0], [0, 1]], dtype=np.float32)
    idx, _ = _top(users, items, 4, block_items=2, precision=precision)
    assert idx[0].tolist() == [3, 0, 1, 2]


@PRECISIONS
@pytest.mark.parametrize("block_items", [1, 5, 16, 17, 33, 100])
def test_heavy_ties_across_uneven_blocks_follow_item_index(block_items, precision):
    rng = np.random.default_rng(5)
    # Integer factors on a small grid: many exactly equal scores within and across blocks.
    users = rng.integers(-2, 3, size=(30, 3)).astype(np.float32)
    items = rng.integers(-2, 3, size=(70, 3)).astype(np.float32)
    seen = [rng.choice(70, size=rng.integers(0, 30), replace=False) for _ in range(30)]
    idx, scores = _top(users, items, 12, *_csr(seen), block_items=block_items, precision=precision)
    expected = top_n_reference(users, items, 12, seen)
    for u in range(30):
        assert idx[u].tolist() == [i for i, _ in expected[u]]
        np.testing.assert_array_equal(scores[u], [s for _, s in expected[u]])


@PRECISIONS
def test_all_seen_and_empty_inputs_give_missing_rows(precision):
    users = np.ones((3, 2), dtype=np.float32)
    items = np.arange(10, dtype=np.float32).reshape(5, 2)
    idx, scores = _top(users, items, 3, *_csr([range(5), [], [4]]), block_items=2, precision=precision)
    assert (idx[0] == MISSING).all() and np.isneginf(scores[0]).all()
    assert idx[1].tolist() == [4, 3, 2] and idx[2].tolist() == [3, 2, 1]
    idx, scores = _top(np.zeros((0, 2), np.float32), items, 3, precision=precision)
    assert idx.shape == (0, 3)
    idx, _ = _top(users, np.zeros((0, 2), np.float32), 3, precision=precision)
    assert (idx == MISSING).all()


def test_non_finite_factors_are_rejected():
    items = np.array([[1.0, np.nan]], dtype=np.float32)
    with pytest.raises(ValueError, match="NaN or infinity"):
        top_n(np.ones((1, 2), np.float32), items, 1)


def test_fill_from_ranking_skips_held_and_excluded_items():
    ranking = np.array([4, 0, 2, 3, 1], dtype=np.int32)  # e.g. items by popularity
    idx = np.array([[0, MISSING, MISSING, MISSING],  # holds 0, excludes 4 -> 2, 3, 1
                    [MISSING] * 4,  # nothing held or excluded -> 4, 0, 2, 3
                    [3, 2, 1, 0],  # full: unchanged
                    [MISSING] * 4], dtype=np.int32)  # excludes everything but 1 -> 1 only
    excluded = [[4], [], [], [4, 0, 2, 3]]
    filled = fill_from_ranking(idx, ranking, *_csr(excluded), n_items=5)
    assert filled.tolist() == [[0, 2, 3, 1], [4, 0, 2, 3], [3, 2, 1, 0], [1, MISSING, MISSING, MISSING]]


@pytest.mark.parametrize("block_items", [64, 300, 5000])
def test_bfloat16_candidates_rank_near_ties_exactly(block_items, monkeypatch):
    """Scores closer together than bfloat16 can tell apart still come out in exact order."""
    rng = np.random.default_rng(11)
    users = (rng.normal(size=(200, 32)) + 0.5).astype(np.float32)
    base = rng.normal(size=32) + 0.5
    near = base + rng.normal(scale=1e-4, size=(300, 32))  # 300 items within ~1e-4 of each other
    items = np.concatenate([near, rng.normal(size=(700, 32)) * 0.3]).astype(np.float32)
    items = items[rng.permutation(len(items))]
    seen = [rng.choice(len(items), size=rng.integers(0, 50), replace=False) for _ in range(len(users))]
    decided = {}
    step = topk._step

    def counting_step(engine, prepared, rows, *args):
        undecided = step(engine, prepared, rows, *args)
        decided[engine.name] = decided.get(engine.name, 0) + len(rows) - len(undecided)
        return undecided

    monkeypatch.setattr(topk, "_step", counting_step)
    monkeypatch.setattr(topk, "DENSE_GROUPS", 10 ** 9)  # never hand crowded users to float32 here
    idx, scores = _top(users, items, 10, *_csr(seen), block_items=block_items, precision="bfloat16")
    expected = top_n_reference(users, items, 10, seen)
    for u in range(len(users)):
        assert idx[u].tolist() == [i for i, _ in expected[u]]
        np.testing.assert_allclose(scores[u], [s for _, s in expected[u]], rtol=1e-6)
    # Row-blocks decided by each engine: bfloat16 does the work, float32 only where no bound exists yet.
    assert decided["bfloat16"] > 4 * decided.get("float32", 0)


def test_precision_choice_and_the_rounding_the_bfloat16_margin_assumes():
    assert resolve_precision("float32") == "float32" and resolve_precision("bfloat16") == "bfloat16"
    assert resolve_precision("auto") == ("bfloat16" if cpu_has_amx_bf16() else "float32")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8")
    # The margin assumes TensorFlow rounds float32 to bfloat16 to nearest, ties to even.
    import tensorflow as tf

    values = np.random.default_rng(2).normal(size=10000).astype(np.float32)
    values[:3] = np.array([0x3F808000, 0x3F818000, 0x3F80C000], dtype=np.uint32).view(np.float32)  # exact ties
    bits = values.view(np.uint32)
    nearest_even = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    np.testing.assert_array_equal(tf.constant(values, dtype=tf.bfloat16).numpy().view(np.uint16), nearest_even)


def test_crowded_scores_move_users_to_the_float32_engine(monkeypatch):
    """Thousands of items within the bfloat16 margin of the top: exact, and float32 does the work."""
    rng = np.random.default_rng(13)
    users = (rng.normal(size=(64, 16)) * 0.01 + 1.0).astype(np.float32)
    items = (rng.normal(size=(3000, 16)) * 1e-3 + 1.0).astype(np.float32)  # every score within ~0.1%
    seen = [rng.choice(len(items), size=10, replace=False) for _ in range(len(users))]
    engines = []
    step = topk._step

    def recording_step(engine, prepared, rows, *args):
        engines.append((engine.name, len(rows)))
        return step(engine, prepared, rows, *args)

    monkeypatch.setattr(topk, "_step", recording_step)
    idx, scores = _top(users, items, 10, *_csr(seen), block_items=1000, precision="bfloat16")
    expected = top_n_reference(users, items, 10, seen)
    for u in range(len(users)):
        assert idx[u].tolist() == [i for i, _ in expected[u]]
    # After the first block every user is on the float32 engine; no bfloat16 step runs again.
    assert engines[0] == ("bfloat16", 64) and all(name == "float32" for name, _ in engines[1:])


def test_item_item_scoring_memory_stays_within_the_users_rows():
    """HistoryEngine's promise: per call, memory beyond the output stays within the users' history
    rows x block width. Gathering through the block's strided view once copied the whole
    n_history x width view for every user (69 ms a user at 10,000 x 5,000)."""
    import tracemalloc

    from recsys_spark.kernels.sparse_rows import SparseRows
    from recsys_spark.kernels.topk import prepare_history_items

    rng = np.random.default_rng(5)
    columns = rng.standard_normal((4000, 1000)).astype(np.float32)  # 16 MB: history inputs x items
    items = prepare_history_items(columns, block_items=512)  # two blocks: strided column views
    users = SparseRows(np.array([0, 5, 10]), rng.integers(0, 4000, 10), None)
    out = np.empty((2, items.width), dtype=np.float32)
    tracemalloc.start()
    try:
        for start in range(0, 1000, items.width):
            items.engine.block(users, start, out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak  # a few rows of one block (~50 KB), never a block's 8 MB view
    expected = columns[:, items.order].astype(np.float64)[users.indices[5:10]].sum(axis=0)
    assert np.allclose(out[1, :1000 - items.width], expected[items.width:], rtol=1e-6)
