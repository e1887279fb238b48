"""spark-submit entry point: the train stage.

    spark-submit jobs/train.py --output DIR [--run-date YYYY-MM-DD] [--conf FILE] [--set section.key=value ...]

Same options as `recsys-spark train` (see --help).
"""

import sys

from recsys_spark.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
