"""Run the fuzz suite's hostile cases through every reader and upload path and print JSON counts per reader.

    nice -n 10 python benchmarks/fuzz_report.py --cases 1000 --seed 1 --workers 2 --out benchmarks/fuzz.json

Outcomes per reader: cases, ok, clear_errors (DataError / UploadError; ``of_which_net`` came from a reader's
last catch-all), uncaught, hangs (hard time limit), memory_blowups (MemoryError under RLIMIT_AS = worker size
+ 1.5 GiB, or a per-case peak RSS above 1 GiB), escaped (files written outside the uploads folder), the slowest
case and the largest per-case peak memory. The cases are tests/fuzz_cases.py's, seeded.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import fuzz_cases as fc  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000, help="cases per reader (default 1000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=fc.HANG_SECONDS, help="hard time limit per case [s]")
    parser.add_argument("--readers", default=",".join(fc.READERS))
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--failures", help="write the records of non-ok / non-error cases here")
    args = parser.parse_args(argv)
    readers = [r for r in args.readers.split(",") if r]
    start = time.time()
    records = fc.run_cases([(r, i, args.seed) for r in readers for i in range(args.cases)], workers=args.workers,
                           timeout=args.timeout)
    summary = fc.summarise(records)
    totals = {key: sum(row[key] for row in summary.values()) for key in
              ("cases", "ok", "clear_errors", "of_which_net", "uncaught", "hangs", "memory_blowups", "escaped")}
    report = {"command": "python benchmarks/fuzz_report.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "seed": args.seed, "cases_per_reader": args.cases, "timeout_s": args.timeout,
              "memory_limit": "RLIMIT_AS = worker size + 1.5 GiB; blow-up = MemoryError or per-case peak RSS > 1 GiB",
              "wall_seconds": round(time.time() - start, 1), "python": platform.python_version(),
              "readers": summary, "totals": totals}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.failures:
        Path(args.failures).write_text(json.dumps([r for r in records if r["outcome"] not in ("ok", "error")
                                                   or r.get("net")], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
