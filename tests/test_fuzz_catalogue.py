"""The bad-input catalogue (tests/fuzz_catalogue.py): every invalid input gets a recgym error naming expected
and received, every valid one is accepted with a correct result, nothing hangs.

``python benchmarks/fuzz_report.py`` prints the same catalogue's outcome counts (recorded in RESULTS.md).
"""

from __future__ import annotations

import time
import warnings

import pytest
from fuzz_catalogue import OUTCOMES, Case, all_cases, classify

CASES = all_cases()
AREAS = sorted({c.area for c in CASES})

# Cases whose fix lies outside the validation code, with the outcome they still have. The test fails when
# one of them changes outcome, so the entry is removed the day the fix lands.
KNOWN: dict[str, tuple[str, str]] = {
}

PER_CASE_LIMIT_S = 10.0


def _run(case: Case) -> tuple[str, str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return classify(case, time_limit=PER_CASE_LIMIT_S)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("area", AREAS)
def test_catalogue_area_has_only_clean_errors_and_correct_acceptances(area):
    cases = [c for c in CASES if c.area == area]
    assert sum(not c.valid for c in cases) >= 10, "too few invalid cases: the catalogue lost its teeth"
    failures = []
    counts = dict.fromkeys(OUTCOMES, 0)
    for case in cases:
        outcome, detail = _run(case)
        counts[outcome] += case.id not in KNOWN
        expected = KNOWN.get(case.id, ("accepted_valid" if case.valid else "clean_error", ""))[0]
        if outcome != expected:
            failures.append(f"{case.id}: {outcome} (expected {expected}) {detail[:400]}")
    assert not failures, f"{len(failures)} of {len(cases)} cases:\n" + "\n".join(failures)
    assert counts["hang"] == counts["foreign_exception"] == counts["silent_accept"] == counts["false_reject"] == 0


def test_catalogue_covers_every_area_and_both_kinds():
    assert set(AREAS) >= {"env-kwargs", "reset", "reset-vector", "actions", "config-set", "config-hyperparams",
                          "config-world", "config-yaml", "logs"}
    assert sum(c.valid for c in CASES) >= 200 and sum(not c.valid for c in CASES) >= 1000
    assert all(c.id in {x.id for x in CASES} for c in CASES)
    for cid in KNOWN:
        assert cid in {c.id for c in CASES}, f"KNOWN names a case that no longer exists: {cid}"


def test_classifier_tells_each_outcome_apart():
    from recgym.common.config import ConfigError

    def raise_(exc: BaseException):
        def run():
            raise exc
        return run

    def sleep():
        time.sleep(5)

    assert classify(Case("t", "a", False, raise_(ConfigError("x: expected 1, received 2"))))[0] == "clean_error"
    assert classify(Case("t", "b", False, raise_(ConfigError("x is wrong"))))[0] == "unclear_error"
    assert classify(Case("t", "c", False, raise_(ValueError("x: expected 1, received 2"))))[0] == "foreign_exception"
    assert classify(Case("t", "d", False, lambda: None))[0] == "silent_accept"
    assert classify(Case("t", "e", True, lambda: None))[0] == "accepted_valid"
    assert classify(Case("t", "f", True, raise_(ConfigError("expected 1, received 2"))))[0] == "false_reject"
    assert classify(Case("t", "g", True, raise_(AssertionError("wrong"))))[0] == "wrong_result"
    t0 = time.perf_counter()
    assert classify(Case("t", "h", False, sleep), time_limit=0.2)[0] == "hang"
    assert time.perf_counter() - t0 < 2
