"""spark-submit entry point: the whole nightly pipeline.

    spark-submit jobs/nightly.py --input PATH --output DIR [--run-date YYYY-MM-DD] [--conf FILE] [--set section.key=value ...]

Same options as `recsys-spark run` (see --help).
"""

import sys

from recsys_spark.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
