"""TensorFlow trainers (mf, two_tower, autoencoder) and content vectors, on small generated data.

Quality is checked against numpy references computed here: held-out precision@10 of popularity
for the implicit models, held-out RMSE of a bias-only model for mf, the closed-form optimum of
the autoencoder's objective, hand-computed content vectors.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from recsys_spark.config import AutoencoderConfig, ContentConfig, MfConfig, ModelConfig, TrainConfig, TwoTowerConfig
from recsys_spark.data.sample_data import generate_interactions
from recsys_spark.models.driver_data import Interactions


def _index(frame: pd.DataFrame) -> Interactions:
    frame = frame.groupby(["user_id", "item_id"], as_index=False)["weight"].sum()
    users = pd.Categorical(frame.user_id).codes.astype(np.int32)
    items = pd.Categorical(frame.item_id).codes.astype(np.int32)
    return Interactions(users, items, frame.weight.to_numpy(np.float32), int(users.max()) + 1, int(items.max()) + 1)


def _holdout(data: Interactions, fraction=0.2, seed=0):
    test = np.random.default_rng(seed).random(len(data)) < fraction
    part = lambda m: Interactions(data.users[m], data.items[m], data.weights[m], data.n_users, data.n_items)
    return part(~test), part(test)


def _precision_at_10(scores: np.ndarray, train: Interactions, test: Interactions) -> float:
    scores = np.array(scores, dtype=np.float64)
    scores[train.users, train.items] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    relevant = np.zeros(scores.shape, dtype=bool)
    relevant[test.users, test.items] = True
    users = np.unique(test.users)
    return float(np.take_along_axis(relevant[users], top[users], axis=1).sum(axis=1).mean() / 10)


@pytest.fixture(scope="module")
def implicit_split():
    data = _index(generate_interactions(n_users=400, n_items=150, n_interactions=12000, seed=5))
    train, test = _holdout(data)
    popularity = np.bincount(train.items, minlength=data.n_items).astype(float)
    baseline = _precision_at_10(np.tile(popularity, (data.n_users, 1)), train, test)
    return train, test, baseline


def test_autoencoder_beats_popularity(implicit_split):
    from recsys_spark.models.autoencoder import fit_autoencoder

    train, test, baseline = implicit_split
    fit = fit_autoencoder(train, 16, AutoencoderConfig(epochs=30), seed=1)
    assert fit.user_factors.shape == (train.n_users, 16) and fit.item_factors.shape == (train.n_items, 16)
    assert _precision_at_10(fit.user_factors @ fit.item_factors.T, train, test) > 1.3 * baseline


def test_autoencoder_item_bias_is_a_constant_user_column(implicit_split):
    from recsys_spark.models.autoencoder import fit_autoencoder

    train, _, _ = implicit_split
    fit = fit_autoencoder(train, 8, AutoencoderConfig(epochs=2, item_bias=True), seed=1)
    assert fit.user_factors.shape[1] == 9 and np.all(fit.user_factors[:, -1] == 1.0)


def test_autoencoder_reaches_the_closed_form_optimum():
    """Marginalised-dropout objective: rank-k optimum B = B* Q_k Q_k^T (Steck 2020), in numpy."""
    from recsys_spark.models.autoencoder import fit_autoencoder

    rng = np.random.default_rng(0)
    n_users, n_items, rank, p, reg = 60, 12, 3, 0.5, 0.5
    x = (rng.random((n_users, n_items)) < rng.uniform(0.1, 0.6, n_items)).astype(np.float64)
    users, items = np.nonzero(x)
    data = Interactions(users.astype(np.int32), items.astype(np.int32), np.ones(len(users), np.float32), n_users, n_items)
    cfg = AutoencoderConfig(epochs=600, batch_size=n_users, learning_rate=0.01, dropout=p, reg=reg)
    fit = fit_autoencoder(data, rank, cfg, seed=3)

    gram = x.T @ x
    penalty = np.diag(p / (1 - p) * np.diag(gram) + reg * np.diag(gram).mean())
    objective = lambda b: np.sum((x - x @ b) ** 2) + np.sum(penalty @ (b * b))
    full = np.linalg.solve(gram + penalty, gram)
    _, vectors = np.linalg.eigh(gram @ full)
    top = vectors[:, -rank:]
    best = objective(full @ top @ top.T)
    encoder = np.linalg.lstsq(x, fit.user_factors, rcond=None)[0]  # user code h = x W
    trained = objective(encoder @ fit.item_factors.T)
    assert trained == pytest.approx(best, rel=0.01)
    assert trained >= best * (1 - 1e-6)


def test_two_tower_beats_popularity(implicit_split):
    from recsys_spark.models.two_tower import fit_two_tower

    train, test, baseline = implicit_split
    fit = fit_two_tower(train, 16, TwoTowerConfig(epochs=15, batch_size=256, validation_fraction=0.0), seed=1)
    assert _precision_at_10(fit.user_factors @ fit.item_factors.T, train, test) > 1.3 * baseline


def test_two_tower_with_item_features(implicit_split):
    from recsys_spark.models.two_tower import fit_two_tower

    train, _, _ = implicit_split
    features = np.eye(train.n_items, 5, dtype=np.float32)
    fit = fit_two_tower(train, 8, TwoTowerConfig(epochs=1, batch_size=256), seed=1, item_features=features)
    assert fit.item_factors.shape == (train.n_items, 8)
    np.testing.assert_allclose(np.linalg.norm(fit.item_factors, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("fit_name", ["autoencoder", "two_tower", "mf"])
def test_same_seed_same_factors(implicit_split, fit_name):
    from recsys_spark.models.autoencoder import fit_autoencoder
    from recsys_spark.models.mf import fit_mf
    from recsys_spark.models.two_tower import fit_two_tower

    train, _, _ = implicit_split
    run = {
        "autoencoder": lambda seed: fit_autoencoder(train, 8, AutoencoderConfig(epochs=2, validation_fraction=0.1), seed),
        "two_tower": lambda seed: fit_two_tower(train, 8, TwoTowerConfig(epochs=2, batch_size=512), seed),
        "mf": lambda seed: fit_mf(train, 8, MfConfig(epochs=2), seed),
    }[fit_name]
    first, second, other = run(7), run(7), run(8)
    np.testing.assert_array_equal(first.user_factors, second.user_factors)
    np.testing.assert_array_equal(first.item_factors, second.item_factors)
    assert not np.array_equal(first.item_factors, other.item_factors)


def test_mf_folded_biases_give_the_biased_prediction():
    from recsys_spark.models.mf import fold_biases

    rng = np.random.default_rng(0)
    p, q = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)
    bu, bi = rng.normal(size=4).astype(np.float32), rng.normal(size=5).astype(np.float32)
    users, items = fold_biases(p, q, bu, bi, 3.5)
    expected = np.array([[3.5 + bu[u] + bi[i] + sum(p[u, f] * q[i, f] for f in range(3)) for i in range(5)]
                         for u in range(4)])
    np.testing.assert_allclose(users @ items.T, expected, rtol=1e-5, atol=1e-5)


def test_mf_learns_planted_ratings():
    """Ratings = mu + b_u + b_i + p.q + noise; mf must beat the best bias-only model on held-out RMSE."""
    from recsys_spark.models.mf import fit_mf

    rng = np.random.default_rng(1)
    n_users, n_items, n = 300, 200, 15000
    p, q = rng.normal(0, 0.8, (n_users, 2)), rng.normal(0, 0.8, (n_items, 2))
    bu, bi = rng.normal(0, 0.3, n_users), rng.normal(0, 0.3, n_items)
    pairs = np.unique(np.stack([rng.integers(0, n_users, n), rng.integers(0, n_items, n)], axis=1), axis=0)
    users, items = pairs[:, 0].astype(np.int32), pairs[:, 1].astype(np.int32)
    ratings = 3.0 + bu[users] + bi[items] + np.sum(p[users] * q[items], axis=1) + rng.normal(0, 0.3, len(users))
    train, test = _holdout(Interactions(users, items, ratings.astype(np.float32), n_users, n_items))

    fit = fit_mf(train, 8, MfConfig(epochs=60, learning_rate=0.01, reg=0.02), seed=1)
    predicted = np.sum(fit.user_factors[test.users] * fit.item_factors[test.items], axis=1)
    rmse = np.sqrt(np.mean((predicted - test.weights) ** 2))
    # Bias-only reference by alternating least squares in numpy.
    mu, b_user, b_item = train.weights.mean(), np.zeros(n_users), np.zeros(n_items)
    for _ in range(20):
        r = train.weights - mu - b_item[train.items]
        b_user = np.bincount(train.users, r, n_users) / (np.bincount(train.users, minlength=n_users) + 5)
        r = train.weights - mu - b_user[train.users]
        b_item = np.bincount(train.items, r, n_items) / (np.bincount(train.items, minlength=n_items) + 5)
    bias_rmse = np.sqrt(np.mean((mu + b_user[test.users] + b_item[test.items] - test.weights) ** 2))
    assert rmse < 0.85 * bias_rmse
    assert np.all(fit.user_factors[:, -1] == 1.0) and np.all(fit.item_factors[:, -2] == 1.0)


class _Weights:
    """Stands in for a tf.Variable: numpy() and assign()."""

    def __init__(self, value):
        self.value = np.asarray(value, dtype=np.float64)

    def numpy(self):
        return self.value

    def assign(self, value):
        self.value = np.array(value)


def test_fit_epochs_stops_after_patience_and_restores_the_best_weights():
    from recsys_spark.models.tf_training import fit_epochs

    weights = _Weights([0.0])
    metrics = iter([0.5, 0.3, 0.4, 0.45, 0.2, 0.1])  # lower is better: best at epoch 2, then 2 worse

    def train_epoch(epoch):
        weights.value = weights.value + 1.0
        return 10.0 / epoch

    fit = fit_epochs("test", 10, train_epoch, [weights], lambda: next(metrics), metric="val_rmse",
                     higher_is_better=False, patience=2)
    assert fit.best_epoch == 2 and weights.value[0] == 2.0  # stopped after epoch 4, epoch 2's weights back
    assert [h["epoch"] for h in fit.history] == [1, 2, 3, 4]
    assert [h["val_rmse"] for h in fit.history] == [0.5, 0.3, 0.4, 0.45]
    assert [h["loss"] for h in fit.history] == [10.0, 5.0, round(10 / 3, 6), 2.5]

    weights = _Weights([0.0])
    best_epoch, history = fit_epochs("test", 3, train_epoch, [weights])  # no validation: every epoch, last weights
    assert best_epoch == 3 and weights.value[0] == 3.0
    assert [sorted(h) for h in history] == [["epoch", "loss", "seconds"]] * 3


def test_model_info_is_in_every_metadata_and_reads_earlier_models():
    from recsys_spark.models.factor_model import FactorModel, ModelInfo, model_metadata

    meta = model_metadata("mf", 8, 10, 7, MfConfig(epochs=3), best_epoch=2)
    assert meta["kind"] == "mf" and meta["latent_dim"] == 8 and meta["width"] == meta["rank"] == 10
    assert meta["seed"] == 7 and meta["params"]["epochs"] == 3 and meta["best_epoch"] == 2
    assert FactorModel(None, None, meta).info == ModelInfo("mf", 8, 10, 7, dataclasses.asdict(MfConfig(epochs=3)))
    with pytest.raises(ValueError, match="redefine"):
        model_metadata("mf", 8, 10, 7, {}, rank=3)
    with pytest.raises(ValueError, match="redefine"):
        ModelInfo("mf", 8, 10, 7).metadata(width=3)
    # Saved by earlier versions: width only as "rank", latent dimension under the trainer's own key.
    old_mf = FactorModel(None, None, {"kind": "mf", "rank": 10, "latent_rank": 8, "seed": 1})
    assert old_mf.width == 10 and old_mf.info.latent_dim == 8
    old_wals = FactorModel(None, None, {"kind": "wals", "rank": 5})
    assert old_wals.width == 5 and old_wals.info == ModelInfo("wals", 5, 5, None, {})


def test_content_vectors_are_normalised_weighted_sums():
    from recsys_spark.models.content import content_vectors

    features = np.array([[1, 0, 0], [0, 3, 4], [0, 0, 0]], dtype=np.float32)
    data = Interactions(np.array([0, 0, 1, 2], np.int32), np.array([0, 1, 1, 2], np.int32),
                        np.array([2.0, 1.0, 5.0, 1.0], np.float32), n_users=4, n_items=3)
    users, items = content_vectors(data, features, normalize_items=True)
    np.testing.assert_allclose(items, [[1, 0, 0], [0, 0.6, 0.8], [0, 0, 0]], atol=1e-6)
    # user 0: 2 * [1, 0, 0] + 1 * [0, .6, .8] = [2, .6, .8], norm sqrt(5)
    np.testing.assert_allclose(users[0], np.array([2, 0.6, 0.8]) / np.sqrt(5), atol=1e-6)
    np.testing.assert_allclose(users[1], [0, 0.6, 0.8], atol=1e-6)
    np.testing.assert_array_equal(users[2], 0.0)  # only an item without features
    np.testing.assert_array_equal(users[3], 0.0)  # no interactions
    raw_users, raw_items = content_vectors(data, features, normalize_items=False)
    np.testing.assert_allclose(raw_users[0], np.array([2, 3, 4]) / np.sqrt(29), atol=1e-6)
    np.testing.assert_array_equal(raw_items, features)


def test_content_beats_popularity_with_planted_features():
    """Items in 6 taste clusters, one-hot cluster features; users draw mostly from one cluster."""
    from recsys_spark.models.content import content_vectors

    rng = np.random.default_rng(2)
    n_users, n_items, n_clusters = 300, 120, 6
    cluster = rng.integers(0, n_clusters, n_items)
    taste = rng.integers(0, n_clusters, n_users)
    users = np.repeat(np.arange(n_users), 12)
    own = rng.random(len(users)) < 0.85
    items = np.where(own, [rng.choice(np.flatnonzero(cluster == taste[u])) for u in users], rng.integers(0, n_items, len(users)))
    pairs = np.unique(np.stack([users, items], axis=1), axis=0)
    data = Interactions(pairs[:, 0].astype(np.int32), pairs[:, 1].astype(np.int32), np.ones(len(pairs), np.float32),
                        n_users, n_items)
    train, test = _holdout(data)
    user_vec, item_vec = content_vectors(train, np.eye(n_clusters, dtype=np.float32)[cluster])
    popularity = np.bincount(train.items, minlength=n_items).astype(float)
    baseline = _precision_at_10(np.tile(popularity, (n_users, 1)), train, test)
    assert _precision_at_10(user_vec @ item_vec.T, train, test) > 2 * baseline


def test_train_entry_points_build_factor_models(spark, tmp_path):
    """The Spark glue: prepare -> train(prepared, model_cfg, train_cfg) -> FactorModel, with features from a CSV."""
    from recsys_spark.config import PrepareConfig
    from recsys_spark.data.prepare import prepare
    from recsys_spark.models import autoencoder, content, mf, two_tower
    from recsys_spark.models.content import content_vectors
    from recsys_spark.models.factor_model import ModelInfo
    from recsys_spark.storage.readers import read_item_features

    frame = generate_interactions(n_users=60, n_items=30, n_interactions=800, seed=4)
    prepared = prepare(spark.createDataFrame(frame), PrepareConfig())
    features = tmp_path / "features.csv"
    item_ids = sorted(frame.item_id.unique())
    pd.DataFrame({"item_id": item_ids[:-3], "f0": 1.0, "f1": np.arange(len(item_ids) - 3, dtype=float)}).to_csv(features, index=False)
    with_features = ContentConfig(features_path=str(features))
    feature_frame = read_item_features(spark, str(features))

    cfg = ModelConfig(rank=4, seed=3, content=with_features,
                      two_tower=TwoTowerConfig(epochs=2, batch_size=64, item_features=True))
    model = two_tower.train(prepared, cfg, TrainConfig(), feature_frame)
    assert model.kind == "two_tower" and model.width == 4
    assert model.info == ModelInfo("two_tower", 4, 4, 3, dataclasses.asdict(cfg.two_tower))
    assert model.item_factor_matrix().shape == (prepared.n_items, 4)

    # mf folds its biases into two extra columns, the autoencoder's item bias into one.
    mf_cfg = ModelConfig(rank=4, seed=3, mf=MfConfig(epochs=1))
    model = mf.train(prepared, mf_cfg, TrainConfig())
    assert model.width == 6 and model.info == ModelInfo("mf", 4, 6, 3, dataclasses.asdict(mf_cfg.mf))
    assert [h["epoch"] for h in model.metadata["history"]] == [1] and model.metadata["best_epoch"] == 1
    ae_cfg = ModelConfig(rank=4, seed=3, autoencoder=AutoencoderConfig(epochs=1, item_bias=True))
    model = autoencoder.train(prepared, ae_cfg, TrainConfig())
    assert model.width == 5 and model.info.latent_dim == 4 and model.info.params["item_bias"] is True
    assert model.item_factor_matrix().shape == (prepared.n_items, 5)

    model = content.train(prepared, ModelConfig(content=with_features), TrainConfig(), feature_frame)
    items = model.item_factor_matrix()
    assert model.kind == "content" and items.shape == (prepared.n_items, 2)
    assert model.info == ModelInfo("content", 2, 2, None, dataclasses.asdict(with_features))
    assert np.all(items[-3:] == 0.0)  # the last three items have no features
    expected = np.stack([np.ones(len(item_ids) - 3), np.arange(len(item_ids) - 3)], axis=1)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(items[:-3], expected, rtol=1e-5)
    pdf = prepared.interactions.toPandas()
    data = Interactions(pdf.user_index.to_numpy(np.int32), pdf.item_index.to_numpy(np.int32),
                        pdf.weight.to_numpy(np.float32), prepared.n_users, prepared.n_items)
    users = model.user_factors.toPandas().sort_values("user_index")
    assert len(users) == prepared.n_users
    np.testing.assert_allclose(np.stack(users.factors.to_numpy()), content_vectors(data, items)[0], rtol=1e-5, atol=1e-6)


def test_read_movielens_item_genres(spark, tmp_path):
    from recsys_spark.storage.readers import read_item_features

    path = tmp_path / "u.item"
    flags = ["0"] * 19
    lines = ["1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(["0", "0", "0", "1", "1"] + flags[5:]),
             "2|Cit\xe9 (1995)|01-Jan-1995||http://y|" + "|".join(["1"] + flags[1:])]
    path.write_bytes("\n".join(lines).encode("latin-1"))
    rows = {r.item_id: r.features for r in read_item_features(spark, str(path)).collect()}
    assert rows[1] == [0.0, 0.0, 0.0, 1.0, 1.0] + [0.0] * 14
    assert rows[2] == [1.0] + [0.0] * 18


def test_als_auto_ratings_equal_the_numpy_relative_log_weights(spark):
    from recsys_spark.kernels.confidence import relative_log_weights
    from recsys_spark.models.spark_als import relative_log_ratings

    weights = np.array([0.0, 0.5, 3.0, 7.0, 120.0, 11754.0, 2.0, 2.5])  # 7 positive: their median is 3.0
    frame = spark.createDataFrame(pd.DataFrame({"user_index": np.arange(len(weights), dtype=np.int32),
                                                "item_index": np.zeros(len(weights), np.int32), "weight": weights}))
    got, fitted = relative_log_ratings(frame)
    expected, numpy_fitted = relative_log_weights(weights)
    assert fitted["epsilon"] == numpy_fitted["epsilon"] == 3.0
    np.testing.assert_allclose(got.orderBy("user_index").toPandas()["weight"], expected, rtol=1e-9)
    assert expected.mean() == pytest.approx(1.0)


def test_auto_kind_is_ease_while_its_matrices_fit_the_budget_then_wals(spark):
    from recsys_spark.config import Config
    from recsys_spark.models.ease import driver_bytes
    from recsys_spark.models.registry import resolve_kind, train_model
    from tests.prepared_frames import prepared_from_pandas

    assert resolve_kind("auto", 1000, driver_bytes(1000)) == "ease"
    assert resolve_kind("auto", 1001, driver_bytes(1000)) == "wals"
    assert resolve_kind("als", 10, 1 << 40) == "als"  # a named kind is never replaced
    prepared = prepared_from_pandas(spark, generate_interactions(60, 200, 400, seed=8))
    cfg = Config()
    assert cfg.model.kind == "auto"
    assert train_model(prepared, cfg).kind == "ease"
    cfg.train.driver_max_bytes = driver_bytes(prepared.n_items) - 1
    cfg.model.wals.iterations = 1
    assert train_model(prepared, cfg).kind == "wals"


def test_autoencoder_weights_are_unit_free_when_not_binary():
    from recsys_spark.models.autoencoder import fit_autoencoder

    data = _index(generate_interactions(60, 40, 600, seed=12))
    cfg = AutoencoderConfig(epochs=3, binary=False)
    hours = Interactions(data.users, data.items, data.weights * 3600.0, data.n_users, data.n_items)  # same data in seconds
    first, scaled = fit_autoencoder(data, 4, cfg, seed=2), fit_autoencoder(hours, 4, cfg, seed=2)
    np.testing.assert_allclose(first.item_factors, scaled.item_factors, rtol=1e-4, atol=1e-5)
    binary = fit_autoencoder(data, 4, AutoencoderConfig(epochs=3), seed=2)
    assert not np.allclose(first.item_factors, binary.item_factors, atol=1e-4)  # the weights still matter
