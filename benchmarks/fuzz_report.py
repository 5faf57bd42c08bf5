"""Run the bad-input catalogue (tests/fuzz_catalogue.py) and print the outcome counts.

    python benchmarks/fuzz_report.py [--time-limit 10] [--details] [--json]

Outcomes: clean_error (invalid input refused with a recgym error naming expected and received),
accepted_valid (valid input accepted, result checked), and the failures: unclear_error, foreign_exception
(a deep traceback from library internals), silent_accept, false_reject, wrong_result, hang. Exit status 1
when any failure occurred. The figures are recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzz_catalogue import OUTCOMES, all_cases, timed  # noqa: E402

FAILURES = ("unclear_error", "foreign_exception", "silent_accept", "false_reject", "wrong_result", "hang")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--details", action="store_true", help="print every case that is not a pass")
    parser.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    args = parser.parse_args()

    t0 = time.perf_counter()
    cases = all_cases()
    by_area: dict[str, Counter[str]] = {}
    total: Counter[str] = Counter()
    slowest: list[tuple[float, str]] = []
    bad: list[tuple[str, str, str]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case in cases:
            outcome, detail, seconds = timed(case, args.time_limit)
            total[outcome] += 1
            by_area.setdefault(case.area, Counter())[outcome] += 1
            slowest.append((seconds, case.id))
            if outcome in FAILURES:
                bad.append((outcome, case.id, detail))
    wall = time.perf_counter() - t0
    slowest.sort(reverse=True)

    invalid = sum(1 for c in cases if not c.valid)
    print(f"recgym bad-input catalogue: {len(cases)} cases ({invalid} invalid, {len(cases) - invalid} valid), "
          f"{wall:.1f} s, {platform.machine()} {platform.python_version()}")
    width = max(len(a) for a in by_area)
    print(f"{'area':<{width}}  " + "  ".join(f"{o:>17}" for o in OUTCOMES))
    for area, counts in by_area.items():
        print(f"{area:<{width}}  " + "  ".join(f"{counts.get(o, 0):>17}" for o in OUTCOMES))
    print(f"{'total':<{width}}  " + "  ".join(f"{total.get(o, 0):>17}" for o in OUTCOMES))
    print(f"slowest case: {slowest[0][1]} {slowest[0][0] * 1000:.0f} ms")
    if args.details:
        for outcome, cid, detail in bad:
            print(f"{outcome}: {cid}: {detail[:300]}")
    if args.json:
        print(json.dumps({"cases": len(cases), "invalid": invalid, "seconds": round(wall, 1),
                          "outcomes": {o: total.get(o, 0) for o in OUTCOMES},
                          "slowest_case_s": round(slowest[0][0], 3)}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
