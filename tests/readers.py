"""What real clients see of a published table: Spark SQL, pyarrow datasets and DuckDB, each reading
the table root by path as a SQL consumer would."""

import os


def visible_counts(spark, root, date, readers=("spark", "pyarrow", "duckdb")) -> dict:
    """{reader: {table: rows of the date}} as each client reads the table root by path."""
    import duckdb
    import pyarrow.dataset as ds

    seen = {}
    for reader in readers:
        for table in ("user_recs", "item_similar"):
            path = f"{root}/{table}"
            if not os.path.isdir(path):
                rows = 0
            elif reader == "spark":
                rows = spark.read.parquet(path).filter(f"run_date = '{date}'").count()
            elif reader == "pyarrow":
                data = ds.dataset(path, format="parquet", partitioning="hive")
                rows = data.to_table(filter=ds.field("run_date").cast("string") == date).num_rows
            else:
                query = (f"SELECT count(*) FROM read_parquet('{path}/**/*.parquet', hive_partitioning=true) "
                         f"WHERE CAST(run_date AS VARCHAR) = '{date}'")
                try:
                    rows = duckdb.connect().execute(query).fetchall()[0][0]
                except duckdb.IOException:  # no files at all
                    rows = 0
            seen.setdefault(reader, {})[table] = rows
    return seen
