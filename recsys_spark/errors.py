"""Every error a user can act on, with the exit code the CLI returns for it.

The CLI catches `UserError` once and prints its one-sentence message; anything else is a bug
and keeps its traceback. Each class also derives from the builtin it replaces, so callers that
catch ValueError or FileNotFoundError keep working.
"""

from __future__ import annotations

# Exit codes (README "Exit codes", `recsys-spark --help`).
EXIT_INPUT = 1  # the input (or a file it names) cannot be used as it is
EXIT_CONFIG = 2  # bad arguments or configuration
EXIT_AUDIT = 3  # audit or row accounting failed; nothing published
EXIT_GATE = 4  # the quality gate refused the run; yesterday's tables stay
EXIT_LOCKED = 5  # another run of the date holds its lock
EXIT_OUTPUT = 6  # the output cannot be written (permissions, read-only or full file system)


class UserError(Exception):
    """An error the user can fix; `exit_code` is what the CLI returns."""
    exit_code = EXIT_INPUT


class ConfigError(UserError, ValueError):
    """A configuration key or value is wrong; the message names the key."""
    exit_code = EXIT_CONFIG


class UnsafePathError(UserError, ValueError):
    """An output path or run date that would escape the output root or name a system directory."""
    exit_code = EXIT_CONFIG


class InputError(UserError, ValueError):
    """The input cannot be read as interactions."""


class NotFoundError(UserError, FileNotFoundError):
    """Something a stage needs (prepared data, a model, a file) is not where it should be."""


class PrepareError(UserError, ValueError):
    """The input cannot be prepared (e.g. more distinct ids than an int32 index holds)."""


class TooFewIdsError(UserError, ValueError):
    """Fewer than two users or two items are left to train on: nothing could be recommended."""


class SplitError(UserError, ValueError):
    """The evaluation split cannot be made as configured."""


class EvaluationError(UserError, ValueError):
    """The evaluation cannot be computed from what it was given."""


class ItemFeaturesError(UserError, ValueError):
    """The item features file cannot be used as it is."""


class ConfidenceError(UserError, ValueError):
    """Weights turn into confidences that are not finite in float32."""


class FoldInError(UserError, ValueError):
    """New users cannot be folded into the model."""


class ModelError(UserError, ValueError):
    """A saved model cannot be used as it is (e.g. non-finite or mismatched factors)."""


class DriverMemoryError(UserError, MemoryError):
    """The data would not fit the driver budget (train.driver_max_bytes) of a driver trainer."""


class RulesError(UserError, ValueError):
    """A business-rule table cannot be applied."""


class AuditError(UserError, RuntimeError):
    """A staged table failed the audit; nothing is published."""
    exit_code = EXIT_AUDIT


class AccountingError(UserError, RuntimeError):
    """Rows read do not add up to rows used plus rows quarantined: a bug, so nothing is published."""
    exit_code = EXIT_AUDIT


class QualityGateError(UserError, RuntimeError):
    """The run's metric fell past publish.max_metric_drop, or its churn past publish.max_churn; the
    published tables stay."""
    exit_code = EXIT_GATE


class LockedError(UserError, RuntimeError):
    """Another live run holds the lock of this run date."""
    exit_code = EXIT_LOCKED


class OutputError(UserError, OSError):
    """The output (or the report directory, or the tuned conf's path) cannot be written."""
    exit_code = EXIT_OUTPUT


class SchemaDriftError(AuditError):
    """A staged table's columns differ from its catalog table's; nothing is published."""


class MetastoreBusyError(LockedError):
    """Another process holds the embedded (Derby) metastore, which admits one process at a time."""


class QueryError(UserError, ValueError):
    """`recsys-spark sql` got a query Spark cannot parse or resolve (e.g. an unknown table)."""
    exit_code = EXIT_CONFIG
