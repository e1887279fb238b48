"""recsys-spark: nightly top-N recommendations and item similarity on Spark."""

__version__ = "0.1.0"
