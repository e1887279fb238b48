"""One typed configuration object, built from a YAML file plus `section.key=value` overrides.

Every key is named, typed and defaulted once, in the section that owns it (config/sections.py;
the model section in config/model.py); config/loading.py builds and checks a Config, so a bad key
or value raises ConfigError naming the key before Spark starts. Callers import from here.
"""

from recsys_spark.config.checks import ConfigError  # noqa: F401
from recsys_spark.config.loading import (  # noqa: F401
    MAPPING_KEYS,
    build,
    key_parts,
    load_config,
    parse_override,
    parse_param,
    set_key,
    with_overrides,
)
from recsys_spark.config.model import (  # noqa: F401
    MODEL_KINDS,
    WARM_START_KINDS,
    WARM_START_MODES,
    AlsConfig,
    AutoencoderConfig,
    ContentConfig,
    EaseConfig,
    MfConfig,
    ModelConfig,
    TrainConfig,
    TwoTowerConfig,
    WalsConfig,
)
from recsys_spark.config.sections import (  # noqa: F401
    INPUT_GLOBS,
    LOG_LEVELS,
    RANKING_METRICS,
    SPARK_CONF,
    SPLIT_KINDS,
    SQL_NAME,
    TUNE_METHODS,
    Config,
    EvaluateConfig,
    InputConfig,
    OutputConfig,
    PrepareConfig,
    PublishConfig,
    RulesConfig,
    ScoreConfig,
    SimilarConfig,
    SparkConfig,
    TuneConfig,
)
