"""Configuration of the model section: model.kind, rank, seed and one dataclass per trainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from recsys_spark.config.checks import _check_choice, _check_fraction, _check_min
from recsys_spark.errors import ConfigError
from recsys_spark.kernels.confidence import CONFIDENCE_SCHEMES

WALS_ENGINES = ("auto", "driver", "spark")
WALS_KERNELS = ("auto", "numpy", "tensorflow")


@dataclass
class AlsConfig:
    """Spark ML ALS (distributed)."""
    implicit: bool = True
    confidence: str = "auto"  # implicit: auto (rating column = log(1 + w / median w), mean 1) | linear (raw weights)
    max_iter: int = 15
    reg_param: float = 0.05
    alpha: float = 10.0
    checkpoint_interval: int = 5
    nonnegative: bool = False
    num_blocks: Optional[int] = None  # user and item blocks; None: Spark's default parallelism

    def __post_init__(self):
        _check_choice("model.als.confidence", self.confidence, ("auto", "linear"))
        _check_min("model.als.max_iter", self.max_iter, 1)
        _check_min("model.als.reg_param", self.reg_param, 0.0)
        _check_min("model.als.alpha", self.alpha, 0.0)


@dataclass
class WalsConfig:
    """Weighted ALS, conjugate-gradient half-steps: on the driver (numpy or TensorFlow) or on the executors (engine)."""
    iterations: int = 15
    reg: float = 0.02  # row lambda = reg * (row count + unobserved_weight * other side) ** reg_exponent
    reg_exponent: float = 1.0  # 1: scaled as in "Revisiting iALS" (Rendle et al.); 0: constant reg
    unobserved_weight: Optional[float] = None  # weight of every unobserved entry; null: min(1, 4 sqrt(density))
    confidence: str = "auto"  # auto | linear | log | bm25: observed confidence 1 + alpha * f(weight)
    alpha: float = 2.0  # auto: the mean of alpha * f(weight), so binary data gets 1 + alpha
    epsilon: float = 1.0  # log scaling: 1 + alpha * log(1 + w / epsilon); auto uses the median weight
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    cg_steps: int = 3  # conjugate-gradient iterations per half-step (warm-started)
    init_stddev: float = 0.01
    tolerance: float = 1e-4  # stop when an iteration lowers the loss by less than this share; 0: always `iterations`
    engine: str = "auto"  # auto | driver | spark; auto: spark when the driver engine would pass train.driver_max_bytes
    kernel: str = "auto"  # driver engine: auto (tensorflow when TensorFlow sees a GPU, else numpy) | numpy | tensorflow
    block_interactions: int = 262144  # spark engine: nonzeros per block (task), ~70 + 4 x rank B each, + 24 x rank per row

    def __post_init__(self):
        _check_choice("model.wals.confidence", self.confidence, CONFIDENCE_SCHEMES)
        _check_min("model.wals.iterations", self.iterations, 1)
        _check_min("model.wals.cg_steps", self.cg_steps, 1)
        _check_min("model.wals.reg", self.reg, 0.0)
        _check_min("model.wals.reg_exponent", self.reg_exponent, 0.0)
        if self.unobserved_weight is not None:
            _check_min("model.wals.unobserved_weight", self.unobserved_weight, 0.0, strict=True)
        _check_min("model.wals.alpha", self.alpha, 0.0)
        _check_min("model.wals.epsilon", self.epsilon, 0.0, strict=True)
        _check_min("model.wals.init_stddev", self.init_stddev, 0.0, strict=True)
        _check_min("model.wals.tolerance", self.tolerance, 0.0)
        _check_choice("model.wals.engine", self.engine, WALS_ENGINES)
        _check_choice("model.wals.kernel", self.kernel, WALS_KERNELS)
        _check_min("model.wals.block_interactions", self.block_interactions, 1)


@dataclass
class MfConfig:
    """Biased matrix factorization by mini-batch Adam on observed ratings (explicit feedback)."""
    epochs: int = 40
    batch_size: int = 1024
    learning_rate: float = 0.005
    reg: float = 0.1  # L2 on factors and biases, per rating
    init_stddev: float = 0.05
    validation_fraction: float = 0.1  # 0 disables early stopping (then all epochs run)
    patience: int = 3

    def __post_init__(self):
        _check_min("model.mf.epochs", self.epochs, 1)
        _check_min("model.mf.batch_size", self.batch_size, 1)
        _check_min("model.mf.learning_rate", self.learning_rate, 0.0, strict=True)
        _check_min("model.mf.reg", self.reg, 0.0)
        _check_min("model.mf.init_stddev", self.init_stddev, 0.0)
        _check_min("model.mf.patience", self.patience, 1)
        _check_fraction("model.mf.validation_fraction", self.validation_fraction)


@dataclass
class TwoTowerConfig:
    """Two-tower retrieval on ids (optionally item features) with in-batch softmax."""
    epochs: int = 30
    batch_size: int = 1024
    learning_rate: float = 0.01
    temperature: float = 0.2  # logits are cosine / temperature
    popularity_correction: bool = True  # subtract log item frequency from in-batch logits (log-q)
    item_features: bool = False  # add a projection of model.content.features_path to the item tower
    validation_fraction: float = 0.1  # 0 disables early stopping
    patience: int = 3

    def __post_init__(self):
        _check_min("model.two_tower.epochs", self.epochs, 1)
        _check_min("model.two_tower.batch_size", self.batch_size, 2)
        _check_min("model.two_tower.learning_rate", self.learning_rate, 0.0, strict=True)
        _check_min("model.two_tower.temperature", self.temperature, 0.0, strict=True)
        _check_min("model.two_tower.patience", self.patience, 1)
        _check_fraction("model.two_tower.validation_fraction", self.validation_fraction)


@dataclass
class AutoencoderConfig:
    """Linear denoising autoencoder over user rows (input dropout marginalised analytically)."""
    epochs: int = 100
    batch_size: int = 256
    learning_rate: float = 0.01
    dropout: float = 0.75  # input dropout probability p
    reg: float = 3.0  # L2 on the item-item map, in units of the mean item's squared weight sum
    item_bias: bool = False  # learned item bias (a constant-1 user column); off: it hurt top-N on MovieLens
    binary: bool = True  # every interaction counts 1; false: rows carry log(1 + weight / median weight), mean 1
    validation_fraction: float = 0.0  # > 0: early stopping on that share of the interactions
    patience: int = 5

    def __post_init__(self):
        _check_min("model.autoencoder.epochs", self.epochs, 1)
        _check_min("model.autoencoder.batch_size", self.batch_size, 1)
        _check_min("model.autoencoder.learning_rate", self.learning_rate, 0.0, strict=True)
        _check_min("model.autoencoder.reg", self.reg, 0.0)
        _check_min("model.autoencoder.patience", self.patience, 1)
        _check_fraction("model.autoencoder.dropout", self.dropout)
        _check_fraction("model.autoencoder.validation_fraction", self.validation_fraction)


@dataclass
class EaseConfig:
    """EASE (Steck 2019): the closed-form item-item model B = I - P diag(1/diag(P)), P = (X^T X + lambda I)^-1."""
    reg: float = 6.0  # lambda = reg x mean interactions per item (X^T X's mean diagonal): carries over between data sets
    session_seconds: float = 300.0  # time scale of a session: a pair of a user's items adds exp(-|dt| / this); 0: off
    session_weight: float = 1.0  # weight of that session co-occurrence beside the plain count; 0: off
    heavy_channel: str = "auto"  # auto | on | off: a second input per item, "used above the median weight"; auto: heavy-tailed weights
    heavy_reg: float = 20.0  # lambda of the heavy-use inputs, in the units of `reg`

    def __post_init__(self):
        _check_min("model.ease.reg", self.reg, 0.0, strict=True)
        _check_min("model.ease.session_seconds", self.session_seconds, 0.0)
        _check_min("model.ease.session_weight", self.session_weight, 0.0)
        _check_choice("model.ease.heavy_channel", self.heavy_channel, HEAVY_CHANNEL_MODES)
        _check_min("model.ease.heavy_reg", self.heavy_reg, 0.0, strict=True)


HEAVY_CHANNEL_MODES = ("auto", "on", "off")


FEATURE_FORMATS = ("auto", "csv", "parquet", "movielens")


@dataclass
class ContentConfig:
    """Item vectors from item features; users as the normalised weighted sum of their items."""
    features_path: Optional[str] = None  # item_id + features (CSV, Parquet, or MovieLens u.item)
    features_format: str = "auto"  # auto | csv | parquet | movielens (auto: u.item, *.csv, else Parquet)
    normalize_items: bool = True  # L2-normalise item vectors, so scores are cosines

    def __post_init__(self):
        _check_choice("model.content.features_format", self.features_format, FEATURE_FORMATS)


@dataclass
class TrainConfig:
    driver_max_bytes: int = 8 << 30  # driver memory a driver-side trainer may plan to use (WALS, numpy kernel: 64 B/interaction)


@dataclass
class ModelConfig:
    kind: str = "auto"  # auto: ease when its items x items matrices fit train.driver_max_bytes, else wals
    rank: int = 64
    seed: int = 42
    warm_start: str = field(default="auto", metadata={"booleans": ("off", "on")})  # off | auto | on (README, Warm start)
    als: AlsConfig = field(default_factory=AlsConfig)
    wals: WalsConfig = field(default_factory=WalsConfig)
    mf: MfConfig = field(default_factory=MfConfig)
    two_tower: TwoTowerConfig = field(default_factory=TwoTowerConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    content: ContentConfig = field(default_factory=ContentConfig)
    ease: EaseConfig = field(default_factory=EaseConfig)

    def __post_init__(self):
        _check_choice("model.kind", self.kind, MODEL_KINDS)
        _check_min("model.rank", self.rank, 1)
        _check_choice("model.warm_start", self.warm_start, WARM_START_MODES)
        if self.warm_start == "on" and self.kind not in WARM_START_KINDS + ("auto",):  # auto: when it trains wals
            raise ConfigError(f"model.warm_start=on needs model.kind {' or '.join(WARM_START_KINDS)} (got {self.kind}); "
                              "set model.warm_start to auto or off")

    def uses_item_features(self, kind: str | None = None) -> bool:
        """Whether training `kind` (default model.kind) reads model.content.features_path."""
        kind = kind or self.kind
        return kind == "content" or (kind == "two_tower" and self.two_tower.item_features)


WARM_START_MODES = ("off", "auto", "on")
WARM_START_KINDS = ("wals",)  # trainers that accept initial factors
MODEL_KINDS = ("auto", "als", "wals", "mf", "two_tower", "autoencoder", "content", "ease", "popularity")
