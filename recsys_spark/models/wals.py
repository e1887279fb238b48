"""Weighted ALS for implicit feedback, trained on the driver (or on the executors).

The interactions are collected to the driver (a deliberate, budgeted step: see
models/driver_data.py); the numerical work is kernels/wals_cpu.py (numpy on the driver's
cores) or, where TensorFlow sees a GPU, kernels/wals_tf.py (model.wals.kernel). Weighting:
observed entries get confidence 1 + alpha * f(weight) (auto, linear, log or BM25; auto is a log
transform fitted to the training weights, kernels/confidence.auto_confidence), every unobserved
entry gets model.wals.unobserved_weight (by default fitted to the density), and rows are regularised by
reg * (count + unobserved_weight * catalog) ** reg_exponent. Past the driver budget (or with
model.wals.engine=spark) the same objective is solved on the executors by models/wals_spark.py.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from recsys_spark.config import ModelConfig, TrainConfig, WalsConfig
from recsys_spark.data.prepare import PreparedData
from recsys_spark.kernels.confidence import auto_confidence, auto_unobserved_weight, bm25_statistics, confidence
from recsys_spark.kernels.wals_blocks import initial_rows
from recsys_spark.models.driver_data import Interactions, collect_interactions
from recsys_spark.models.factor_model import FactorModel, model_metadata
from recsys_spark.models.warm_start import EarlierModel, aligned_rows, as_earlier, id_maps

log = logging.getLogger(__name__)


def train(prepared: PreparedData, model_cfg: ModelConfig, train_cfg: TrainConfig,
          item_features=None, initial: FactorModel | EarlierModel | None = None) -> FactorModel:
    """Fit WALS on the prepared interactions, from `initial`'s factors when given (a warm start: a
    model in memory or the EarlierModel app/warm_start.py found on disk); metadata records params, loss
    and seconds per iteration (and the warm start's id counts).

    model.wals.engine picks where it runs (choose_engine): here on the driver, or on the executors
    (models/wals_spark.py); the metadata's "engine" says which."""
    kernel = driver_kernel(model_cfg.wals.kernel)
    engine = choose_engine(model_cfg.wals.engine, prepared, model_cfg.rank, train_cfg.driver_max_bytes, kernel)
    if engine == "spark":
        from recsys_spark.models import wals_spark

        return wals_spark.train(prepared, model_cfg, train_cfg, item_features, initial=initial)
    with ThreadPoolExecutor(1) as pool:  # beside the interactions' collection: today's id maps, then a warm start's rows
        ids = pool.submit(id_maps, prepared.user_ids, prepared.item_ids)
        warm = None if initial is None else pool.submit(warm_factors, initial, ids, prepared, model_cfg)
        data = collect_interactions(prepared.interactions, prepared.n_users, prepared.n_items,
                                    train_cfg.driver_max_bytes, bytes_per_interaction(model_cfg.rank, kernel),
                                    rows=prepared.stats.get("interactions"))
        ids = ids.result()
        start, counts = (None, None) if warm is None else warm.result()
    user_factors, item_factors, metadata = fit_interactions(data, model_cfg.wals, model_cfg.rank, model_cfg.seed, start,
                                                            kernel)
    if counts is not None:
        metadata["warm_start"] = counts
    # with the ids: the factor tables go to Spark without a join, and save_model writes them from the driver
    return FactorModel.from_numpy(user_factors, item_factors, prepared.user_ids, prepared.item_ids, metadata, ids=ids)


def choose_engine(engine: str, prepared: PreparedData, rank: int, driver_max_bytes: int,
                  kernel: str = "numpy") -> str:
    """driver or spark: `engine` unless it is auto, which is driver while collect_interactions' estimate
    (bytes_per_interaction of the driver kernel per interaction) fits train.driver_max_bytes, else spark."""
    if engine != "auto":
        return engine
    rows = prepared.stats.get("interactions")  # counted by prepare (and by every split); else one count
    rows = prepared.interactions.count() if rows is None else int(rows)
    needed = rows * bytes_per_interaction(rank, kernel)
    chosen = "driver" if needed <= driver_max_bytes else "spark"
    log.info("wals: engine %s (%d interactions need about %.2f GiB of the %.2f GiB driver budget on the driver)",
             chosen, rows, needed / 2**30, driver_max_bytes / 2**30)
    return chosen


def driver_kernel(kernel: str) -> str:
    """numpy or tensorflow: `kernel` unless it is auto, which is tensorflow where TensorFlow sees a GPU."""
    if kernel != "auto":
        return kernel
    from recsys_spark.kernels.tf_runtime import gpu_visible

    return "tensorflow" if gpu_visible() else "numpy"


def bytes_per_interaction(rank: int, kernel: str = "numpy") -> int:
    """Driver memory WALS needs per interaction, the collected arrays included. numpy: the nonzeros
    sorted both ways and the arrays they came from, whatever the rank (docs/benchmarks-training.md).
    tensorflow: also the gathered factor rows of the per-nonzero dot products; measured at rank 64,
    the driver's peak grew by ~830 bytes per interaction from 2.2M to 7.7M interactions."""
    from recsys_spark.kernels.wals_cpu import BYTES_PER_INTERACTION

    return BYTES_PER_INTERACTION if kernel == "numpy" else 128 + 12 * rank


def warm_factors(initial: FactorModel | EarlierModel, ids: Future, prepared: PreparedData, model_cfg: ModelConfig):
    """(user rows, item rows) for today's ids (`ids`: id_maps' result) from `initial`, new ids seeded as
    a cold start seeds them, and the kept/new/dropped counts with the seconds the warm start added (the
    earlier rows as `initial` gives them on the driver, from its Parquet when saved, and their
    reconciliation: models/warm_start.py)."""
    cfg, rank, seed = model_cfg.wals, model_cfg.rank, model_cfg.seed
    today = ids.result()
    started = time.perf_counter()
    earlier = as_earlier(initial).rows(rank)
    fill_users, fill_items = cold_start(prepared.n_users, prepared.n_items, rank, cfg.init_stddev, seed)
    users, items, counts = aligned_rows(earlier, today, fill_users, fill_items)
    counts["seconds"] = round(time.perf_counter() - started, 3)
    return (users, items), counts


def cold_start(n_users: int, n_items: int, rank: int, stddev: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The seeded Gaussian (user rows, item rows) every engine and kernel starts from."""
    return (initial_rows(np.arange(n_users), rank, stddev, seed, 1),
            initial_rows(np.arange(n_items), rank, stddev, seed, 2))


def fit_interactions(data: Interactions, cfg: WalsConfig, rank: int, seed: int,
                     initial: tuple[np.ndarray, np.ndarray] | None = None,
                     kernel: str | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Driver-side WALS on COO interactions, from `initial` (user, item) factors when given, else from
    cold_start's: (user_factors, item_factors, metadata). kernel: numpy or tensorflow (default: by
    model.wals.kernel)."""
    kernel = kernel or driver_kernel(cfg.kernel)
    if kernel == "tensorflow":
        from recsys_spark.kernels import wals_tf as solver  # TensorFlow loads only when this kernel runs
    else:
        from recsys_spark.kernels import wals_cpu as solver
    if initial is None:
        initial = cold_start(data.n_users, data.n_items, rank, cfg.init_stddev, seed)

    foldin = foldin_parameters(data, cfg)
    conf = confidence(data.users, data.items, data.weights, foldin["confidence"], alpha=foldin["alpha"],
                      epsilon=foldin["epsilon"], bm25_k1=cfg.bm25_k1, bm25_b=cfg.bm25_b, item_idf=_idf(foldin),
                      mean_user_weight=foldin.get("bm25_mean_user_weight", 1.0))

    from recsys_spark.models.progress import LoopProgress  # here, beside the callback that uses it

    iterations = LoopProgress(cfg.iterations)

    def progress(entry):
        log.info("wals: iteration %d/%d loss %.6g (%.2fs), %s", entry["iteration"], cfg.iterations,
                 entry["loss"], entry["seconds"], iterations.step(entry["seconds"]))

    user_factors, item_factors, history = solver.fit(
        data.users, data.items, conf, data.n_users, data.n_items, rank, cfg.iterations, cfg.reg,
        foldin["unobserved_weight"], cfg.reg_exponent, cfg.cg_steps, cfg.init_stddev, seed, progress,
        initial=initial, tolerance=cfg.tolerance)
    metadata = model_metadata("wals", rank, rank, seed, cfg, history=history, foldin=foldin,
                              iterations_run=len(history), engine="driver", kernel=kernel)
    return user_factors, item_factors, metadata


def foldin_parameters(data: Interactions, cfg: WalsConfig) -> dict:
    """What fold-in needs to solve a new user's row exactly as training did (JSON-ready).

    confidence=auto is resolved here, once, from the training weights: the parameters hold the
    log transform it chose (with `weights` naming the weights' profile), never "auto"; an unset
    unobserved_weight is resolved from the data's density the same way.
    """
    return resolve_parameters(cfg, len(data.users), data.n_users, data.n_items,
                              lambda: auto_confidence(data.weights, cfg.alpha),
                              lambda: bm25_statistics(data.users, data.items, data.weights, data.n_users, data.n_items))


def resolve_parameters(cfg: WalsConfig, n_interactions: int, n_users: int, n_items: int, fit_auto, fit_bm25) -> dict:
    """foldin_parameters from the data's counts and two callables, so both engines share it:
    fit_auto() -> auto_confidence's dict, fit_bm25() -> bm25_statistics' (idf, mean user weight)."""
    w0 = cfg.unobserved_weight
    if w0 is None:
        w0 = auto_unobserved_weight(n_interactions, n_users, n_items)
        log.info("wals: unobserved weight %.4g for density %.3g%%", w0,
                 100.0 * n_interactions / max(n_users * n_items, 1))
    params = {
        "unobserved_weight": w0,
        "reg": cfg.reg,
        "reg_exponent": cfg.reg_exponent,
        "confidence": cfg.confidence,
        "alpha": cfg.alpha,
        "epsilon": cfg.epsilon,
        "bm25_k1": cfg.bm25_k1,
        "bm25_b": cfg.bm25_b,
    }
    if cfg.confidence == "auto":
        chosen = fit_auto()
        params.update(confidence=chosen["scheme"], alpha=chosen["alpha"], epsilon=chosen["epsilon"],
                      weights=chosen["profile"])
        log.info("wals: %s weights, confidence 1 + %.4g * log(1 + weight / %.4g) (mean %.3g)", chosen["profile"],
                 chosen["alpha"], chosen["epsilon"], 1 + cfg.alpha)
    if cfg.confidence == "bm25":
        idf, mean_user_weight = fit_bm25()
        params["bm25_idf"] = [round(float(v), 6) for v in idf]
        params["bm25_mean_user_weight"] = mean_user_weight
    return params


def _idf(foldin: dict) -> np.ndarray | None:
    return np.asarray(foldin["bm25_idf"]) if "bm25_idf" in foldin else None
