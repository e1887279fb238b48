"""The `recsys-spark` command: the nightly run and its stages one by one."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from recsys_spark.app import stages, studies
from recsys_spark.app.nightly import run_nightly
from recsys_spark.app.query import run_sql
from recsys_spark.app.steps import RunPaths, parse_run_date, private_output, private_process
from recsys_spark.config import Config, parse_param
from recsys_spark.errors import (
    EXIT_AUDIT,
    EXIT_CONFIG,
    EXIT_GATE,
    EXIT_INPUT,
    EXIT_LOCKED,
    EXIT_OUTPUT,
    ConfigError,
    NotFoundError,
    UserError,
)
from recsys_spark.storage.readers import load_config_file
from recsys_spark.storage.writable import check_writable, output_error

STAGES = {
    "run": "the whole nightly pipeline: prepare, (tune, with tune.nightly), train, score, similar, write",
    "prepare": "validate, clean, aggregate, filter and index the input; keep it for the next stages",
    "train": "train the model named by model.kind on the prepared data of the run date",
    "score": "stage top-N recommendations for every user (user_recs); `publish` publishes them",
    "similar": "stage the top-K similar items of every item (item_similar); `publish` publishes them",
    "publish": "audit the tables `score` and `similar` staged for the run date (user_recs, and item_similar "
               "unless similar.enabled is false) and publish them in one step",
    "clean": "finish a publish that was killed half-way and remove what killed or failed runs left (staging "
             "directories, half-made pointers), for one --run-date or every date; published runs stay",
    "evaluate": "split the interactions, train every compared model (evaluate.models) on the train part, score the "
                "held-out users and write the metrics table (OUTPUT/metrics) and a Markdown report with plots",
    "tune": "search conf values on a validation split carved from the evaluate train split; "
            "write the best conf (YAML) and all trials",
    "sql": "run one Spark SQL query in a session configured like the run's (same catalog: with output.database "
           "set, e.g. SELECT run_date, count(*) FROM recsys.user_recs GROUP BY run_date) and print the rows",
}
NO_RUN_DATE = ("sql",)  # commands without --run-date


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys-spark",
        description="Nightly top-N recommendations and item similarity on Spark.",
        epilog="Tables land in OUTPUT/user_recs/run_date=YYYY-MM-DD and OUTPUT/item_similar/run_date=YYYY-MM-DD. "
               f"Exit codes: 0 done (published), {EXIT_INPUT} input unusable, {EXIT_CONFIG} bad arguments or "
               f"configuration, {EXIT_AUDIT} audit or row accounting failed (nothing published), {EXIT_GATE} quality "
               f"gate refused the run (yesterday's tables stay), {EXIT_LOCKED} another run of the date holds its lock "
               f"(or another process the embedded metastore), "
               f"{EXIT_OUTPUT} the output cannot be written (permissions, read-only or full file system).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in STAGES.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name == "sql":
            cmd.add_argument("query", help="the SQL text, e.g. \"SELECT * FROM recsys.runs ORDER BY run_date\"")
            cmd.add_argument("--limit", type=int, default=1000, help="print at most this many rows (default 1000)")
        if name in ("run", "prepare", "evaluate", "tune"):
            cmd.add_argument("--input", help="interactions: CSV/TSV file or directory, Parquet, or a table name "
                                             "(default: input.path from the config); of a directory only the files "
                                             "matching input.glob are read (default *.csv, *.tsv, *.parquet, ...)")
        if name == "score":
            cmd.add_argument("--input", help="with --model: new interactions to score with that saved model; users "
                                             "it has not seen get factors by fold-in, without retraining")
        cmd.add_argument("--output", help="output directory (default: output.path from the config, ./warehouse)")
        if name == "clean":
            cmd.add_argument("--run-date", help="YYYY-MM-DD date to clean (default: every date of the output)")
        elif name not in NO_RUN_DATE:
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
                         help="override one config key, e.g. --set model.kind=wals --set score.top_n=20, or one "
                              "Spark setting: --set spark.conf.spark.driver.memory=8g (repeatable)")
        cmd.add_argument("--quiet", action="store_true", help="log warnings only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    written: list[str] = []
    try:
        cfg, run_date = checked_arguments(args)
        paths = RunPaths((args.output or cfg.output.path).rstrip("/"), run_date)
        written = written_paths(args, cfg, paths)
        private_process(cfg)  # before the JVM starts: a local JVM and its workers inherit the umask
        from recsys_spark.app.session import build_session, catalog_conf

        spark = build_session(cfg.spark, catalog_conf(cfg, paths.output))
        private_output(spark, cfg, paths.output)
        for directory in probed_dirs(args, paths):  # before any expensive work
            check_writable(spark, directory)
        summary = run_command(spark, cfg, args, paths)
    except UserError as exc:  # one line and the documented exit code; anything else is a bug and keeps its trace
        return _fail(exc)
    except Exception as exc:
        error = output_error(exc, written)  # a write refused (permissions, read-only, full) is the user's to fix
        if error is None:
            raise
        return _fail(error)
    if summary is not None:
        print_summary(summary)
    return 0


def _fail(error: UserError) -> int:
    print(f"recsys-spark: error: {error}", file=sys.stderr, flush=True)
    return error.exit_code


def written_paths(args, cfg: Config, paths: RunPaths) -> list[str]:
    """Every place a command writes: the output, a checkpoint directory elsewhere, and evaluate's
    report directory or tune's best conf."""
    written = [paths.output, *([cfg.spark.checkpoint_dir] if cfg.spark.checkpoint_dir else [])]
    if args.command == "evaluate":
        written.append(studies.report_dir_of(paths, args.report_dir))
    if args.command == "tune":
        written.append(studies.best_conf_of(paths, args.best_conf))
    return written


def probed_dirs(args, paths: RunPaths) -> list[str]:
    """Where a command writes first, checked writable before it starts: the date's run directory,
    or the output and the directory of evaluate's report or tune's best conf."""
    if args.command == "evaluate":
        return [paths.output, studies.report_dir_of(paths, args.report_dir)]
    if args.command == "tune":
        return [paths.output, os.path.dirname(studies.best_conf_of(paths, args.best_conf)) or "."]
    if args.command in NO_RUN_DATE:  # writes nothing of the output (the embedded metastore writes its own)
        return []
    if paths.run_date is None:  # clean, every date
        return [paths.output]
    return [paths.layout.runs]


def checked_arguments(args) -> tuple[Config, str | None]:
    """The config and run date, with every check that needs no Spark done before it starts."""
    cfg = load_config_file(args.conf, args.overrides)
    no_date = args.command in NO_RUN_DATE or (args.command == "clean" and not args.run_date)
    run_date = None if no_date else parse_run_date(args.run_date)
    if args.command == "sql" and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1; got {args.limit}")
    if args.command == "score" and args.input and not args.model:
        raise NotFoundError("score --input needs --model DIR: the saved model to score the new input with")
    if args.command == "tune":
        from recsys_spark.evaluation.tune import trial_configs

        cfg.tune.params.update(parse_param(p) for p in args.params)
        cfg.validate()
        trial_configs(cfg)
    return cfg, run_date


def run_command(spark, cfg: Config, args, paths: RunPaths):
    if args.command == "run":
        return run_nightly(spark, cfg, args.input, paths.output, paths.run_date)
    if args.command == "prepare":
        return stages.stage_prepare(spark, cfg, args.input, paths)
    if args.command == "train":
        return stages.stage_train(spark, cfg, paths)
    if args.command == "score" and args.input:
        return stages.score_new_input(spark, cfg, paths, args.model, args.input)
    if args.command == "score":
        return stages.stage_score(spark, cfg, paths, args.model)
    if args.command == "similar":
        return stages.stage_similar(spark, cfg, paths, args.model)
    if args.command == "publish":
        return stages.stage_publish(spark, cfg, paths)
    if args.command == "clean":
        return stages.stage_clean(spark, cfg, paths.output, paths.run_date)
    if args.command == "sql":
        return run_sql(spark, args.query, args.limit)
    if args.command == "evaluate":
        return studies.run_evaluate(spark, cfg, args.input, paths, args.report_dir)
    return studies.run_tune(spark, cfg, args.input, paths, args.best_conf)


def print_summary(summary) -> None:
    """What a command made, printed last (flushed, so it stays under the log)."""
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
    tuned = summary.manifest.get("tuned")
    if tuned and "params" in tuned:
        how = "tuned this run" if tuned["tuned_now"] else f"reused, {tuned['age_days']} days old"
        print(f"tuned parameters of {tuned['tuned_on']} ({how}; validation {tuned['objective']} "
              f"{tuned['value']:.4f}): " + ", ".join(f"{k}={v}" for k, v in tuned["params"].items()))
    if summary.manifest.get("best"):
        print("best: " + ", ".join(f"{k}={v}" for k, v in summary.manifest["best"].items()))
    for path in summary.manifest.get("files") or []:
        print(f"wrote {path}")
    catalog = summary.manifest.get("catalog")
    if catalog and "user_recs" in summary.counts:
        print(f"catalog tables {', '.join(catalog.values())}; query them with `recsys-spark sql` and the same "
              f"settings, e.g.:\n  recsys-spark sql \"SELECT run_date, count(*) FROM {catalog['user_recs']} "
              f"GROUP BY run_date\"")
    elif "user_recs" in summary.counts:
        print("query them with Spark SQL, e.g.:\n"
              f"  SELECT user_id, rank, item_id, score FROM parquet.`{paths.output}/user_recs` "
              f"WHERE run_date = '{paths.run_date}' ORDER BY user_id, rank LIMIT 20")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
