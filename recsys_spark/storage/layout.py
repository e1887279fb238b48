"""Where everything of a run date lives under the output root, with every path checked to
stay under it (a run date or table name built to escape the root is rejected).

    OUTPUT/user_recs/run_date=D        the table partitions SQL reads
    OUTPUT/item_similar/run_date=D
    OUTPUT/runs/run_date=D             the run's manifest as one row, with output.database (catalog.py)
    OUTPUT/_runs/D/.lock               one run of a date at a time
    OUTPUT/_runs/D/.staging-RUN        a run being written and audited (hidden: '.' and no '=')
    OUTPUT/_runs/D/RUN                 an audited run: tables, quarantine, model, manifest.json, _SUCCESS
    OUTPUT/_runs/D/current             the published run of the date (see publish.py)
    OUTPUT/_runs/D/prepared, model     working files of stage-by-stage runs
    OUTPUT/_runs/D/.stage              tables staged by `score` / `similar`, waiting for `publish`
"""

from __future__ import annotations

import datetime as dt
import posixpath
import re
import secrets
from dataclasses import dataclass

from recsys_spark.data.schema import ITEM_SIMILAR, RUN_DATE, RUNS_TABLE, USER_RECS
from recsys_spark.errors import UnsafePathError

QUARANTINE = "quarantine"
TABLES = (USER_RECS, ITEM_SIMILAR, RUNS_TABLE)  # the partitions a publish switches; runs only with output.database
MANIFEST = "manifest.json"
SUCCESS = "_SUCCESS"
CURRENT = "current"
RUNS = "_runs"
STAGING_PREFIX = ".staging-"

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")


def check_run_date(value: str) -> str:
    if not isinstance(value, str) or not _DATE.match(value):
        raise UnsafePathError(f"run date must be YYYY-MM-DD; got {value!r}")
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise UnsafePathError(f"run date must be a real YYYY-MM-DD date; got {value!r}") from None
    return value


def check_name(value: str) -> str:
    """A table name: lower-case letters, digits and '_' (also what SQL identifiers may use)."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise UnsafePathError(f"table name must match [a-z][a-z0-9_]*; got {value!r}")
    return value


def check_run_id(value: str) -> str:
    if not isinstance(value, str) or not _RUN_ID.match(value):
        raise UnsafePathError(f"not a run id: {value!r}")
    return value


def new_run_id() -> str:
    """A sortable unique run id: UTC timestamp plus 8 random hex digits."""
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(4)}"


def under(root: str, *parts: str) -> str:
    """`root/part/...`; each part must be a plain name (not empty, '.' or '..', no separators)."""
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\\" in part or "\x00" in part:
            raise UnsafePathError(f"path part {part!r} is not a plain name under {root}")
    return posixpath.join(root.rstrip("/") or "/", *parts)


@dataclass(frozen=True)
class DateLayout:
    """Paths of one run date under the output root."""
    root: str
    run_date: str

    def __post_init__(self):
        check_run_date(self.run_date)

    @property
    def runs(self) -> str:
        return under(self.root, RUNS, self.run_date)

    @property
    def lock(self) -> str:
        return under(self.runs, ".lock")

    @property
    def current(self) -> str:
        return under(self.runs, CURRENT)

    @property
    def prepared(self) -> str:
        return under(self.runs, "prepared")

    @property
    def model(self) -> str:
        return under(self.runs, "model")

    @property
    def pending(self) -> str:
        """Tables staged by the score and similar commands, waiting for `publish`."""
        return under(self.runs, ".stage")

    def table_root(self, table: str) -> str:
        return under(self.root, check_name(table))

    def partition(self, table: str) -> str:
        return under(self.table_root(table), f"{RUN_DATE}={self.run_date}")

    def staging(self, run_id: str) -> str:
        return under(self.runs, STAGING_PREFIX + check_run_id(run_id))

    def run(self, run_id: str) -> str:
        return under(self.runs, check_run_id(run_id))


def table_path(run_dir: str, table: str) -> str:
    """A table directory inside a run directory."""
    return under(run_dir, check_name(table))
