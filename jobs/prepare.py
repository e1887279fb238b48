"""spark-submit entry point: the prepare stage.

    spark-submit jobs/prepare.py --input PATH --output DIR [--run-date YYYY-MM-DD] [--conf FILE] [--set section.key=value ...]

Same options as `recsys-spark prepare` (see --help).
"""

import sys

from recsys_spark.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
