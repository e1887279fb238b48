"""How scoring and similarity tasks are laid out: how many, and the threads and precision each uses."""

from __future__ import annotations

from pyspark import TaskContext

from recsys_spark.config import ScoreConfig
from recsys_spark.kernels.blas import limit_blas_threads
from recsys_spark.kernels.engines import resolve_precision, set_tf_threads


def scoring_partitions(spark, cfg: ScoreConfig) -> int:
    """score.partitions, or 4 tasks per core of the cluster (local[2]: 8)."""
    return cfg.partitions or 4 * max(1, spark.sparkContext.defaultParallelism)


def worker_threads() -> int:
    """Cores of the running Spark task (1 outside a task)."""
    context = TaskContext.get()
    return max(1, int(context.cpus())) if context is not None else 1


def worker_precision(precision: str) -> str:
    """Resolve score.precision on this worker's CPU and size the BLAS / TF thread pools to the task."""
    resolved = resolve_precision(precision)
    limit_blas_threads(worker_threads())
    if resolved == "bfloat16":
        set_tf_threads(worker_threads())
    return resolved
