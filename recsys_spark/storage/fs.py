"""Small file-system helpers over Hadoop's FileSystem API, so the same code works on
local disk, HDFS and object stores wherever Spark runs."""

from __future__ import annotations

import os
import time

from pyspark.sql import SparkSession

from recsys_spark.config import PublishConfig
from recsys_spark.errors import OutputError

UMASK_KEY = "fs.permissions.umask-mode"  # Hadoop's umask for every file and directory it creates


def _java_class(spark: SparkSession, name: str):
    """The JVM class `name` (fully qualified) in one py4j look-up. Walking `_jvm.org.apache...` attribute
    by attribute makes py4j try every prefix as a class, each a failed search of every jar on the class
    path: ~15 of them per Path, and a small nightly run makes ~80 Paths."""
    return getattr(spark.sparkContext._jvm, name)


def _path(spark: SparkSession, path: str):
    jpath = _java_class(spark, "org.apache.hadoop.fs.Path")(path)
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
    """Create `path` and its parents; raises OutputError when the file system refuses."""
    fs, jpath = _path(spark, path)
    if not fs.mkdirs(jpath):
        raise OutputError(f"cannot create the directory {path} (permission denied or a read-only file system); "
                          "make it writable or write elsewhere")


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


def is_dir(spark: SparkSession, path: str) -> bool:
    fs, jpath = _path(spark, path)
    return bool(fs.exists(jpath) and fs.getFileStatus(jpath).isDirectory())


def split_by_glob(spark: SparkSession, path: str, glob: str) -> tuple[list[str], list[str]]:
    """(files matching `glob`, files not matching it) under the directory `path`, recursively, as
    paths relative to it. The name is matched as Spark's `pathGlobFilter` matches it (Hadoop's
    GlobFilter); entries whose name starts with `_` or `.` are left out, as Spark ignores them."""
    fs, root = _path(spark, path)
    accept = _java_class(spark, "org.apache.hadoop.fs.GlobFilter")(glob)
    matched, skipped = [], []
    pending = [(root, "")]
    while pending:
        directory, prefix = pending.pop()
        for status in fs.listStatus(directory):
            name = str(status.getPath().getName())
            if name.startswith(("_", ".")):
                continue
            if status.isDirectory():
                pending.append((status.getPath(), f"{prefix}{name}/"))
            else:
                (matched if accept.accept(status.getPath()) else skipped).append(prefix + name)
    return sorted(matched), sorted(skipped)


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
        data = _java_class(spark, "org.apache.commons.io.IOUtils").toByteArray(stream)
    finally:
        stream.close()
    return bytes(data).decode("utf-8")


def local_path(spark: SparkSession, path: str) -> str | None:
    """The POSIX path of `path` when it lives on the local file system, else None."""
    uri = qualify(spark, path)
    return uri[len("file:"):] if uri.startswith("file:") else None


def is_link(spark: SparkSession, path: str) -> bool:
    """True when `path` is a local symbolic link (pointer-mode partitions, `current`)."""
    local = local_path(spark, path)
    return local is not None and os.path.islink(local)


def present(spark: SparkSession, path: str) -> bool:
    """True when `path` exists, counting a dangling local symlink."""
    local = local_path(spark, path)
    return os.path.lexists(local) if local is not None else exists(spark, path)


def entries(spark: SparkSession, path: str) -> list[str]:
    """The names in directory `path`, sorted, counting dangling local symlinks (Hadoop's local file
    system does not see them); [] when it is absent."""
    local = local_path(spark, path)
    if local is not None:
        return sorted(os.listdir(local)) if os.path.isdir(local) else []
    return list_names(spark, path)


def remove_entry(spark: SparkSession, path: str) -> None:
    """Unlink a symlink (not what it points to), or delete a file or directory tree."""
    if is_link(spark, path):
        os.unlink(local_path(spark, path))
    else:
        delete(spark, path)


def create_exclusive(spark: SparkSession, path: str, text: str) -> bool:
    """Create `path` holding `text` only if it does not exist; False when it does.

    Atomic on HDFS (create without overwrite) and on local disk (O_EXCL).
    """
    local = local_path(spark, path)
    if local is not None:
        mask = umask(spark)
        _makedirs_local(os.path.dirname(local), 0o777 & ~mask)
        try:
            fd = os.open(local, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~mask)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        return True
    fs, jpath = _path(spark, path)
    try:
        out = fs.create(jpath, False)
    except Exception as exc:  # Py4J wraps FileAlreadyExistsException
        if "AlreadyExists" in str(exc) or fs.exists(jpath):
            return False
        raise
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()
    return True


def modified_seconds(spark: SparkSession, path: str) -> float | None:
    """Modification time of `path` in epoch seconds, or None when it does not exist."""
    fs, jpath = _path(spark, path)
    if not fs.exists(jpath):
        return None
    return fs.getFileStatus(jpath).getModificationTime() / 1000.0


def touch(spark: SparkSession, path: str) -> None:
    """Set the modification time of `path` to now."""
    fs, jpath = _path(spark, path)
    fs.setTimes(jpath, int(time.time() * 1000), -1)


def _makedirs_local(path: str, mode: int) -> None:
    """os.makedirs with `mode` for every directory it creates (os.makedirs gives it to the last one only)."""
    if not path or os.path.isdir(path):
        return
    _makedirs_local(os.path.dirname(path), mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass


_OWN_UMASK_KEY = "recsys_spark.publish.umask"  # Hadoop's key has a default (022) that cannot be told from a choice


def set_umask(spark: SparkSession, value: str) -> None:
    """Every writer of this session (Hadoop's file systems, restrict_permissions) uses umask `value`."""
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    conf.set(UMASK_KEY, value)
    conf.set(_OWN_UMASK_KEY, value)


def umask(spark: SparkSession) -> int:
    """The umask set by set_umask for what this session writes; publish.umask's default when unset."""
    return int(spark.sparkContext._jsc.hadoopConfiguration().get(_OWN_UMASK_KEY, PublishConfig().umask), 8)


def restrict_permissions(spark: SparkSession, path: str, dir_mode: int | None = None,
                         file_mode: int | None = None) -> None:
    """chmod the tree under `path` to the session's umask (default modes 0777 and 0666 less the
    umask: 0750 and 0640 for 027), so a tree made by any writer ends as the umask says (a no-op
    where unsupported)."""
    mask = umask(spark)
    dir_mode = 0o777 & ~mask if dir_mode is None else dir_mode
    file_mode = 0o666 & ~mask if file_mode is None else file_mode
    local = local_path(spark, path)
    if local is not None:  # Hadoop's local file system starts a `chmod` process per file and per checksum
        _chmod_tree(local, dir_mode, file_mode)
        return
    fs, jpath = _path(spark, path)
    perm = _java_class(spark, "org.apache.hadoop.fs.permission.FsPermission")
    dir_perm, file_perm = perm.createImmutable(dir_mode), perm.createImmutable(file_mode)
    pending = [fs.getFileStatus(jpath)]
    while pending:
        status = pending.pop()
        if status.isDirectory():
            fs.setPermission(status.getPath(), dir_perm)
            pending.extend(fs.listStatus(status.getPath()))
        else:
            fs.setPermission(status.getPath(), file_perm)


def _chmod_tree(root: str, dir_mode: int, file_mode: int) -> None:
    """restrict_permissions on a local tree; symbolic links (and what they point at) are left alone."""
    os.chmod(root, dir_mode if os.path.isdir(root) else file_mode)
    for base, dirs, files in os.walk(root):
        for name in dirs:
            if not os.path.islink(os.path.join(base, name)):
                os.chmod(os.path.join(base, name), dir_mode)
        for name in files:
            if not os.path.islink(os.path.join(base, name)):
                os.chmod(os.path.join(base, name), file_mode)


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def exchange(a: str, b: str) -> bool:
    """Swap two local paths in one atomic step (Linux renameat2 RENAME_EXCHANGE: each may be a
    file, a directory or a symlink); False where the kernel, C library or file system cannot."""
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), a, None, b)
