"""spark-submit entry point: finish a publish that was killed half-way, remove leftovers of failed runs.

    spark-submit jobs/clean.py --output DIR [--run-date YYYY-MM-DD] [--conf FILE] [--set section.key=value ...]

Same options as `recsys-spark clean` (see --help); without --run-date, every date of the output.
"""

import sys

from recsys_spark.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["clean", *sys.argv[1:]]))
