"""spark-submit entry point: the publish stage.

    spark-submit jobs/publish.py --output DIR [--run-date YYYY-MM-DD] [--conf FILE] [--set section.key=value ...]

Same options as `recsys-spark publish` (see --help).
"""

import sys

from recsys_spark.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["publish", *sys.argv[1:]]))
