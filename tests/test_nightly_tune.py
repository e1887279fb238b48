"""Nightly tuning: successive halving on a toy objective, the budget, the default space, and `run`
tuning on one date and reusing the winner on the next (re-tuning when it is too old)."""

import json

import numpy as np
import pandas as pd
import pytest

from recsys_spark.app.cli import main
from recsys_spark.config import ConfigError, load_config
from recsys_spark.config.search_space import DEFAULT_SPACES
from recsys_spark.data.sample_data import generate_interactions
from recsys_spark.evaluation.halving import Trial, rung_plan, successive_halving
from recsys_spark.evaluation.tune import configured_or_best, paired_gain, sample_points, search_points
from recsys_spark.evaluation.tuned import space_record, stale_reason
from recsys_spark.kernels.confidence import CONFIDENCE_SCHEMES

# A toy objective a + b * resource: point 3 would be best in full (0 + 0.2 * 9) but starts slowest.
A = [0.5, 0.1, 0.3, 0.0, 0.45, 0.2, 0.4, 0.35, 0.05]
B = [0.0, 0.1, 0.0, 0.2, 0.01, 0.0, 0.05, 0.0, 0.06]


def toy(calls):
    def run_trial(point, resource):
        calls.append((point, resource))
        return A[point] + B[point] * resource
    return run_trial


def test_rung_plan():
    assert rung_plan(27, 15, 3) == [(27, 1), (9, 2), (3, 5), (1, 15)]
    assert rung_plan(10, 15, 3) == [(10, 2), (3, 5), (1, 15)]
    assert rung_plan(4, 8, 2) == [(4, 2), (2, 4), (1, 8)]
    assert rung_plan(5, None, 3) == [(5, None)]  # no resource key: every point once, in full


def test_successive_halving_eliminates_by_rung():
    calls = []
    result = successive_halving(list(range(9)), toy(calls), max_resource=9, eta=3, budget_seconds=1e9)
    # rung 0 at resource 1: 0 (0.5), 4 (0.46), 6 (0.45) go on, best first; rung 1 at 3: 6 (0.55) > 0 (0.5)
    # > 4 (0.48); rung 2: 6 alone at the full resource 9: 0.4 + 0.05 * 9.
    assert calls == [(p, 1) for p in range(9)] + [(0, 3), (4, 3), (6, 3), (6, 9)]
    assert result.best == 6 and result.value == pytest.approx(0.85)
    assert [t.rung for t in result.trials] == [0] * 9 + [1, 1, 1, 2]
    assert not result.stopped_by_budget


def test_halving_stops_starting_trials_when_the_budget_is_spent():
    now = [0.0]

    def clock():
        return now[0]

    def slow(calls):
        inner = toy(calls)

        def run_trial(point, resource):
            now[0] += 10.0  # every trial takes 10 s
            return inner(point, resource)
        return run_trial

    calls = []
    result = successive_halving(list(range(9)), slow(calls), 9, 3, budget_seconds=35, clock=clock)
    assert len(calls) == 4 and result.stopped_by_budget  # started at 0, 10, 20, 30; not at 40
    assert result.best == 0  # the best of the rung-0 trials that ran
    now[0], calls = 0.0, []
    result = successive_halving(list(range(9)), slow(calls), 9, 3, budget_seconds=105, clock=clock)
    # the budget runs out in rung 1 after points 0 and 4: the winner is the best of rung 1 so far
    assert calls[9:] == [(0, 3), (4, 3)] and result.best == 0 and result.stopped_by_budget


def test_default_space_and_seeded_samples():
    space = DEFAULT_SPACES["wals"]
    assert {"model.wals.reg", "model.wals.reg_exponent", "model.wals.unobserved_weight", "model.rank",
            "model.wals.confidence", "model.wals.alpha"} <= set(space)
    assert space["model.wals.confidence"] == list(CONFIDENCE_SCHEMES)
    cfg = load_config(None, ["model.kind=wals", "tune.method=halving", "tune.trials=40"])
    points = search_points(cfg)
    assert points == search_points(cfg) and len(points) == 40
    assert points[0] == {"model.wals.reg": 0.02, "model.wals.reg_exponent": 1.0, "model.wals.unobserved_weight": None,
                         "model.rank": 64, "model.wals.confidence": "auto", "model.wals.alpha": 2.0}
    regs = [p["model.wals.reg"] for p in points[1:]]
    assert all(0.003 <= r <= 0.1 for r in regs)
    assert sum(r < 0.0173 for r in regs) > 12  # log scale: about half below the geometric mean 0.0173
    assert {p["model.rank"] for p in points} == {32, 64, 128}
    other = sample_points(cfg, space, 40, seed=7)
    assert other[0] == points[0] and other[1:] != points[1:]


def test_tune_config_checks():
    with pytest.raises(ConfigError, match="only tune.method=halving"):
        load_config(None, ["tune.params={model.wals.reg: {low: 0.01, high: 0.1}}"])
    with pytest.raises(ConfigError, match="low < high"):
        load_config(None, ["tune.method=halving", "tune.params={model.wals.reg: {low: 0.1, high: 0.01}}"])
    with pytest.raises(ConfigError, match="model.kind=als has no default search space"):
        load_config(None, ["model.kind=als", "tune.nightly=true"])
    load_config(None, ["model.kind=als", "tune.nightly=true", "tune.params={model.als.reg_param: [0.01, 0.1]}"])


def test_stale_reason_by_age_space_and_kind():
    cfg = load_config(None, ["model.kind=wals", "tune.nightly=true", "tune.max_age_days=7"])
    record = {"model_kind": "wals", "params": {"model.wals.reg": 0.01}, "tuned_on": "2026-03-01",
              "space": space_record(cfg), "objective": "ndcg@10"}
    assert stale_reason(record, cfg, "2026-03-07") is None  # 6 days old
    assert "7 days old" in stale_reason(record, cfg, "2026-03-08")
    assert "no tuned parameters" in stale_reason(None, cfg, "2026-03-02")
    assert "no tuned parameters" in stale_reason({**record, "model_kind": "als"}, cfg, "2026-03-02")
    assert "search space changed" in stale_reason({**record, "space": {}}, cfg, "2026-03-02")


FAST = ["--set", "model.kind=wals", "--set", "model.rank=8", "--set", "model.wals.iterations=5", "--set", "similar.enabled=false",
        "--set", "tune.nightly=true", "--set", "tune.trials=3",
        "--set", "tune.params={model.wals.reg: {low: 0.003, high: 0.1, log: true}, model.wals.unobserved_weight: "
                 "[0.1, 1.0]}", "--quiet"]


def test_paired_gain_is_the_mean_and_standard_error_of_per_user_differences():
    a = pd.Series([0.5, 0.2, 0.9, 0.4], index=[1, 2, 3, 4])
    b = pd.Series([0.4, 0.3, 0.6, 0.0, 0.7], index=[1, 2, 3, 4, 5])  # user 5 only in b: left out
    gain, se = paired_gain(a, b)
    diff = np.array([0.1, -0.1, 0.3, 0.4])
    assert gain == pytest.approx(diff.mean())
    assert se == pytest.approx(np.sqrt(((diff - diff.mean()) ** 2).sum() / 3) / 2)


def test_the_configured_point_stays_unless_the_winner_beats_it_beyond_the_noise():
    rng = np.random.default_rng(0)
    users = np.arange(400)
    configured = pd.Series(rng.uniform(0, 1, 400), index=users)
    noisy = configured + rng.normal(0.005, 0.2, 400)  # better on average by far less than its noise
    clear = configured + rng.normal(0.1, 0.2, 400)
    trials = [Trial(1, 0, 0, None, configured.mean(), 1.0), Trial(2, 1, 0, None, noisy.mean(), 1.0)]
    kept = configured_or_best(trials, 1, {1: configured, 2: noisy}, min_gain_se=2.0)
    gain, se = paired_gain(noisy, configured)
    assert kept["kept_configured"] and gain < 2 * se and kept["configured_value"] == configured.mean()
    assert not configured_or_best(trials, 1, {1: configured, 2: clear}, min_gain_se=2.0)["kept_configured"]
    assert configured_or_best(trials, 1, {1: configured, 2: noisy}, min_gain_se=0.0) == {}  # the best wins
    assert configured_or_best(trials, 0, {1: configured, 2: noisy}, min_gain_se=2.0) == {}
    # 2.5 standard errors: enough against one challenger, not as the best of nine (Bonferroni: 2.80).
    even = pd.Series(configured.to_numpy() + 0.025 + np.where(users % 2, 0.2, -0.2), index=users)
    gain, se = paired_gain(even, configured)
    assert 2.45 < gain / se < 2.55
    assert not configured_or_best(trials, 1, {1: configured, 2: even}, min_gain_se=2.0)["kept_configured"]
    nine = [trials[0]] + [Trial(2 + i, 1 + i, 0, None, 0.0, 1.0) for i in range(9)]
    many = configured_or_best(nine, 1, {1: configured, 2: even}, min_gain_se=2.0)
    assert many["kept_configured"] and many["challengers"] == 9 and many["bar_se"] == pytest.approx(2.803, abs=1e-3)
    # With a resource: the configured point left at rung 0, the winner went on; compared at rung 0.
    rungs = trials + [Trial(3, 1, 1, 9, clear.mean(), 1.0)]
    chosen = configured_or_best(rungs, 1, {1: configured, 2: clear, 3: configured}, min_gain_se=2.0)
    assert chosen["rung"] == 0 and not chosen["kept_configured"]


def manifest(out, date):
    return json.loads((out / "_runs" / date / "current" / "manifest.json").read_text())


@pytest.mark.slow  # three runs, two of them tuning: 2-14 minutes on 2 shared cores
def test_run_tunes_then_reuses_then_tunes_again_when_too_old(spark, tmp_path, monkeypatch):
    data = generate_interactions(n_users=150, n_items=60, n_interactions=3000, seed=3)
    (tmp_path / "in.csv").write_text(data.to_csv(index=False))
    out = tmp_path / "warehouse"

    def run(date, *extra):
        return main(["run", "--input", str(tmp_path / "in.csv"), "--output", str(out), "--run-date", date,
                     *FAST, *extra])

    assert run("2026-03-01") == 0
    first = manifest(out, "2026-03-01")["tuned"]
    assert first["tuned_now"] and first["tuned_on"] == "2026-03-01" and first["model_kind"] == "wals"
    # 3 points, eta 3: all three at ceil(5 / 3) = 2 iterations, the best at the full 5
    assert [(t["rung"], t["resource"]) for t in first["trials"]] == [(0, 2), (0, 2), (0, 2), (1, 5)]
    # the winner, or the configured point (trial 1) when the winner's gain is within the noise
    chosen = first["trials"][0 if first["selection"].get("kept_configured") else -1]
    assert first["params"] == chosen["params"] and "kept_configured" in first["selection"]
    config = manifest(out, "2026-03-01")["config"]["model"]["wals"]
    assert config["reg"] == first["params"]["model.wals.reg"] and config["iterations"] == 5

    import recsys_spark.app.tuning as tuning

    def no_tuning(*args, **kwargs):
        raise AssertionError("tuned although fresh parameters were published")

    monkeypatch.setattr(tuning, "tune", no_tuning)
    assert run("2026-03-02") == 0
    second = manifest(out, "2026-03-02")
    assert second["tuned"]["tuned_now"] is False and second["tuned"]["tuned_on"] == "2026-03-01"
    assert second["tuned"]["params"] == first["params"] and second["tuned"]["age_days"] == 1
    assert "trials" not in second["tuned"] and "tune" in second["timings"]
    assert second["config"]["model"]["wals"]["reg"] == first["params"]["model.wals.reg"]

    monkeypatch.undo()
    assert run("2026-03-03", "--set", "tune.max_age_days=2") == 0  # the parameters of 03-01 are 2 days old
    third = manifest(out, "2026-03-03")["tuned"]
    assert third["tuned_now"] and third["tuned_on"] == "2026-03-03" and "2 days old" in third["reason"]
