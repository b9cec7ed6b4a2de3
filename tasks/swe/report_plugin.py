"""A pytest plugin the grader copies into the container: one JSON line per test phase, with failures' text.

It is read as text and run inside the container's own Python, never imported by gymbox; stdlib and pytest only.
"""

import json
import os

_MAX_TEXT = 6000


def _write(record: dict) -> None:
    with open(os.environ["GYMBOX_REPORT"], "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")


def pytest_runtest_logreport(report) -> None:
    if report.when != "call" and report.passed:
        return
    text = str(report.longrepr)[-_MAX_TEXT:] if report.failed else ""
    _write({"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome, "text": text,
            "duration": round(report.duration, 4)})


def pytest_collectreport(report) -> None:
    if report.failed:
        _write({"nodeid": report.nodeid, "when": "collect", "outcome": "failed",
                "text": str(report.longrepr)[-_MAX_TEXT:]})
