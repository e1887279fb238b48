"""spark-submit entry point: one SQL query through the run's catalog, rows printed.

    spark-submit jobs/sql.py "SELECT run_date, count(*) FROM recsys.user_recs GROUP BY run_date" \
        [--output DIR] [--conf FILE] [--set section.key=value ...] [--limit N]

Same options as `recsys-spark sql` (see --help).
"""

import sys

from recsys_spark.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["sql", *sys.argv[1:]]))
