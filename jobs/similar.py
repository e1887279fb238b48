"""spark-submit entry point: the similar stage.

    spark-submit jobs/similar.py --output DIR [--run-date YYYY-MM-DD] [--conf FILE] [--set section.key=value ...]

Same options as `recsys-spark similar` (see --help).
"""

import sys

from recsys_spark.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["similar", *sys.argv[1:]]))
