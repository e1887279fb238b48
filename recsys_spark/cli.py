"""The `recsys-spark` command: the nightly run and its stages one by one."""

from __future__ import annotations

import argparse
import logging
import sys

from recsys_spark.config import ConfigError, load_config

STAGES = {
    "run": "the whole nightly pipeline: prepare, train, score, similar, write",
    "prepare": "validate, clean, aggregate, filter and index the input; keep it for the next stages",
    "train": "train the model named by model.kind on the prepared data of the run date",
    "score": "write top-N recommendations for every user (user_recs)",
    "similar": "write the top-K similar items of every item (item_similar)",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys-spark",
        description="Nightly top-N recommendations and item similarity on Spark.",
        epilog="Tables land in OUTPUT/user_recs/run_date=YYYY-MM-DD and OUTPUT/item_similar/run_date=YYYY-MM-DD.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in STAGES.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name in ("run", "prepare"):
            cmd.add_argument("--input", help="interactions: CSV/TSV file or directory, Parquet, or a table name "
                                             "(default: input.path from the config)")
        cmd.add_argument("--output", help="output directory (default: output.path from the config, ./warehouse)")
        cmd.add_argument("--run-date", help="YYYY-MM-DD partition to write (default: today, UTC)")
        if name in ("score", "similar"):
            cmd.add_argument("--model", help="directory of a saved model (default: the run date's model)")
        cmd.add_argument("--conf", help="YAML config file (default: built-in defaults, as in conf/local.yaml)")
        cmd.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                         help="override one config key, e.g. --set model.kind=wals --set score.top_n=20 (repeatable)")
        cmd.add_argument("--quiet", action="store_true", help="log warnings only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from recsys_spark import pipeline

    try:
        cfg = load_config(args.conf, args.overrides)
        run_date = pipeline.parse_run_date(args.run_date)
    except (ConfigError, ValueError) as exc:
        print(f"recsys-spark: error: {exc}", file=sys.stderr)
        return 2
    output = (args.output or cfg.output.path).rstrip("/")
    from recsys_spark.session import build_session
    from recsys_spark.io import InputError
    from recsys_spark.prepare import PrepareError

    spark = build_session(cfg.spark)
    paths = pipeline.RunPaths(output, run_date)
    try:
        if args.command == "run":
            summary = pipeline.run_nightly(spark, cfg, args.input, output, run_date)
        elif args.command == "prepare":
            summary = pipeline.stage_prepare(spark, cfg, args.input, paths)
        elif args.command == "train":
            summary = pipeline.stage_train(spark, cfg, paths)
        elif args.command == "score":
            summary = pipeline.stage_score(spark, cfg, paths, args.model)
        else:
            summary = pipeline.stage_similar(spark, cfg, paths, args.model)
    except (InputError, PrepareError, FileNotFoundError) as exc:
        print(f"recsys-spark: error: {exc}", file=sys.stderr)
        return 1
    print_summary(summary)
    return 0


def print_summary(summary) -> None:
    paths = summary.paths
    print(f"\nrun_date {paths.run_date}, output {paths.output}")
    for table, rows in summary.counts.items():
        print(f"  {table:<14} {rows:>12,} rows  {paths.output}/{table}/run_date={paths.run_date}"
              if table in ("user_recs", "item_similar") else f"  {table:<14} {rows:>12,}")
    if summary.timings:
        print("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in summary.timings.items()))
    if "user_recs" in summary.counts:
        print("query them with Spark SQL, e.g.:\n"
              f"  SELECT user_id, rank, item_id, score FROM parquet.`{paths.output}/user_recs` "
              f"WHERE run_date = '{paths.run_date}' ORDER BY user_id, rank LIMIT 20")


if __name__ == "__main__":
    sys.exit(main())
