"""tests/cpu_accounting.py, the suite's opt-in CPU accounting: its table and its sampling."""

import json
import os
import subprocess
import sys
import time

import pytest
from cpu_accounting import CpuAccounting, summary


def test_summary_sums_each_module_and_the_total(tmp_path):
    path = tmp_path / "cpu.jsonl"
    records = [("tests/test_a.py::x", 10.0, 1.0, 6.0, 0.5, 0.0), ("tests/test_a.py::y", 2.0, 0.5, 1.0, 0.0, 0.25),
               ("tests/test_b.py::z", 30.0, 0.25, 0.0, 0.0, 20.0)]
    path.write_text("".join(json.dumps({"test": t, "worker": "gw0", "wall": w, "driver": d, "spark_jvm": j,
                                        "python_workers": p, "subprocesses": s}) + "\n" for t, w, d, j, p, s in records))
    lines = []
    summary(str(path), lines.append)
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in lines[2:]}
    assert list(rows) == ["tests/test_b.py", "tests/test_a.py", "total"]  # largest wall first
    assert rows["tests/test_a.py"] == [2, 12.0, 1.5, 7.0, 0.5, 0.2]  # one decimal: 0.25 shows as 0.2
    assert rows["total"] == [3, 42.0, 1.8, 7.0, 0.5, 20.2]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="the accounting reads /proc (Linux)")
def test_a_child_process_cpu_is_charged_to_subprocesses():
    accounting = CpuAccounting(os.devnull)
    busy = ("import time\nstart = time.process_time()\nwhile time.process_time() - start < 0.5:\n    pass\n"
            "print('done', flush=True)\ninput()")
    child = subprocess.Popen([sys.executable, "-c", busy], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        accounting.sample()
        accounting.bucket.clear()  # what the child used before this point is not counted
        assert child.stdout.readline().strip() == "done"
        accounting.sample()  # the child is alive, waiting for input
    finally:
        child.communicate("\n", timeout=30)
    assert 0.3 <= accounting.bucket["subprocesses"] <= 2.0


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="the accounting reads /proc (Linux)")
def test_a_spark_launcher_child_is_the_jvm_and_its_daemon_children_are_python_workers():
    # Stand-ins named as PySpark's: a direct child whose command line names spark-class (the gateway
    # JVM), a grandchild named pyspark.daemon under it (the name is built at run time, so the child's own
    # command line does not hold it), and a plain child (a CLI subprocess).
    wait = "import subprocess, sys\n" \
           "kids = [subprocess.Popen([sys.executable, '-c', 'input()', 'pyspark.' + 'daemon'], stdin=subprocess.PIPE)]\n" \
           "print('up', kids[0].pid, flush=True)\ninput()\n[k.communicate(b'\\n') for k in kids]"
    gateway = subprocess.Popen([sys.executable, "-c", wait, "spark-class"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    other = subprocess.Popen([sys.executable, "-c", "input()"], stdin=subprocess.PIPE, text=True)
    accounting = CpuAccounting(os.devnull)
    try:
        up, daemon = gateway.stdout.readline().split()
        assert up == "up"
        time.sleep(0.2)  # the grandchild has started its interpreter
        accounting.sample()
    finally:
        gateway.communicate("\n", timeout=30)
        other.communicate("\n", timeout=30)
    kinds = {pid: kind for (pid, _), (kind, _) in accounting.seen.items()}
    # (the worker's own Spark JVM and its Python workers, when this runs beside them, are sampled too)
    assert kinds[str(gateway.pid)] == "spark_jvm" and kinds[daemon] == "python_workers"
    assert kinds[str(other.pid)] == "subprocesses"
