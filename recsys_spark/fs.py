"""Small file-system helpers over Hadoop's FileSystem API, so the same code works on
local disk, HDFS and object stores wherever Spark runs."""

from __future__ import annotations

from pyspark.sql import SparkSession


def _path(spark: SparkSession, path: str):
    jvm = spark.sparkContext._jvm
    jpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = jpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return fs, jpath


def qualify(spark: SparkSession, path: str) -> str:
    """The fully qualified URI of `path` (file:/..., hdfs://...)."""
    fs, jpath = _path(spark, path)
    return str(fs.makeQualified(jpath).toString())


def exists(spark: SparkSession, path: str) -> bool:
    fs, jpath = _path(spark, path)
    return bool(fs.exists(jpath))


def delete(spark: SparkSession, path: str) -> None:
    fs, jpath = _path(spark, path)
    if fs.exists(jpath):
        fs.delete(jpath, True)


def mkdirs(spark: SparkSession, path: str) -> None:
    fs, jpath = _path(spark, path)
    fs.mkdirs(jpath)


def rename(spark: SparkSession, src: str, dst: str) -> None:
    """Rename `src` to `dst`; raises if the file system refuses."""
    fs, jsrc = _path(spark, src)
    _, jdst = _path(spark, dst)
    if not fs.rename(jsrc, jdst):
        raise OSError(f"could not rename {src} to {dst}")


def list_names(spark: SparkSession, path: str) -> list[str]:
    """Names of the entries directly under `path` (empty when it does not exist)."""
    fs, jpath = _path(spark, path)
    if not fs.exists(jpath):
        return []
    return sorted(str(s.getPath().getName()) for s in fs.listStatus(jpath))


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """Write `text` as UTF-8 to `path`, replacing it."""
    fs, jpath = _path(spark, path)
    out = fs.create(jpath, True)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()


def read_text(spark: SparkSession, path: str) -> str:
    fs, jpath = _path(spark, path)
    stream = fs.open(jpath)
    try:
        jvm = spark.sparkContext._jvm
        data = jvm.org.apache.commons.io.IOUtils.toByteArray(stream)
    finally:
        stream.close()
    return bytes(data).decode("utf-8")
