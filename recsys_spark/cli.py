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
    "score": "stage top-N recommendations for every user (user_recs); the date is published once "
             "user_recs and item_similar are both staged",
    "similar": "stage the top-K similar items of every item (item_similar); the date is published once "
               "user_recs and item_similar are both staged",
    "evaluate": "split the interactions, train every compared model (evaluate.models) on the train part, score the "
                "held-out users and write the metrics table (OUTPUT/metrics) and a Markdown report with plots",
    "tune": "search conf values on a validation split carved from the evaluate train split; "
            "write the best conf (YAML) and all trials",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys-spark",
        description="Nightly top-N recommendations and item similarity on Spark.",
        epilog="Tables land in OUTPUT/user_recs/run_date=YYYY-MM-DD and OUTPUT/item_similar/run_date=YYYY-MM-DD. "
               "Exit codes: 0 done (published), 1 input unusable, 2 bad arguments or configuration, 3 audit or "
               "row accounting failed (nothing published), 4 quality gate refused the run (yesterday's tables "
               "stay), 5 another run of the date holds its lock.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in STAGES.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name in ("run", "prepare", "evaluate", "tune"):
            cmd.add_argument("--input", help="interactions: CSV/TSV file or directory, Parquet, or a table name "
                                             "(default: input.path from the config)")
        if name == "score":
            cmd.add_argument("--input", help="with --model: new interactions to score with that saved model; users "
                                             "it has not seen get factors by fold-in, without retraining")
        cmd.add_argument("--output", help="output directory (default: output.path from the config, ./warehouse)")
        cmd.add_argument("--run-date", help="YYYY-MM-DD partition to write (default: today, UTC)")
        if name in ("score", "similar"):
            cmd.add_argument("--model", help="directory of a saved model (default: the run date's model)")
        if name == "evaluate":
            cmd.add_argument("--report-dir", help="local directory for report.md and its PNG plots "
                                                  "(default: ./reports/RUN_DATE)")
        if name == "tune":
            cmd.add_argument("--param", dest="params", action="append", default=[], metavar="KEY=V1,V2,...",
                             help="values to try for one conf key, e.g. --param model.rank=32,64 "
                                  "--param model.wals.reg=0.01,0.1 (repeatable; adds to tune.params)")
            cmd.add_argument("--best-conf", help="where to write the best conf as YAML "
                                                 "(default: OUTPUT/tune/best.yaml); trials go to OUTPUT/tune/trials")
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
        if args.command == "tune":
            from recsys_spark.tune import parse_param

            cfg.tune.params.update(parse_param(p) for p in args.params)
            cfg.tune.__post_init__()
    except (ConfigError, ValueError) as exc:
        print(f"recsys-spark: error: {exc}", file=sys.stderr)
        return 2
    output = (args.output or cfg.output.path).rstrip("/")
    from recsys_spark.session import build_session

    spark = build_session(cfg.spark)
    paths = pipeline.RunPaths(output, run_date)
    try:
        if args.command == "run":
            summary = pipeline.run_nightly(spark, cfg, args.input, output, run_date)
        elif args.command == "prepare":
            summary = pipeline.stage_prepare(spark, cfg, args.input, paths)
        elif args.command == "train":
            summary = pipeline.stage_train(spark, cfg, paths)
        elif args.command == "score" and args.input:
            from recsys_spark.refresh import score_new_input

            if not args.model:
                raise FileNotFoundError("score --input needs --model DIR: the saved model to score the new input with")
            summary = score_new_input(spark, cfg, paths, args.model, args.input)
        elif args.command == "score":
            summary = pipeline.stage_score(spark, cfg, paths, args.model)
        elif args.command == "similar":
            summary = pipeline.stage_similar(spark, cfg, paths, args.model)
        elif args.command == "evaluate":
            from recsys_spark.offline import run_evaluate

            summary = run_evaluate(spark, cfg, args.input, paths, args.report_dir)
        else:
            from recsys_spark.offline import run_tune

            summary = run_tune(spark, cfg, args.input, paths, args.best_conf)
    except Exception as exc:  # user errors get one line and an exit code; bugs keep their trace
        code = exit_code(exc)
        if code is None:
            raise
        print(f"recsys-spark: error: {exc}", file=sys.stderr)
        return code
    print_summary(summary)
    return 0


def exit_code(exc: Exception) -> int | None:
    """The exit status for an error the user can act on (None: a bug, let it raise)."""
    from recsys_spark.audit import AuditError, QualityGateError
    from recsys_spark.evaluation import EvaluationError
    from recsys_spark.foldin import FoldInError
    from recsys_spark.io import InputError
    from recsys_spark.item_features import ItemFeaturesError
    from recsys_spark.layout import UnsafePathError
    from recsys_spark.lock import LockedError
    from recsys_spark.models.driver_data import DriverMemoryError
    from recsys_spark.prepare import PrepareError
    from recsys_spark.quarantine import AccountingError
    from recsys_spark.kernels.confidence import ConfidenceError
    from recsys_spark.rules import RulesError
    from recsys_spark.split import SplitError

    codes = [
        ((ConfigError, UnsafePathError), 2),
        ((AuditError, AccountingError), 3),
        ((QualityGateError,), 4),
        ((LockedError,), 5),
        ((InputError, PrepareError, FileNotFoundError, SplitError, EvaluationError, FoldInError,
          ItemFeaturesError, DriverMemoryError, RulesError, ConfidenceError), 1),
    ]
    for classes, code in codes:
        if isinstance(exc, classes):
            return code
    return None


def print_summary(summary) -> None:
    paths = summary.paths
    print(f"\nrun_date {paths.run_date}, output {paths.output}")
    for table, rows in summary.counts.items():
        print(f"  {table:<14} {rows:>12,} rows  {paths.output}/{table}/run_date={paths.run_date}"
              if table in ("user_recs", "item_similar") else f"  {table:<14} {rows:>12,}")
    if summary.timings:
        print("stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in summary.timings.items()))
    run_id = summary.manifest.get("run_id")
    if run_id:
        current = f"{paths.output}/_runs/{paths.run_date}/current"
        print(f"published run {run_id}: manifest {current}/manifest.json, quarantine {current}/quarantine")
    for model, values in (summary.manifest.get("metrics") or {}).items():
        print(f"  {model:<12} " + "  ".join(f"{name} {value:.4f}" for name, value in values.items()
                                           if name.split("@")[0] in ("precision", "recall", "ndcg", "map")))
    if summary.manifest.get("best"):
        print("best: " + ", ".join(f"{k}={v}" for k, v in summary.manifest["best"].items()))
    for path in summary.manifest.get("files") or []:
        print(f"wrote {path}")
    if "user_recs" in summary.counts:
        print("query them with Spark SQL, e.g.:\n"
              f"  SELECT user_id, rank, item_id, score FROM parquet.`{paths.output}/user_recs` "
              f"WHERE run_date = '{paths.run_date}' ORDER BY user_id, rank LIMIT 20")


if __name__ == "__main__":
    sys.exit(main())
