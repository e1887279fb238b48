"""Generated sample interactions written to one CSV or Parquet file (make run, benchmarks, scale tests)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from recsys_spark.data.sample_data import iter_interactions


def write_interactions(path: str | Path, fmt: str = "csv", **kwargs) -> Path:
    """Generate interactions (keyword arguments as iter_interactions) into one CSV or Parquet file."""
    path = Path(path)
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be csv or parquet; got {fmt!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    for i, frame in enumerate(iter_interactions(**kwargs)):
        if fmt == "csv":
            frame.to_csv(path, mode="w" if i == 0 else "a", header=i == 0, index=False)
        else:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    if writer is not None:
        writer.close()
    return path
