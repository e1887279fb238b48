"""Run several `recsys-spark` commands in ONE process (one JVM, one Spark session), as a long-lived
driver would: `python tests/cli_driver.py '[["run", ...], ["sql", ...]]' [--hold]`.

Prints `RC <json list of exit codes>`; with --hold it then prints HOLDING and waits for a line on
stdin before exiting, so a test can try a second process while this one holds the session.
"""

import json
import sys

from recsys_spark.app.cli import main

if __name__ == "__main__":
    codes = []
    for argv in json.loads(sys.argv[1]):
        codes.append(main(argv))
        print(f"DONE {argv[0]} {codes[-1]}", flush=True)
    print("RC " + json.dumps(codes), flush=True)
    if "--hold" in sys.argv[2:]:
        print("HOLDING", flush=True)
        sys.stdin.readline()
