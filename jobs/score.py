"""spark-submit entry point: the score stage.

    spark-submit jobs/score.py --output DIR [--run-date YYYY-MM-DD] [--conf FILE] [--set section.key=value ...]

Same options as `recsys-spark score` (see --help).
"""

import sys

from recsys_spark.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
