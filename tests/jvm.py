"""JVM options and Spark SQL settings of the test session's driver and of the commands tests run in
subprocesses.

Most of a short-lived Spark JVM's first 20 seconds go to loading and verifying Spark's classes. A
dynamic class-data-sharing archive (JDK 13+, AppCDS) of the classes the tests load, kept per checkout
(.pytest_cache, `make clean` removes it) and per JDK and pyspark, halves that. The first test session
of a checkout records it as it goes: one worker's session JVM (`recording_archive`) writes it as it
exits, ~10 s after its last test (in the background: pytest does not wait for it), and the JVMs started
after that map it. A JVM that cannot use it (another JDK or class path, e.g. spark-submit's launcher)
runs as before, silently. It changes nothing a job computes.
"""

import hashlib
import os
import shutil
from pathlib import Path

# The C1 JIT alone: test jobs are many and tiny, and C2 spent a third of the JVM's CPU compiling
# Spark's planner for them; no effect on what the jobs compute.
JIT = "-XX:TieredStopAtLevel=1"
# The serial collector: on two cores G1's concurrent threads and write barriers cost more than they
# save on the test JVMs' small, short-lived heaps. JVM CPU of a small nightly run in a warm session
# (median of runs 3-7), G1 against serial alternated three times on 2026-12-07: 10.3/10.9/9.4 s
# against 8.7/8.3/8.9 s. A young generation of 512 MB from the start: fewer, no dearer young
# collections (below). The collector changes nothing a job computes.
GC = "-XX:+UseSerialGC -Xmn512m"
# Tungsten's memory page of the sessions the tests start. Spark sizes it from the heap (up to 64 MB;
# a 1 GB driver's were 32 MB) and gives every broadcast hash relation and hash aggregation a whole
# page, however few its rows. The driver keeps broadcasts until its context cleaner frees them, so the
# test JVMs filled their old generation and ran full collections of a large live set. `make test` on
# 2026-12-08, the two session JVMs' collector counters summed: 73 full and 269 young collections,
# 52.5 s, with Spark's page; 10 full and 903 young, 19.5 s, with 1 MB; 13 full and 303 young, 14.2 s,
# adding -Xmn512m. Pages only hold rows: nothing a job computes changes.
PAGE_CONF = {"spark.buffer.pageSize": "1m"}
QUIET_CDS = "-Xlog:cds=off -Xlog:cds+dynamic=off"  # no archive warnings on stdout (spark-submit parses it)
ARCHIVE_DIR = Path(__file__).resolve().parents[1] / ".pytest_cache" / "jvm-class-archive"


def _archive() -> Path | None:
    """This JDK's and pyspark's archive path (whether made or not); None without java."""
    java = _java()
    if java is None:
        return None
    import pyspark

    jars = sorted(os.listdir(os.path.join(os.path.dirname(pyspark.__file__), "jars")))
    key = hashlib.sha256(repr((java, os.stat(java).st_mtime, pyspark.__version__, jars)).encode()).hexdigest()[:16]
    return ARCHIVE_DIR / f"spark-{key}.jsa"


# Spark SQL settings of the test session and of the commands tests run in subprocesses. Test jobs
# are many and tiny: adaptive execution doubles their Spark jobs, and compiling generated code (Janino,
# whose class look-ups scan every jar of pyspark) costs more than it saves. With these a small nightly
# run needs ~30% less JVM CPU; Spark requires the interpreted and generated paths to give the same
# results, so nothing a job computes changes. The cluster test (tests/test_cluster.py) keeps Spark's own.
SQL_CONF = {"spark.sql.adaptive.enabled": "false", "spark.sql.codegen.wholeStage": "false",
            "spark.sql.codegen.factoryMode": "NO_CODEGEN"}


def sql_conf_settings() -> list:
    """SQL_CONF as `recsys-spark` command-line settings (--set spark.conf.KEY=VALUE ...)."""
    return [arg for key, value in SQL_CONF.items() for arg in ("--set", f"spark.conf.{key}={value}")]


# JDK 17-19: no sweeping of the code cache. A test JVM keeps compiling new code for Spark's many small
# queries, and its sweeper thread spent ~7% of the JVM's CPU evicting it again (per-thread CPU of a warm
# session; JVM CPU per small nightly run 8.6-9.6 s with it, 7.1-7.9 s without). The cache reserved is
# made large enough that it never fills. JDK 20 removed the sweeper, and the option with it.
NO_SWEEPER = "-XX:-UseCodeCacheFlushing -XX:ReservedCodeCacheSize=512m"


def _java_major(java: str) -> int | None:
    """The feature version of the JDK of `java` (its `release` file), or None when unknown."""
    try:
        release = Path(java).resolve().parents[1] / "release"
        for line in release.read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                version = line.split("=", 1)[1].strip('"')
                return int(version.split(".")[1] if version.startswith("1.") else version.split(".")[0])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _java() -> str | None:
    java = shutil.which("java", path=os.path.join(os.environ["JAVA_HOME"], "bin")) if os.environ.get("JAVA_HOME") \
        else shutil.which("java")
    return None if java is None else os.path.realpath(java)


# The first bytes of a finished dynamic archive. The JVM writes them last (after ~10 s of preparing, a
# fraction of a second of writing), so a file that starts with them is whole.
DYNAMIC_ARCHIVE_MAGIC = bytes.fromhex("a8ab0bf0")  # 0xf00baba8, little-endian
ABANDONED = 3600  # seconds after which an unfinished recording is taken for a killed JVM's


def _finished(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(DYNAMIC_ARCHIVE_MAGIC)) == DYNAMIC_ARCHIVE_MAGIC
    except OSError:
        return False


def _settle_recordings(archive: Path) -> bool:
    """Move a finished recording into place and remove abandoned ones; True while one is still being
    written (its JVM is preparing the archive, or was killed less than ABANDONED seconds ago)."""
    import time

    pending = False
    for partial in archive.parent.glob(f".{archive.name}.*"):
        try:
            if _finished(partial):
                os.replace(partial, archive)
            elif time.time() - partial.stat().st_mtime > ABANDONED:
                partial.unlink()
            else:
                pending = True
        except OSError:
            pass  # another process settled it first
    return pending


def recording_archive() -> Path | None:
    """Where a session JVM should record the archive (`java_options(record=...)`) as it exits: a file of
    its own beside the archive, which the next `java_options` moves into place once it is finished. None
    when the archive exists, a recording is under way, or there is no java."""
    archive = _archive()
    if archive is None or archive.exists():
        return None
    ARCHIVE_DIR.mkdir(parents=True, exist_ok=True)
    if _settle_recordings(archive) or archive.exists():
        return None
    return archive.with_name(f".{archive.name}.{os.getpid()}")


def java_options(record: Path | None = None) -> str:
    """The options for a test JVM: the C1 JIT, no code-cache sweeper (JDK 17-19), the serial
    collector with a 512 MB young generation, and the class archive when it was made (or, with
    `record`, recording it there)."""
    java = _java()
    major = None if java is None else _java_major(java)
    base = f"{JIT} {NO_SWEEPER} {GC}" if major is not None and major < 20 else f"{JIT} {GC}"
    if record is not None:
        return f"{base} -XX:ArchiveClassesAtExit={record} {QUIET_CDS}"
    archive = _archive()
    if archive is not None and not archive.exists() and ARCHIVE_DIR.is_dir():
        _settle_recordings(archive)
    if archive is None or not archive.exists():
        return base
    return f"{base} -XX:SharedArchiveFile={archive} {QUIET_CDS}"
