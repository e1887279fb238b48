import numpy as np
import pytest

from recsys_spark.kernels.topk import MISSING, top_n
from tests.reference import top_n_reference


def _csr(lists):
    indptr = np.r_[0, np.cumsum([len(s) for s in lists])].astype(np.int64)
    indices = np.concatenate([np.asarray(s, dtype=np.int64) for s in lists]) if lists else np.empty(0, np.int64)
    return indptr, indices


@pytest.mark.parametrize("block_items", [1, 7, 13, 61, 1000])
def test_top_n_equals_brute_force_for_uneven_blocks(block_items):
    rng = np.random.default_rng(3)
    users = rng.normal(size=(40, 6)).astype(np.float32)
    items = rng.normal(size=(61, 6)).astype(np.float32)
    seen = [rng.choice(61, size=rng.integers(0, 20), replace=False) for _ in range(40)]
    seen[0] = np.arange(58)  # only 3 unseen items left: fewer than n
    seen[1] = np.arange(61)  # nothing left
    indptr, indices = _csr(seen)
    idx, scores = top_n(users, items, 10, indptr, indices, block_items)
    expected = top_n_reference(users, items, 10, seen)
    for u in range(40):
        got = [(int(i), float(s)) for i, s in zip(idx[u], scores[u]) if i != MISSING]
        assert [i for i, _ in got] == [i for i, _ in expected[u]]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in expected[u]], rtol=1e-5, atol=1e-5)
    assert (idx[1] == MISSING).all() and np.isneginf(scores[1]).all()
    assert (idx[0, 3:] == MISSING).all()


def test_ties_go_to_the_lower_item_index():
    users = np.ones((1, 2), dtype=np.float32)
    items = np.array([[1, 0], [0, 1], [1, 0], [2, 0], [0, 1]], dtype=np.float32)
    idx, _ = top_n(users, items, 4, block_items=2)
    assert idx[0].tolist() == [3, 0, 1, 2]
