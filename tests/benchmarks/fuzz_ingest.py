"""Long mutation-fuzzing run of `ingest`; the suite runs 300 cases of the same.

    .venv/bin/python tests/benchmarks/fuzz_ingest.py --cases 5000 [--seed S] [--events N]

Prints the number of cases run, per mutation, and each failure (a traceback escaping
`ingest`, a valid event not stored or stored with another state than a clean run gives it,
an event stored before the run changed); exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.pipeline.fuzz import Fuzzer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--events", type=int, default=160, help="generated events (2 rooms)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        fuzzer = Fuzzer(Path(workdir), seed=args.seed, events=args.events)
        started = time.perf_counter()
        ran: Counter[str] = Counter()
        failed = 0
        for case, name, failure in fuzzer.cases(args.cases, seed=args.seed):
            ran[name] += 1
            if failure is not None:
                failed += 1
                print(f"FAIL case {case} ({name}): {failure.problem}", flush=True)
        seconds = time.perf_counter() - started
    print(f"cases: {sum(ran.values())} in {seconds:.0f} s, failures: {failed}")
    for name, n in sorted(ran.items()):
        print(f"  {name:22} {n}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
