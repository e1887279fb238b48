"""TensorFlow, imported once per process (driver or Python worker) without its start-up noise.

TensorFlow 2.16+ writes INFO lines from native code before absl's logging is set up (`oneDNN
custom operations are on`, `Could not find cuda drivers`, `All log messages before
absl::InitializeLog() ...`), whatever TF_CPP_MIN_LOG_LEVEL says. While it loads, this module
passes the process's stderr (file descriptor 2) through a filter that drops native log lines
below TF_CPP_MIN_LOG_LEVEL and lets everything else through unchanged. TF_CPP_MIN_LOG_LEVEL is
set from spark.log_level by app/session.py, in the driver and for the workers.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from contextlib import contextmanager

_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
_NATIVE_LINE = re.compile(rb"^([IWEF])\d{4} ")
_ABSL_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def import_tensorflow():
    """The tensorflow module; its first import in the process is filtered as the module docstring says."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    try:
        min_level = int(os.environ.get(_VARIABLE, "0"))
    except ValueError:
        min_level = 0
    if min_level <= 0:
        import tensorflow

        return tensorflow
    with _stderr_filtered(min_level):
        import tensorflow

        tensorflow.config.list_physical_devices()  # the device probe logs at start-up too
    return tensorflow


GPU_DEVICE_DRIVERS = ("nvidia", "kfd", "dxg")  # character devices of CUDA, ROCm and WSL's GPU


def gpu_visible() -> bool:
    """Whether TensorFlow sees a GPU. It is asked only when TensorFlow is loaded already or the kernel has a
    GPU driver's devices (/proc/devices), so a CPU-only process never pays TensorFlow's start-up for it."""
    if "tensorflow" not in sys.modules and not _gpu_driver_loaded():
        return False
    return bool(import_tensorflow().config.list_physical_devices("GPU"))


def _gpu_driver_loaded() -> bool:
    try:
        with open("/proc/devices", encoding="ascii", errors="replace") as devices:
            return lists_gpu_driver(devices)
    except OSError:  # no /proc (not Linux): ask TensorFlow
        return True


def lists_gpu_driver(device_lines) -> bool:
    """Whether lines of /proc/devices ("195 nvidia-frontend") name a GPU driver's character device."""
    return any(name in line.split()[-1] for line in device_lines if line.split() for name in GPU_DEVICE_DRIVERS)


def keep_line(line: bytes, min_level: int) -> bool:
    """Whether a line written to stderr while TensorFlow loads passes the filter."""
    if line.rstrip(b"\r\n") == _ABSL_NOTICE:
        return False
    match = _NATIVE_LINE.match(line)
    return match is None or _SEVERITY[match.group(1).decode()] >= min_level


@contextmanager
def _stderr_filtered(min_level: int):
    """Route file descriptor 2 through keep_line until the block ends."""
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        stderr = os.fdopen(original, "w", encoding="utf-8", errors="replace", closefd=False)
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                if keep_line(line, min_level):
                    print(line.decode("utf-8", errors="replace"), end="", file=stderr, flush=True)

    reader = threading.Thread(target=forward, daemon=True)
    reader.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(original, 2)  # the pipe's last write end closes: the reader sees its end
        reader.join(timeout=10)
        if not reader.is_alive():  # else something still holds the pipe: leave the reader its descriptor
            os.close(original)
