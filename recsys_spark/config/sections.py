"""The configuration's sections: every key named, typed and defaulted once (the model section in
config/model.py), field checks in each section's __post_init__, cross-field checks in
Config.validate. Built from YAML and overrides by config/loading.py.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from recsys_spark.config.checks import ConfigError, _check_choice, _check_min
from recsys_spark.config.model import MODEL_KINDS, ModelConfig, TrainConfig
from recsys_spark.config.search_space import DEFAULT_SPACES, check_spec, is_range
from recsys_spark.config.secrets import REDACTED, redact, shown
from recsys_spark.kernels.engines import PRECISIONS

SQL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")  # database and table names, as storage/layout.check_name
SPARK_CONF = {"spark.driver.memory": "4g", "spark.sql.shuffle.partitions": 8}  # spark.conf's default entries


@dataclass
class SparkConfig:
    master: Optional[str] = None  # None: spark-submit's --master, else local[*]
    app_name: str = "recsys-spark"
    checkpoint_dir: Optional[str] = None  # default: <output>/_checkpoints
    log_level: str = "WARN"  # Spark's log level; also TensorFlow's and py4j's (quiet at WARN and above)
    conf: dict = field(default_factory=lambda: dict(SPARK_CONF))  # any spark.* key; adds to these, null drops one

    def __post_init__(self):
        _check_choice("spark.log_level", self.log_level.upper(), LOG_LEVELS)
        for key, value in self.conf.items():
            where = f"spark.conf.{key}"
            if isinstance(value, (dict, list)) or value is None:
                raise ConfigError(f"{where} must be a string, number or boolean (write the whole Spark key, "
                                  f"e.g. spark.driver.memory: 4g); got {shown(where, value)}")
            if not key.startswith("spark."):
                raise ConfigError(f"{where}: spark.conf takes whole Spark keys such as spark.driver.memory or "
                                  "spark.hadoop.fs.s3a.endpoint; this one does not start with spark.")
            if value == REDACTED:
                raise ConfigError(f"{where} holds the redaction marker {REDACTED} of a recorded config: set its "
                                  f"real value (--set {where}=VALUE or in your own conf)")


@dataclass
class InputConfig:
    path: Optional[str] = None
    format: str = "auto"  # auto | csv | parquet | table
    delimiter: str = ","
    header: bool = True
    names: list = field(default_factory=list)  # column names for files without a header
    user_col: str = "user_id"
    item_col: str = "item_id"
    weight_col: Optional[str] = "weight"  # used when present; weight 1.0 otherwise
    ts_col: Optional[str] = "ts"  # used when present
    id_type: str = "auto"  # auto | string | long (CSV only; typed sources keep their type)
    quote: str = '"'  # CSV quote character (RFC 4180); '' turns quoting off
    escape: str = '"'  # escapes a quote inside quotes: '"' doubles it (RFC 4180, pandas, Excel), '\' precedes it
    multiline: bool = False  # CSV: quoted fields may hold line breaks (each file is then read by one task)
    glob: Optional[str] = None  # files read from an input directory; null: *.csv, *.tsv (+ .gz, .bz2) or *.parquet

    def __post_init__(self):
        _check_choice("input.format", self.format, ("auto", "csv", "parquet", "table"))
        _check_choice("input.id_type", self.id_type, ("auto", "string", "long"))
        if len(self.delimiter) != 1 and self.delimiter != "\\t":
            raise ConfigError(f"input.delimiter must be one character; got {self.delimiter!r}")
        if len(self.quote) > 1:
            raise ConfigError(f"input.quote must be one character, or '' for no quoting; got {self.quote!r}")
        if len(self.escape) != 1:
            raise ConfigError(f"input.escape must be one character (RFC 4180: '\"'); got {self.escape!r}")
        if self.glob is not None:
            if not self.glob.strip() or "/" in self.glob:
                raise ConfigError(f"input.glob must be a file-name pattern such as '*.csv' (no '/'); got {self.glob!r}")
            if self.format == "table":
                raise ConfigError("input.glob selects files of an input directory; a table has none: unset it")

    def file_glob(self, fmt: str) -> str:
        """The pattern of the file names read from an input directory of format `fmt` (csv or parquet)."""
        return self.glob or INPUT_GLOBS[fmt]


# Files an input directory is read from, by format, unless input.glob says otherwise (Hadoop glob
# syntax, matched against each file's name; Spark decompresses .gz and .bz2 by their extension).
INPUT_GLOBS = {
    "csv": "*.{csv,tsv,csv.gz,tsv.gz,csv.bz2,tsv.bz2}",
    "parquet": "*.parquet",
}


@dataclass
class PrepareConfig:
    min_user_interactions: int = 1
    min_item_interactions: int = 1

    def __post_init__(self):
        _check_min("prepare.min_user_interactions", self.min_user_interactions, 1)
        _check_min("prepare.min_item_interactions", self.min_item_interactions, 1)


@dataclass
class ScoreConfig:
    top_n: int = 10
    batch_users: int = 1024  # users scored together; memory per task ~ batch_users x block_items x 4 bytes
    block_items: int = 4096
    partitions: int = 0  # scoring tasks; 0: 4 per core of the cluster (spark.default.parallelism)
    precision: str = "auto"  # candidate GEMM: float32, bfloat16 (AMX CPUs; TF in each worker), auto; exact either way

    def __post_init__(self):
        _check_min("score.top_n", self.top_n, 1)
        _check_choice("score.precision", self.precision, PRECISIONS)
        _check_min("score.partitions", self.partitions, 0)
        _check_min("score.batch_users", self.batch_users, 1)
        _check_min("score.block_items", self.block_items, 1)


@dataclass
class SimilarConfig:
    enabled: bool = True
    top_k: int = 10

    def __post_init__(self):
        _check_min("similar.top_k", self.top_k, 1)


@dataclass
class RulesConfig:
    """Business rules on user_recs; io reads each table (CSV or Parquet, like input) by path."""
    exclude_items_path: Optional[str] = None  # column item_id: never recommended to anyone
    exclude_user_items_path: Optional[str] = None  # columns user_id, item_id: never to that user
    include_items_path: Optional[str] = None  # column item_id: only these may be recommended
    fallback: bool = True  # fill users without factors and short lists from item popularity


@dataclass
class OutputConfig:
    """Where the tables go and, with `database` set, the catalog that knows them (docs/publishing.md)."""
    path: str = "./warehouse"
    database: Optional[str] = None  # catalog database of the tables (created if missing); null: paths only
    user_recs_table: str = "user_recs"  # catalog table names, with database set
    item_similar_table: str = "item_similar"
    runs_table: str = "runs"  # one row per published date: run id, row counts, metrics, model
    metastore_dir: Optional[str] = None  # local embedded metastore (Derby) unless spark.conf names one; null: <path>/_catalog

    def __post_init__(self):
        names = {"output.database": self.database, "output.user_recs_table": self.user_recs_table,
                 "output.item_similar_table": self.item_similar_table, "output.runs_table": self.runs_table}
        for key, value in names.items():
            if value is not None and not (isinstance(value, str) and SQL_NAME.match(value)):
                raise ConfigError(f"{key} must be a SQL name matching [a-z][a-z0-9_]* (at most 64 characters); "
                                  f"got {value!r}")
        tables = [self.user_recs_table, self.item_similar_table, self.runs_table]
        if len(set(tables)) < len(tables):
            raise ConfigError(f"output.user_recs_table, item_similar_table and runs_table must differ; got {tables}")


@dataclass
class PublishConfig:
    """Write-audit-publish of a run date (see docs/publishing.md)."""
    mode: str = "auto"  # auto (= rename: real partition directories) | rename | pointer (symlinks, POSIX only)
    retention_days: int = 0  # dates older than the newest published date minus this are removed; 0 keeps all
    lock_stale_seconds: int = 900  # a lock not refreshed for this long (or whose process is gone) is reclaimed
    gate_metric: str = "ndcg@10"  # evaluation metric compared with the last published run
    max_metric_drop: float = 0.1  # refuse to publish when the metric falls by more than this fraction
    max_churn: Optional[float] = None  # refuse when user_recs churn (1 - mean top-N overlap) passes it; null: off
    umask: str = "027"  # octal, as the shell's umask: 27 and 027 both mean 027; must deny others read

    def __post_init__(self):
        self.umask = _octal_umask(self.umask)
        _check_choice("publish.mode", self.mode, ("auto", "pointer", "rename"))
        _check_min("publish.retention_days", self.retention_days, 0)
        _check_min("publish.lock_stale_seconds", self.lock_stale_seconds, 1)
        if not 0.0 <= self.max_metric_drop < 1.0:
            raise ConfigError(f"publish.max_metric_drop must be in [0, 1); got {self.max_metric_drop!r}")
        if self.max_churn is not None and not 0.0 <= self.max_churn <= 1.0:
            raise ConfigError(f"publish.max_churn must be a fraction in [0, 1] or null (off); got {self.max_churn!r}")
        metric, sep, k = self.gate_metric.partition("@")
        if metric not in RANKING_METRICS or not sep or not k.isdigit():
            raise ConfigError(f"publish.gate_metric must be <metric>@<k> with metric one of "
                              f"{', '.join(RANKING_METRICS)}; got {self.gate_metric!r}")

    @property
    def umask_bits(self) -> int:
        """publish.umask as a number for os.umask (0o027 for "027")."""
        return int(self.umask, 8)


def _octal_umask(value: str) -> str:
    """A umask as three octal digits: digits are octal whether written 027, 27, 0027 or 0o27 (as the
    shell's umask reads them); digits 8 or 9 and a umask that lets others read are rejected."""
    text = str(value).strip().lower()
    digits = text[2:] if text.startswith("0o") else text
    if not digits or len(digits) > 4 or any(c not in "01234567" for c in digits) or (len(digits) == 4 and digits[0] != "0"):
        raise ConfigError(f"publish.umask must be an octal umask such as 027 (digits 0-7, as for the shell's "
                          f"umask); got {value!r}")
    digits = digits[-3:].rjust(3, "0")
    if int(digits[2]) < 4:
        raise ConfigError(f"publish.umask must deny others read (last digit 4-7, e.g. 027); got {value!r}")
    return digits


LOG_LEVELS = ("ALL", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF")
RANKING_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "mrr")
SPLIT_KINDS = ("random", "last_n", "time")


@dataclass
class EvaluateConfig:
    """Hold-out evaluation: how to split, which models to compare, at which cut-offs."""
    enabled: bool = False  # the nightly run also evaluates and records metrics in the manifest
    split: str = "random"  # random | last_n | time
    fraction: float = 0.2  # random: share of each user's interactions held out
    min_history: int = 5  # random / last_n: users with fewer interactions stay whole in train
    n: int = 1  # last_n: interactions held out per user (latest by ts)
    cutoff: Optional[str] = None  # time: interactions at or after it are test (epoch seconds or ISO date)
    seed: int = 42
    ks: list = field(default_factory=lambda: [1, 5, 10, 20])
    models: list = field(default_factory=list)  # model kinds; empty: model.kind and popularity
    relevance_threshold: Optional[float] = None  # test rows with a lower weight are not relevant

    def __post_init__(self):
        _check_choice("evaluate.split", self.split, SPLIT_KINDS)
        if not 0.0 < self.fraction < 1.0:
            raise ConfigError(f"evaluate.fraction must be between 0 and 1 (exclusive); got {self.fraction!r}")
        _check_min("evaluate.min_history", self.min_history, 2)
        _check_min("evaluate.n", self.n, 1)
        self.ks = sorted({_positive_int("evaluate.ks", k) for k in self.ks})
        if not self.ks:
            raise ConfigError("evaluate.ks must list at least one cut-off, e.g. [1, 5, 10, 20]")
        for kind in self.models:
            _check_choice("evaluate.models", kind, MODEL_KINDS)


@dataclass
class TuneConfig:
    """Search over conf keys on a validation split carved from the evaluate train split (nightly: in `run`)."""
    method: str = "grid"  # grid | random (`trials` points drawn from the grid) | halving (successive halving)
    params: dict = field(default_factory=dict)  # conf key -> values [..] or range {low, high, log}; halving: {} = default space
    trials: int = 10  # random: points drawn; halving: points sampled for the first rung
    objective: str = "ndcg@10"  # <ranking metric>@<k>, maximised
    validation_cutoff: Optional[str] = None  # time split only: the cut-off inside train
    nightly: bool = False  # `run` tunes model.kind by halving on the day's data when its tuned parameters are stale
    max_age_days: int = 7  # tuned parameters serve the run dates before tuned_on + this; 0: tune every run
    budget_seconds: float = 600.0  # halving starts no trial after this many seconds of tuning
    eta: int = 3  # halving keeps the best 1/eta of each rung and gives them eta times the resource
    min_gain_se: float = 2.0  # halving: the winner replaces the configured values only if its per-user gain on validation passes this many standard errors (for one challenger; more for many, Bonferroni); 0: the best wins

    def __post_init__(self):
        _check_choice("tune.method", self.method, TUNE_METHODS)
        _check_min("tune.trials", self.trials, 1)
        _check_min("tune.max_age_days", self.max_age_days, 0)
        _check_min("tune.budget_seconds", self.budget_seconds, 0.0, strict=True)
        _check_min("tune.eta", self.eta, 2)
        _check_min("tune.min_gain_se", self.min_gain_se, 0.0)
        for key, spec in self.params.items():
            check_spec(key, spec)
            if is_range(spec) and self.method != "halving" and not self.nightly:
                raise ConfigError(f"tune.params.{key} is a range, which only tune.method=halving samples; "
                                  "give a list of values for grid or random")
        metric, sep, k = self.objective.partition("@")
        if metric not in RANKING_METRICS or not sep or not k.isdigit() or int(k) < 1:
            raise ConfigError(f"tune.objective must be <metric>@<k> with metric one of "
                              f"{', '.join(RANKING_METRICS)}; got {self.objective!r}")


TUNE_METHODS = ("grid", "random", "halving")


def _positive_int(key: str, value: Any) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise ConfigError(f"{key} must hold positive integers; got {value!r}") from None
    if number < 1:
        raise ConfigError(f"{key} must hold positive integers; got {value!r}")
    return number


@dataclass
class Config:
    spark: SparkConfig = field(default_factory=SparkConfig)
    input: InputConfig = field(default_factory=InputConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    similar: SimilarConfig = field(default_factory=SimilarConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def to_dict(self) -> dict:
        """Every key and value, secrets included: for building configs, never for recording them."""
        return dataclasses.asdict(self)

    def to_record(self) -> dict:
        """to_dict with secret-looking keys redacted: what a manifest, a tuned conf or a log may show."""
        return redact(self.to_dict())

    def validate(self) -> "Config":
        """Checks across fields and sections (each field checks itself when built)."""
        kinds = [self.model.kind, *self.evaluate.models]
        for kind in dict.fromkeys(kinds):
            if self.model.uses_item_features(kind) and not self.model.content.features_path:
                what = ("model.kind=content" if kind == "content" else "model.two_tower.item_features")
                raise ConfigError(f"{what} needs item features: set model.content.features_path (CSV/Parquet "
                                  "with item_id and features, or MovieLens u.item)"
                                  + (" or turn item_features off" if kind == "two_tower" else ""))
        self.tune.__post_init__()
        halving = self.tune.nightly or self.tune.method == "halving"
        if halving and not self.tune.params and self.model.kind not in DEFAULT_SPACES:
            raise ConfigError(f"tune: model.kind={self.model.kind} has no default search space; give one in "
                              "tune.params, e.g. --set 'tune.params={model.rank: [32, 64]}'")
        return self


