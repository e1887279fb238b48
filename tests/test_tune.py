"""tune: search points, overrides, a search that finds the sensible setting, the writer round trip."""

import pytest

from recsys_spark.config import ConfigError, load_config, parse_param, with_overrides
from recsys_spark.data.prepare import prepare
from recsys_spark.data.sample_data import generate_interactions
from recsys_spark.evaluation.tune import search_points, tune
from recsys_spark.storage.readers import load_config_file
from recsys_spark.storage.reports import write_tune


def test_grid_and_random_points():
    cfg = load_config(None, ["tune.params={model.rank: [8, 16, 32], model.als.reg_param: [0.01, 0.1]}"])
    grid = search_points(cfg)
    assert len(grid) == 6 and grid[0] == {"model.rank": 8, "model.als.reg_param": 0.01}
    random_cfg = with_overrides(cfg, {"tune.method": "random", "tune.trials": 4})
    drawn = search_points(random_cfg)
    assert len(drawn) == 4 and all(p in grid for p in drawn) and drawn == search_points(random_cfg)
    with pytest.raises(ConfigError, match="tune.params is empty"):
        search_points(load_config())


def test_parse_param_option():
    assert parse_param("model.rank=32,64") == ("model.rank", [32, 64])
    assert parse_param("model.als.implicit=true, false") == ("model.als.implicit", [True, False])
    with pytest.raises(ConfigError, match="--param"):
        parse_param("model.rank")


def test_with_overrides_validates_keys_and_values():
    cfg = with_overrides(load_config(), {"model.rank": 12, "model.als.reg_param": 1})
    assert cfg.model.rank == 12 and cfg.model.als.reg_param == 1.0
    with pytest.raises(ConfigError, match="unknown conf key model.rnk"):
        with_overrides(cfg, {"model.rnk": 3})
    with pytest.raises(ConfigError, match="model.rank"):
        with_overrides(cfg, {"model.rank": 0})


def test_tune_prefers_the_sane_regularisation_and_writes_loadable_conf(spark, tmp_path):
    pdf = generate_interactions(n_users=250, n_items=100, n_interactions=7000, seed=5)
    prepared = prepare(spark.createDataFrame(pdf), load_config().prepare)
    prepared.interactions = prepared.interactions.persist()
    cfg = load_config(None, ["model.kind=als", "model.rank=8", "model.als.max_iter=5", "score.batch_users=256",
                             "tune.params={model.als.reg_param: [1000.0, 0.05]}", "tune.objective=ndcg@10"])
    result = tune(prepared, cfg)
    assert result.best_overrides == {"model.als.reg_param": 0.05}
    assert list(result.trials["trial"]) == [1, 2]
    assert result.trials["ndcg@10"][1] > result.trials["ndcg@10"][0]
    files = write_tune(spark, result, str(tmp_path / "best.yaml"), str(tmp_path / "trials"))
    reloaded = load_config_file(files[0])
    assert reloaded.model.als.reg_param == 0.05 and reloaded.model.rank == 8
    assert spark.read.parquet(files[1]).count() == 2


def test_the_nightly_search_fits_on_four_fifths_of_the_data_and_a_study_on_four_fifths_of_train(spark):
    pdf = generate_interactions(n_users=200, n_items=60, n_interactions=5000, seed=6)
    prepared = prepare(spark.createDataFrame(pdf), load_config().prepare)
    total = prepared.interactions.count()
    cfg = load_config(None, ["model.kind=ease", "tune.params={model.ease.reg: [6.0]}", "score.batch_users=256"])
    study = tune(prepared, cfg)
    nightly = tune(prepared, cfg, within_train=False)
    # users with >= 5 interactions keep 20% aside at each split: 80% of all, or 80% of the 80% train
    assert 0.75 * total < nightly.fit_interactions < 0.85 * total
    assert 0.58 * total < study.fit_interactions < 0.7 * total


def test_halving_replaces_a_bad_configuration_and_records_the_paired_gain(spark):
    pdf = generate_interactions(n_users=200, n_items=60, n_interactions=5000, seed=6)
    prepared = prepare(spark.createDataFrame(pdf), load_config().prepare)
    cfg = load_config(None, ["model.kind=ease", "model.ease.reg=100000", "tune.method=halving", "tune.trials=2",
                             "tune.params={model.ease.reg: [6.0]}", "score.batch_users=256"])
    result = tune(prepared, cfg)
    assert result.best_overrides == {"model.ease.reg": 6.0}
    selection = result.selection
    assert not selection["kept_configured"] and selection["gain"] > 2 * selection["standard_error"] > 0
    values = list(result.trials["ndcg@10"])
    assert selection["gain"] == pytest.approx(values[1] - values[0], abs=1e-6)  # same users in both
