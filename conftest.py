"""Repository-wide pytest hooks (for tests/ and bench/).

With FASTMLP_FAIL_ON_SKIP=1 (set by .ci/run) a skipped test fails the session: in CI the tests
that need torch or the data sets must run, not quietly skip.
"""

import os

import pytest

_skipped = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("FASTMLP_FAIL_ON_SKIP") == "1" and _skipped:
        print(f"\nFASTMLP_FAIL_ON_SKIP: {len(_skipped)} test(s) skipped: {', '.join(_skipped[:10])}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
