"""The package's two rules, checked from the source with `ast` (nothing of the package is imported,
no SparkSession), so the check is fast and runs even when a module would not import.

1. Imports only go down: a module may import from its own layer or the layers below (LAYERS,
   bottom to top). Every module file must belong to a layer, so a new sub-package must be placed.
2. Only storage/ and app/ touch storage: no other module opens, writes or lists files or reads or
   writes Spark tables.

The layers and the rules are described in docs/architecture.md; change both together.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "recsys_spark"

# Bottom to top: (layer name, the top-level modules or sub-packages of recsys_spark it holds).
# recsys_spark/__init__.py belongs to the bottom layer (it must import nothing).
LAYERS = [
    ("errors/faults", ("errors", "faults")),
    ("kernels", ("kernels",)),
    ("config", ("config",)),
    ("data", ("data",)),
    ("models", ("models",)),
    ("serving", ("serving",)),
    ("evaluation", ("evaluation",)),
    ("storage", ("storage",)),
    ("app", ("app",)),
]
# The bottom layer's modules may import nothing of the package but this one.
BOTTOM_MAY_IMPORT = {f"{PACKAGE}.errors"}
# Rule 2: the only sub-packages that may do file or table I/O.
IO_LAYERS = {"storage", "app"}

# Calls that do file or table I/O whatever they are called on: `x.NAME(...)` or `NAME(...)`.
IO_CALLS = {
    # files (pathlib, os, shutil, glob)
    "write_text", "read_text", "write_bytes", "read_bytes", "mkdir", "makedirs", "listdir",
    "scandir", "unlink", "rmtree", "glob", "iglob", "rglob", "iterdir", "touch", "symlink_to",
    "hardlink_to", "is_file", "is_dir", "is_symlink", "isfile", "isdir", "islink", "getsize",
    "getmtime", "copyfile", "copytree", "NamedTemporaryFile", "TemporaryDirectory", "mkdtemp",
    "mkstemp",
    # pandas / numpy / pyarrow files
    "to_csv", "to_parquet", "to_feather", "to_pickle", "to_hdf", "to_excel", "read_csv",
    "read_parquet", "read_json", "read_pickle", "read_feather", "read_hdf", "read_excel",
    "write_table", "read_table", "ParquetWriter", "ParquetFile", "savez", "savez_compressed",
    "savetxt", "loadtxt", "genfromtxt", "fromfile", "tofile", "save", "load",
    # Spark tables and files beyond .read/.write
    "saveAsTable", "insertInto", "tableExists", "listTables", "sql", "saveAsTextFile",
    "saveAsPickleFile", "textFile", "wholeTextFiles", "binaryFiles", "addFile", "checkpoint",
    "setCheckpointDir",
    # TensorFlow files
    "save_weights", "load_weights", "create_file_writer", "read_file", "write_file",
}
# Names that are I/O only on a file-system module or a Path: os.remove, but not list.remove;
# os.walk, but not ast.walk; os.path.exists, but not F.exists; shutil.move, Path(p).rename,
# but not DataFrame.rename.
FS_ONLY_CALLS = {
    "open", "remove", "rename", "replace", "walk", "stat", "lstat", "symlink", "readlink",
    "rmdir", "removedirs", "link", "chmod", "chown", "utime", "truncate", "exists", "lexists",
    "samefile", "copy", "copy2", "move", "getatime", "getctime",
}
FS_MODULES = {"os", "shutil", "pathlib", "glob", "tempfile", "io", "builtins", "gzip", "bz2", "lzma"}
# Attribute accesses that are I/O on anything: Spark's DataFrameReader/Writer (and a file's
# read/write), Spark's table catalog, TensorFlow's file API.
IO_ATTRIBUTES = {"read", "write", "readStream", "writeStream", "catalog", "gfile"}
# Modules that exist to do file I/O.
IO_MODULES = {"shutil", "tempfile", "glob", "fsspec", "pyarrow.parquet", "pyarrow.csv", "pyarrow.fs",
              "pyarrow.dataset", "pyarrow.feather", "pyarrow.orc", "pyarrow.json"}
# In-memory stand-ins for files: writing a figure or text into one is not I/O.
BUFFERS = {"BytesIO", "StringIO"}
# Reading the running process's /proc entries (CPU flags, loaded libraries) is introspection of
# the machine, not storage: `open("/proc/...")` with a literal path is allowed everywhere.
PROC_PREFIX = "/proc/"


# ---------------------------------------------------------------------------------------- layers

def module_name(path: str) -> str:
    """recsys_spark/storage/fs.py -> recsys_spark.storage.fs; a package's __init__.py -> the package."""
    parts = list(Path(path).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    """The index in LAYERS of a module of the package, or None if no layer holds it."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    if len(parts) == 1:
        return 0
    for index, (_, members) in enumerate(LAYERS):
        if parts[1] in members:
            return index
    return None


def layer_label(index: int) -> str:
    return f"layer {index} {LAYERS[index][0]}"


def package_sources(root: Path = ROOT) -> dict[str, str]:
    """Every .py file under recsys_spark/, by path relative to the repository root."""
    return {path.relative_to(root).as_posix(): path.read_text(encoding="utf-8")
            for path in sorted((root / PACKAGE).rglob("*.py"))}


def parse(path: str, source: str) -> tuple[ast.AST | None, list[str]]:
    try:
        return ast.parse(source, filename=path), []
    except SyntaxError as exc:
        return None, [f"{path}:{exc.lineno}: cannot be parsed: {exc.msg}"]


def imported_modules(tree: ast.AST, module: str, is_package: bool, known: set[str]):
    """(line, target) for every import of the package in a module, at any depth (function-local
    imports, TYPE_CHECKING blocks, importlib.import_module("...") with a literal name).
    `from A import b` is the module A.b when A.b is a module, else the module A."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            if not (base == PACKAGE or base.startswith(PACKAGE + ".")):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield node.lineno, candidate if alias.name != "*" and candidate in known else base
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and node.args[0].value.startswith(PACKAGE)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__")))):
            yield node.lineno, node.args[0].value


def layer_violations(sources: dict[str, str]) -> list[str]:
    """Modules in no layer, imports of modules that do not exist, and imports that go up."""
    known = {module_name(path) for path in sources}
    problems = []
    for path, source in sources.items():
        module = module_name(path)
        layer = layer_of(module)
        if layer is None:
            problems.append(f"{path}:1: {module} is in no layer: place its sub-package in LAYERS "
                            "(tests/test_layers.py) and in docs/architecture.md")
            continue
        tree, errors = parse(path, source)
        problems += errors
        if tree is None:
            continue
        for line, target in imported_modules(tree, module, path.endswith("__init__.py"), known):
            if target not in known:
                problems.append(f"{path}:{line}: imports {target}, which is no module of the package")
                continue
            target_layer = layer_of(target)
            if target_layer is None:
                continue  # reported as a module in no layer
            if target_layer > layer:
                problems.append(f"{path}:{line}: {module} ({layer_label(layer)}) imports {target} "
                                f"({layer_label(target_layer)}): imports only go down")
            elif layer == 0 and target != module and target not in BOTTOM_MAY_IMPORT:
                problems.append(f"{path}:{line}: {module} ({layer_label(0)}) imports {target}: "
                                f"the bottom layer imports nothing of the package but {', '.join(sorted(BOTTOM_MAY_IMPORT))}")
    return sorted(set(problems), key=_sort_key)


# -------------------------------------------------------------------------------------------- I/O

def _dotted(node: ast.AST) -> str:
    """os.path.exists -> 'os.path.exists'; anything not a plain dotted name -> ''."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def _is_call_to(node: ast.AST, names: set[str]) -> bool:
    """A call of NAME(...) or x.NAME(...) for a NAME in names."""
    return isinstance(node, ast.Call) and _dotted(node.func).split(".")[-1] in names


def _is_proc_open(node: ast.AST) -> bool:
    return (_is_call_to(node, {"open"}) and bool(node.args) and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str) and node.args[0].value.startswith(PROC_PREFIX))


class _Scope:
    """Names a function (or the module) binds to in-memory buffers, /proc file handles and Paths."""

    def __init__(self, scope: ast.AST):
        self.buffers: set[str] = set()
        self.proc_handles: set[str] = set()
        self.paths: set[str] = set()
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                self._bind(node.targets[0].id, node.value)
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    if isinstance(item.optional_vars, ast.Name):
                        self._bind(item.optional_vars.id, item.context_expr)

    def _bind(self, name: str, value: ast.AST) -> None:
        if _is_call_to(value, BUFFERS):
            self.buffers.add(name)
        elif _is_proc_open(value):
            self.proc_handles.add(name)
        elif _is_call_to(value, {"Path", "PurePath", "PosixPath"}):
            self.paths.add(name)

    def in_memory(self, node: ast.AST) -> bool:
        """A buffer or a /proc handle (its .read/.write are not storage I/O)."""
        return (isinstance(node, ast.Name) and node.id in self.buffers | self.proc_handles) or _is_call_to(node, BUFFERS)

    def is_path(self, node: ast.AST) -> bool:
        return (isinstance(node, ast.Name) and node.id in self.paths) or _is_call_to(node, {"Path", "PurePath", "PosixPath"})


def _io_uses(tree: ast.AST):
    """(line, what) for every file or table I/O in a module's AST."""
    scopes: dict[ast.AST, _Scope] = {}
    enclosing: dict[ast.AST, ast.AST] = {}

    def visit(node: ast.AST, scope: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            enclosing[child] = scope
            visit(child, child if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else scope)

    visit(tree, tree)

    def scope_of(node: ast.AST) -> _Scope:
        owner = enclosing.get(node, tree)
        if owner not in scopes:
            scopes[owner] = _Scope(owner)
        return scopes[owner]

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in IO_MODULES:
                    yield node.lineno, f"imports {alias.name} (a file I/O module)"
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module in IO_MODULES:
            yield node.lineno, f"imports from {node.module} (a file I/O module)"
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            receiver = func.value if isinstance(func, ast.Attribute) else None
            dotted = _dotted(func) or f"(...).{name}"
            if name == "savefig":
                if not (node.args and scope_of(node).in_memory(node.args[0])):
                    yield node.lineno, f"{dotted}(...) writes a file (save into an io.BytesIO buffer instead)"
            elif name == "open" and receiver is None:
                if not _is_proc_open(node):
                    yield node.lineno, "open(...) opens a file"
            elif name in IO_CALLS:
                yield node.lineno, f"{dotted}(...)"
            elif name == "table" and receiver is not None and _dotted(receiver) not in ("pa", "pyarrow"):
                yield node.lineno, f"{dotted}(...) reads a Spark table"
            elif name in FS_ONLY_CALLS and receiver is not None and (
                    _dotted(receiver).split(".")[0] in FS_MODULES or scope_of(node).is_path(receiver)):
                yield node.lineno, f"{dotted}(...)"
        elif isinstance(node, ast.Attribute) and node.attr in IO_ATTRIBUTES:
            if not scope_of(node).in_memory(node.value):
                yield node.lineno, f"{_dotted(node) or '(...).' + node.attr} (file or Spark table I/O)"


def io_violations(sources: dict[str, str]) -> list[str]:
    """`path:line: what` for every file or table I/O outside the I/O layers."""
    problems = []
    for path, source in sources.items():
        layer = layer_of(module_name(path))
        if layer is not None and LAYERS[layer][0] in IO_LAYERS:
            continue
        tree, errors = parse(path, source)
        problems += errors
        if tree is not None:
            problems += [f"{path}:{line}: {what}" for line, what in _io_uses(tree)]
    return sorted(set(problems), key=_sort_key)


def _sort_key(problem: str):
    path, line, rest = (problem.split(":", 2) + ["", ""])[:3]
    return path, int(line) if line.isdigit() else 0, rest


# ------------------------------------------------------------------------------- the real package

def test_every_module_is_in_a_layer_and_imports_only_go_down():
    sources = package_sources()
    assert f"{PACKAGE}/errors.py" in sources and len(sources) > 20, "the package was not found"
    problems = layer_violations(sources)
    assert not problems, "imports must only go down (docs/architecture.md):\n" + "\n".join(problems)


def test_only_storage_and_app_touch_files_and_tables():
    problems = io_violations(package_sources())
    assert not problems, ("only storage/ and app/ may read or write files and tables "
                          "(docs/architecture.md):\n" + "\n".join(problems))


# ------------------------------------------------------------------------- the checker, checked

CLEAN = '''
"""A clean data module."""
import io
import os
import numpy as np
import pyarrow as pa
from pyspark.sql import functions as F
from recsys_spark.errors import InputError
from recsys_spark.kernels import topk
from recsys_spark.config import Config
from . import schema

def f(df, names, figure):
    where = os.path.join("a", "b")
    names.remove("x")
    table = pa.table({"a": np.arange(3)})
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    buffer.write(b"more")
    with open("/proc/cpuinfo") as info:
        flags = info.read()
    return df.rename(columns={}).select(F.exists("xs", lambda x: x > 0)), where, table, flags
'''


def synthetic(**modules: str) -> dict[str, str]:
    """Paths from keyword names (data__prepare -> recsys_spark/data/prepare.py) plus the modules
    the synthetic sources import."""
    base = {f"{PACKAGE}/__init__.py": "", f"{PACKAGE}/errors.py": "", f"{PACKAGE}/kernels/__init__.py": "",
            f"{PACKAGE}/kernels/topk.py": "", f"{PACKAGE}/config/__init__.py": "", f"{PACKAGE}/data/__init__.py": "",
            f"{PACKAGE}/data/schema.py": "", f"{PACKAGE}/storage/__init__.py": "", f"{PACKAGE}/storage/fs.py": "",
            f"{PACKAGE}/models/__init__.py": "", f"{PACKAGE}/models/registry.py": ""}
    return {**base, **{f"{PACKAGE}/{name.replace('__', '/')}.py": source for name, source in modules.items()}}


def test_checker_catches_upward_imports_and_unplaced_modules():
    assert layer_violations(synthetic(data__prepare=CLEAN)) == []
    upward = '''
from recsys_spark.storage import fs
def late():
    import recsys_spark.models.registry
    from ..models import registry
    from recsys_spark.io import read
'''
    problems = layer_violations(synthetic(data__prepare=upward, cache__disk="", helpers=""))
    assert [p.split(": ", 1)[0] for p in problems] == [
        "recsys_spark/cache/disk.py:1", "recsys_spark/data/prepare.py:2", "recsys_spark/data/prepare.py:4",
        "recsys_spark/data/prepare.py:5", "recsys_spark/data/prepare.py:6", "recsys_spark/helpers.py:1"], problems
    assert "imports recsys_spark.storage.fs (layer 7 storage)" in problems[1]
    assert "imports recsys_spark.models.registry (layer 4 models)" in problems[3]
    assert "recsys_spark.io, which is no module" in problems[4]
    # the bottom layer may use errors only; a storage module may import anything below it
    assert layer_violations(synthetic(faults="from recsys_spark.errors import UserError")) == []
    assert len(layer_violations(synthetic(errors="import recsys_spark.faults", faults=""))) == 1
    assert layer_violations(synthetic(storage__stores="from recsys_spark.models import registry")) == []


def test_checker_catches_io_below_storage_and_passes_clean_modules():
    assert io_violations(synthetic(data__prepare=CLEAN)) == []
    dirty = '''
import os, shutil
from pathlib import Path
def f(df, fig, path, spark):
    with open(path) as handle:
        handle.read()
    df.write.parquet(path)
    spark.read.table("t")
    fig.savefig(path)
    Path(path).rename("b")
    os.replace("a", "b")
    df.toPandas().to_csv(path)
    spark.table("t")
'''
    problems = io_violations(synthetic(data__prepare=dirty))
    lines = sorted({int(p.split(":")[1]) for p in problems})
    assert lines == [2, 5, 6, 7, 8, 9, 10, 11, 12, 13], problems
    assert any(p.startswith("recsys_spark/data/prepare.py:5: open(") for p in problems)
    # storage/ and app/ may do all of it
    assert io_violations(synthetic(storage__stores=dirty, app__steps=dirty)) == []
