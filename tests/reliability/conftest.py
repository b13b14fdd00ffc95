"""The reliability proofs: every test here is marked `reliability` (select with -m reliability);
their figures are printed at the end of the run and written to a JSON file (see harness.Figures)."""
from __future__ import annotations

import pytest

from tests.reliability.harness import Figures


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/reliability/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.reliability)
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not Figures.data:
        return
    path = Figures.write()
    terminalreporter.section("reliability figures")
    for proof, values in Figures.data.items():
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        terminalreporter.write_line(f"{proof}: {shown}")
    terminalreporter.write_line(f"(written to {path})")
