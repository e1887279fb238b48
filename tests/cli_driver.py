"""Run several `recsys-spark` commands in ONE process (one JVM, one Spark session), as a long-lived
driver would: `python tests/cli_driver.py '[["run", ...], ["sql", ...]]'`.

Prints `DONE <command> <exit code>` after each command and `RC <json list of exit codes>` at the end.
Besides an argv list, an entry may be
- "hold": print HOLDING and wait for a line on stdin, so a test can try a second process while this
  one holds the session, then go on with the next entry;
- {"argv": [...], "env": {NAME: VALUE}}: the command runs with these environment variables set, e.g.
  RECSYS_SPARK_FAULT to SIGKILL the process (and its JVM) at a fault point of its last command.
"""

import json
import os
import sys

from recsys_spark.app.cli import main

HOLD = "hold"


if __name__ == "__main__":
    codes = []
    for entry in json.loads(sys.argv[1]):
        if entry == HOLD:
            print("HOLDING", flush=True)
            sys.stdin.readline()
            continue
        if isinstance(entry, dict):
            os.environ.update(entry.get("env", {}))
            entry = entry["argv"]
        codes.append(main(entry))
        print(f"DONE {entry[0]} {codes[-1]}", flush=True)
    print("RC " + json.dumps(codes), flush=True)
