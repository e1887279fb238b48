"""WALS: both driver kernels (numpy, TensorFlow) against dense numpy solves and each other, planted
structure, determinism, the trainer."""

import numpy as np
import pytest

from recsys_spark.data.sample_data import generate_interactions
from recsys_spark.kernels.confidence import bm25_statistics, confidence, row_regularization

tf = pytest.importorskip("tensorflow")
from recsys_spark.kernels import wals_blocks, wals_cpu, wals_tf  # noqa: E402
from recsys_spark.kernels.tf_runtime import gpu_visible  # noqa: E402
from recsys_spark.kernels.wals_blocks import initial_rows  # noqa: E402

KERNELS = {
    "numpy": (wals_cpu.fit, lambda n, rank, stddev, seed, side: initial_rows(np.arange(n), rank, stddev, seed, side)),
    "tensorflow": (wals_tf.fit, lambda n, rank, stddev, seed, side: wals_tf.initial_factors(n, rank, stddev,
                                                                                           (seed, side)).numpy()),
}


def _tiny(seed=0, n_users=9, n_items=7):
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < 0.35
    mask[0] = False  # a user with no interactions must get the zero-data solution
    users, items = np.nonzero(mask)
    conf = (1.0 + 3.0 * rng.random(len(users))).astype(np.float32)
    return users.astype(np.int32), items.astype(np.int32), conf


def _dense_weights(users, items, conf, n_users, n_items, w0):
    weights = np.full((n_users, n_items), w0)
    weights[users, items] = conf
    target = np.zeros((n_users, n_items))
    target[users, items] = 1.0
    return weights, target


def _exact_rows(other, weights, target, reg):
    """Row r minimises sum_j W_rj (P_rj - x.y_j)^2 + reg_r |x|^2 (dense closed form, float64)."""
    other = other.astype(np.float64)
    eye = np.eye(other.shape[1])
    return np.stack([np.linalg.solve(other.T @ (weights[r][:, None] * other) + reg[r] * eye,
                                     other.T @ (weights[r] * target[r])) for r in range(len(weights))])


def test_half_step_with_enough_cg_iterations_is_the_exact_solve():
    users, items, conf = _tiny()
    n_users, n_items, rank, w0 = 9, 7, 4, 0.3
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n_users, rank)).astype(np.float32)
    y = rng.normal(size=(n_items, rank)).astype(np.float32)
    reg = row_regularization(np.bincount(users, minlength=n_users), n_items, 0.05, w0, 1.0)
    nz = wals_tf.SortedNonzeros.build(users, items, conf, reg)
    got = wals_tf.half_step(tf.constant(x), tf.constant(y), nz.indices, nz.conf, nz.reg,
                            tf.constant(w0), tf.constant(3 * rank)).numpy()
    weights, target = _dense_weights(users, items, conf, n_users, n_items, w0)
    np.testing.assert_allclose(got, _exact_rows(y, weights, target, reg), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel", KERNELS)
def test_fit_matches_alternating_dense_solves_and_its_loss_is_the_objective(kernel):
    fit, start = KERNELS[kernel]
    users, items, conf = _tiny(seed=3)
    n_users, n_items, rank, w0, reg, iterations = 9, 7, 3, 0.5, 0.1, 4
    got_x, got_y, history = fit(users, items, conf, n_users, n_items, rank, iterations, reg, w0,
                                reg_exponent=0.0, cg_steps=3 * rank, init_stddev=0.1, seed=5)
    weights, target = _dense_weights(users, items, conf, n_users, n_items, w0)
    x, y = start(n_users, rank, 0.1, 5, 1), start(n_items, rank, 0.1, 5, 2)
    for _ in range(iterations):
        x = _exact_rows(y, weights, target, np.full(n_users, reg))
        y = _exact_rows(x, weights.T, target.T, np.full(n_items, reg))
    np.testing.assert_allclose(got_x, x, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got_y, y, rtol=1e-3, atol=1e-4)
    objective = (weights * (target - got_x.astype(np.float64) @ got_y.T) ** 2).sum() \
        + reg * ((got_x.astype(np.float64) ** 2).sum() + (got_y.astype(np.float64) ** 2).sum())
    assert history[-1]["loss"] == pytest.approx(objective, rel=1e-4)
    assert [h["iteration"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] <= history[0]["loss"]


def test_confidence_schemes_by_hand():
    users, items = np.array([0, 0, 1]), np.array([0, 1, 1])
    weights = np.array([1.0, 3.0, 2.0])
    np.testing.assert_allclose(confidence(users, items, weights, "linear", alpha=2.0), [3.0, 7.0, 5.0])
    np.testing.assert_allclose(confidence(users, items, weights, "log", alpha=2.0, epsilon=0.5),
                               1 + 2 * np.log(1 + weights / 0.5), rtol=1e-6)
    idf, mean_total = bm25_statistics(users, items, weights, n_users=4, n_items=2)
    np.testing.assert_allclose(idf, [np.log(4 / 2), np.log(4 / 3)])
    assert mean_total == pytest.approx(6.0 / 4)
    k1, b = 1.2, 0.75
    norm = np.array([1 - b + b * 4 / 1.5, 1 - b + b * 4 / 1.5, 1 - b + b * 2 / 1.5])
    expected = 1 + 2.0 * weights * (k1 + 1) / (k1 * norm + weights) * idf[items]
    np.testing.assert_allclose(confidence(users, items, weights, "bm25", alpha=2.0, bm25_k1=k1, bm25_b=b,
                                          item_idf=idf, mean_user_weight=mean_total), expected, rtol=1e-6)


def test_auto_confidence_means_one_plus_alpha_and_is_linear_on_binary_data():
    from recsys_spark.kernels.confidence import auto_confidence

    users, items = np.arange(4), np.arange(4)
    binary = auto_confidence(np.ones(4), mean_extra=2.0)
    np.testing.assert_allclose(confidence(users, items, np.ones(4), binary["scheme"], alpha=binary["alpha"],
                                          epsilon=binary["epsilon"]), [3.0] * 4, rtol=1e-6)
    assert binary["profile"] == "constant"
    ratings = np.array([1.0, 4.0, 4.0, 5.0])
    chosen = auto_confidence(ratings, mean_extra=2.0)
    assert chosen["epsilon"] == 4.0  # the median weight
    f = np.log(1 + ratings / 4.0)
    np.testing.assert_allclose(confidence(users, items, ratings, "log", alpha=chosen["alpha"], epsilon=4.0),
                               1 + 2.0 * f / f.mean(), rtol=1e-6)
    assert chosen["profile"] == "scale"


@pytest.mark.parametrize("weights, profile", [
    (np.ones(50), "constant"),
    (np.random.default_rng(0).integers(1, 6, 500).astype(float), "scale"),
    (np.random.default_rng(1).pareto(1.1, 5000) * 3 + 0.1, "heavy-tailed"),
    (np.random.default_rng(2).uniform(0.5, 20.0, 500), "continuous"),
])
def test_weight_profiles_of_generated_data(weights, profile):
    from recsys_spark.kernels.confidence import auto_confidence

    chosen = auto_confidence(weights, mean_extra=2.0)
    assert chosen["profile"] == profile
    conf = confidence(np.arange(len(weights)), np.zeros(len(weights), int), weights, chosen["scheme"],
                      alpha=chosen["alpha"], epsilon=chosen["epsilon"])
    assert conf.mean() == pytest.approx(3.0, rel=1e-5)
    # Monotone in the weight, and a heavy tail is compressed: the largest confidence is a small multiple of the mean.
    order = np.argsort(weights, kind="stable")
    assert (np.diff(conf[order]) >= -1e-6).all()
    assert conf.max() < 30 * conf.mean()


@pytest.mark.parametrize("weights", [
    np.array([0.0, 0.0, 1.0]), np.array([1e-300, 1.0, 3.4e38]), np.array([0.0, 5e-324, 3.4e38]),
    np.array([3.4e38, 3.4e38]), np.array([0.0, 0.0]),
])
def test_auto_confidence_is_finite_for_every_valid_weight(weights):
    from recsys_spark.kernels.confidence import auto_confidence

    chosen = auto_confidence(weights, mean_extra=2.0)
    conf = confidence(np.arange(len(weights)), np.zeros(len(weights), int), weights, chosen["scheme"],
                      alpha=chosen["alpha"], epsilon=chosen["epsilon"])
    assert np.isfinite(conf).all() and (conf >= 1.0).all()


def test_auto_must_be_resolved_before_computing_confidences():
    with pytest.raises(ValueError, match="auto_confidence"):
        confidence(np.arange(2), np.arange(2), np.ones(2), "auto", alpha=2.0)


def _indexed(frame):
    users = np.unique(frame.user_id, return_inverse=True)[1]
    items = np.unique(frame.item_id, return_inverse=True)[1]
    return users.astype(np.int32), items.astype(np.int32), frame.weight.to_numpy(np.float32)


def _precision_at_10(scores, train_users, train_items, test_users, test_items):
    scores = scores.copy()
    scores[train_users, train_items] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    held = {}
    for u, i in zip(test_users, test_items):
        held.setdefault(u, set()).add(i)
    return np.mean([len(held[u] & set(top[u])) / 10 for u in held])


def test_wals_learns_planted_taste_and_beats_popularity():
    frame = generate_interactions(800, 300, 30000, seed=11).groupby(["user_id", "item_id"], as_index=False).weight.sum()
    users, items, weights = _indexed(frame)
    n_users, n_items = users.max() + 1, items.max() + 1
    test = np.random.default_rng(0).random(len(users)) < 0.2
    train = ~test
    conf = confidence(users[train], items[train], weights[train], "linear", alpha=2.0)
    x, y, _ = wals_tf.fit(users[train], items[train], conf, n_users, n_items, rank=16, iterations=10,
                          reg=0.02, unobserved_weight=1.0, reg_exponent=1.0, cg_steps=3, init_stddev=0.01, seed=1)
    popularity = np.tile(np.bincount(items[train], minlength=n_items).astype(float), (n_users, 1))
    args = (users[train], items[train], users[test], items[test])
    wals_p = _precision_at_10(x @ y.T, *args)
    pop_p = _precision_at_10(popularity, *args)
    assert wals_p > 1.5 * pop_p, (wals_p, pop_p)


@pytest.mark.parametrize("kernel", KERNELS)
def test_same_seed_same_factors_other_seed_other_factors(kernel):
    users, items, conf = _tiny(seed=4, n_users=30, n_items=20)
    run = lambda seed: KERNELS[kernel][0](users, items, conf, 30, 20, 4, 3, 0.02, 1.0, 1.0, 2, 0.1, seed)[:2]
    first, again, other = run(7), run(7), run(8)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.allclose(first[0], other[0])


def test_numpy_and_tensorflow_kernels_give_the_same_factors_over_many_blocks_and_threads(monkeypatch):
    """Blocks of at most 7 rows and 40 nonzeros, solved by 3 threads in place in gathered runs of at most
    3 rows and 12 nonzeros (rows over 12 by the chunked products), against TensorFlow's whole-matrix
    half-steps from the same start: same factors, same losses, same tolerance stop."""
    monkeypatch.setattr(wals_cpu, "BLOCK_ROWS", 7)
    monkeypatch.setattr(wals_cpu, "BLOCK_NONZEROS", 40)
    monkeypatch.setattr(wals_blocks, "GATHER_ROWS", 3)
    monkeypatch.setattr(wals_blocks, "GATHER_NONZEROS", 12)
    frame = generate_interactions(120, 60, 1500, seed=6).groupby(["user_id", "item_id"], as_index=False).weight.sum()
    users, items, weights = _indexed(frame)
    n_users, n_items, rank = int(users.max()) + 1, int(items.max()) + 1, 6
    conf = confidence(users, items, weights, "log", alpha=2.0, epsilon=1.0)
    start = (initial_rows(np.arange(n_users), rank, 0.1, 3, 1), initial_rows(np.arange(n_items), rank, 0.1, 3, 2))
    args = (users, items, conf, n_users, n_items, rank, 30, 0.05, 0.3, 1.0, 3, 0.1, 3)
    got_x, got_y, got = wals_cpu.fit(*args, initial=start, tolerance=1e-3, threads=3)
    want_x, want_y, want = wals_tf.fit(*args, initial=start, tolerance=1e-3)
    assert len(got) == len(want) < 30  # the tolerance stopped both at the same iteration
    np.testing.assert_allclose([h["loss"] for h in got], [h["loss"] for h in want], rtol=1e-5)
    np.testing.assert_allclose(got_x, want_x, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got_y, want_y, rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(start[0], initial_rows(np.arange(n_users), rank, 0.1, 3, 1))  # the start is not written


def test_initial_rows_depend_only_on_each_row_index():
    rows = np.random.default_rng(3).permutation(10_000)[:3000]  # several chunks, shuffled
    whole = initial_rows(np.arange(10_000), 4, 0.1, 7, 1)
    np.testing.assert_array_equal(initial_rows(rows, 4, 0.1, 7, 1), whole[rows])
    assert not np.array_equal(initial_rows(rows, 4, 0.1, 7, 2), whole[rows])  # the side is part of the seed


def test_blas_threads_sets_and_restores_every_openblas():
    from recsys_spark.kernels import blas

    libraries = blas._openblas_libraries()
    if not libraries:
        pytest.skip("no OpenBLAS loaded in this process")
    before = [getter() for _, getter in libraries]
    with blas.blas_threads(1):
        assert [getter() for _, getter in libraries] == [1] * len(libraries)
    assert [getter() for _, getter in libraries] == before


def test_gpu_probe_imports_tensorflow_only_where_a_gpu_driver_is_listed(monkeypatch):
    import sys

    from recsys_spark.kernels import tf_runtime

    assert tf_runtime.lists_gpu_driver(["Character devices:\n", "195 nvidia-frontend\n", "\n"])
    assert tf_runtime.lists_gpu_driver(["238 kfd\n"]) and tf_runtime.lists_gpu_driver(["240 dxg\n"])
    assert not tf_runtime.lists_gpu_driver(["Character devices:\n", "1 mem\n", "254 ndctl\n", "\n"])
    monkeypatch.delitem(sys.modules, "tensorflow")
    monkeypatch.setattr(tf_runtime, "_gpu_driver_loaded", lambda: False)
    monkeypatch.setattr(tf_runtime, "import_tensorflow", lambda: pytest.fail("TensorFlow was imported"))
    assert tf_runtime.gpu_visible() is False


@pytest.mark.parametrize("counts, max_nonzeros, max_rows, bounds", [
    ([3, 3, 3, 3], 6, 10, [0, 2, 4]),
    ([1, 50, 1, 1], 10, 10, [0, 1, 2, 4]),  # a row over the limit gets a block of its own
    ([0, 0, 0, 0, 0], 10, 2, [0, 2, 4, 5]),  # rows without nonzeros still count against max_rows
    ([], 10, 2, [0]),
])
def test_block_bounds(counts, max_nonzeros, max_rows, bounds):
    got = wals_blocks.block_bounds(np.array(counts, np.int64), max_nonzeros, max_rows)
    assert got.tolist() == bounds


@pytest.mark.parametrize("max_slots, max_rows", [(40, 6), (12, 100), (1000, 3)])
def test_degree_runs_cover_every_row_once_within_their_bounds(max_slots, max_rows):
    """Against the definition: each row in exactly one run; a run's width is its widest row's count (at
    least 1), at most RUN_WIDTH_RATIO x its narrowest's + 1, rows x width <= max_slots unless it is a
    single row over max_slots, at most max_rows rows."""
    counts = np.random.default_rng(5).zipf(1.6, 300).clip(max=500) - 1  # heavy-tailed, zeros included
    runs = wals_blocks.degree_runs(counts, max_slots, max_rows)
    rows = np.concatenate([r for r, _ in runs])
    assert sorted(rows.tolist()) == list(range(len(counts)))
    for r, width in runs:
        assert width == max(counts[r].max(), 1) and len(r) <= max_rows
        assert counts[r].max() <= int(counts[r].min() * wals_blocks.RUN_WIDTH_RATIO) + 1
        assert len(r) * width <= max_slots or (len(r) == 1 and width > max_slots)
    assert len(runs) <= 2 * len(np.unique(counts)) + sum(len(r) for r, w in runs if w > max_slots) + len(counts) // max_rows + 1


@pytest.mark.parametrize("gather", [4, 1 << 14])  # runs of rows with rows heavier than a run; few runs
def test_block_half_step_solves_each_row_and_reports_its_observed_loss(monkeypatch, gather):
    """Against numpy: each row's exact least-squares solution (enough CG steps for rank 5) and the
    observed loss sum c (1 - x.y)^2 - w0 (x.y)^2 before and after, computed densely."""
    monkeypatch.setattr(wals_blocks, "GATHER_NONZEROS", gather)
    rng = np.random.default_rng(11)
    n_rows, n_other, rank, w0 = 9, 15, 5, 0.4
    dense = (rng.random((n_rows, n_other)) < 0.45) * rng.uniform(1.0, 4.0, (n_rows, n_other))
    dense[3] = 0.0  # a row without nonzeros
    rows, cols = np.nonzero(dense)
    conf = dense[rows, cols].astype(np.float32)
    other = rng.normal(0, 0.5, (n_other, rank)).astype(np.float32)
    x = rng.normal(0, 0.5, (n_rows, rank)).astype(np.float32)
    reg = rng.uniform(0.1, 0.5, n_rows).astype(np.float32)
    gram_w0 = w0 * other.T.astype(np.float64) @ other
    nz = wals_blocks.BlockNonzeros(rows, cols, conf, n_rows, other)
    got, before, after = wals_blocks.block_half_step(x, nz, gram_w0, reg, w0, cg_steps=12)

    def observed(factors):
        pred = factors.astype(np.float64) @ other.T.astype(np.float64)
        mask = dense > 0
        return float(np.sum(dense[mask] * (1 - pred[mask]) ** 2 - w0 * pred[mask] ** 2))

    for u in range(n_rows):
        c = dense[u][dense[u] > 0]
        y = other[dense[u] > 0].astype(np.float64)
        a = gram_w0 + (y.T * (c - w0)) @ y + reg[u] * np.eye(rank)
        np.testing.assert_allclose(got[u], np.linalg.solve(a, y.T @ c), rtol=1e-3, atol=1e-4)
    assert before == pytest.approx(observed(x), rel=1e-5)
    assert after == pytest.approx(observed(got), rel=1e-5)
    assert wals_blocks.block_half_step(x, nz, gram_w0, reg, w0, cg_steps=2, after=False)[2] is None


@pytest.mark.parametrize("kernel", ["auto", "tensorflow"])
def test_train_builds_a_factor_model_with_history(spark, kernel):
    from recsys_spark.config import ModelConfig, TrainConfig, WalsConfig
    from recsys_spark.models import wals
    from recsys_spark.models.factor_model import ModelInfo
    from tests.prepared_frames import prepared_from_pandas

    prepared = prepared_from_pandas(spark, generate_interactions(60, 40, 800, seed=3))
    cfg = ModelConfig(kind="wals", rank=5, seed=9, wals=WalsConfig(iterations=3, confidence="bm25", kernel=kernel))
    model = wals.train(prepared, cfg, TrainConfig())
    assert model.kind == "wals" and model.width == 5
    assert model.info == ModelInfo("wals", latent_dim=5, width=5, seed=9, params=model.metadata["params"])
    assert model.metadata["rank"] == 5  # what earlier versions read
    assert [h["iteration"] for h in model.metadata["history"]] == [1, 2, 3]
    assert all(h["seconds"] >= 0 and np.isfinite(h["loss"]) for h in model.metadata["history"])
    assert model.metadata["params"]["confidence"] == "bm25"
    assert model.metadata["engine"] == "driver"
    assert model.metadata["kernel"] == (kernel if kernel != "auto" else "tensorflow" if gpu_visible() else "numpy")
    assert len(model.metadata["foldin"]["bm25_idf"]) == prepared.n_items
    assert "weights" not in model.metadata["foldin"]  # only auto records the weights' profile
    assert model.user_factors.count() == prepared.n_users
    assert model.item_factor_matrix().shape == (prepared.n_items, 5)


def test_wals_refuses_data_whose_working_set_passes_the_driver_budget(spark):
    from recsys_spark.config import Config, ModelConfig, TrainConfig, WalsConfig
    from recsys_spark.data.prepare import prepare
    from recsys_spark.models.driver_data import BYTES_PER_INTERACTION, DriverMemoryError
    from recsys_spark.models.registry import train_model
    from recsys_spark.models.wals import bytes_per_interaction

    frame = spark.createDataFrame(generate_interactions(n_users=40, n_items=20, n_interactions=400, seed=2))
    prepared = prepare(frame, Config().prepare)
    n = prepared.stats["interactions"]
    # Budget above the collected arrays (12 B each) but below what training needs at rank 8.
    budget = n * (BYTES_PER_INTERACTION + bytes_per_interaction(8)) // 2
    cfg = Config(model=ModelConfig(kind="wals", rank=8, wals=WalsConfig(engine="driver")),
                 train=TrainConfig(driver_max_bytes=budget))  # engine auto would go to the executors instead
    with pytest.raises(DriverMemoryError, match="raise train.driver_max_bytes"):
        train_model(prepared, cfg)
    cfg.train.driver_max_bytes = n * bytes_per_interaction(8)
    cfg.model.wals.iterations = 1
    assert train_model(prepared, cfg).width == 8


def test_a_confidence_beyond_float32_is_a_clear_error():
    from recsys_spark.kernels.confidence import ConfidenceError

    users, items = np.array([0, 1]), np.array([0, 0])
    with pytest.raises(ConfidenceError, match="overflows float32"):
        confidence(users, items, np.array([1.0, 3e38]), "linear", alpha=2.0)
    assert np.isfinite(confidence(users, items, np.array([1.0, 3e38]), "log", alpha=2.0, epsilon=1.0)).all()


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("n_users, n_items", [(1, 5), (6, 1)])
def test_fit_with_a_single_user_or_item_matches_dense_solves(n_users, n_items, kernel):
    fit, start = KERNELS[kernel]
    rng = np.random.default_rng(4)
    users, items = np.nonzero(rng.random((n_users, n_items)) < 0.7)
    users, items = users.astype(np.int32), items.astype(np.int32)
    conf = (1.0 + rng.random(len(users))).astype(np.float32)
    rank, w0, reg = 3, 0.5, 0.1
    got_x, got_y, _ = fit(users, items, conf, n_users, n_items, rank, 2, reg, w0, reg_exponent=0.0,
                          cg_steps=3 * rank, init_stddev=0.1, seed=5)
    weights, target = _dense_weights(users, items, conf, n_users, n_items, w0)
    x, y = start(n_users, rank, 0.1, 5, 1), start(n_items, rank, 0.1, 5, 2)
    for _ in range(2):
        x = _exact_rows(y, weights, target, np.full(n_users, reg))
        y = _exact_rows(x, weights.T, target.T, np.full(n_items, reg))
    np.testing.assert_allclose(got_x, x, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got_y, y, rtol=1e-3, atol=1e-4)


def test_auto_unobserved_weight_follows_the_density():
    from recsys_spark.kernels.confidence import auto_unobserved_weight

    assert auto_unobserved_weight(10_000, 100, 100) == 1.0  # every entry observed: capped at 1
    assert auto_unobserved_weight(80_000, 1000, 1600) == pytest.approx(min(1.0, 4 * np.sqrt(0.05)))
    assert auto_unobserved_weight(59_000, 9400, 3400) == pytest.approx(4 * np.sqrt(59_000 / (9400 * 3400)))


def test_train_records_the_resolved_unobserved_weight(spark):
    from recsys_spark.config import ModelConfig, TrainConfig, WalsConfig
    from recsys_spark.models import wals
    from tests.prepared_frames import prepared_from_pandas

    prepared = prepared_from_pandas(spark, generate_interactions(300, 200, 600, seed=3))
    model = wals.train(prepared, ModelConfig(kind="wals", rank=3, wals=WalsConfig(iterations=1)), TrainConfig())
    n = prepared.interactions.count()
    expected = min(1.0, 4 * np.sqrt(n / (prepared.n_users * prepared.n_items)))
    assert model.metadata["foldin"]["unobserved_weight"] == pytest.approx(expected)
    assert expected < 1.0
    fixed = wals.train(prepared, ModelConfig(kind="wals", rank=3, wals=WalsConfig(iterations=1, unobserved_weight=0.7)),
                       TrainConfig())
    assert fixed.metadata["foldin"]["unobserved_weight"] == 0.7
