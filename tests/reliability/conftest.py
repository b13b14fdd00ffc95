"""The reliability proofs: every test here is marked `reliability` (select with -m reliability);
their figures are printed at the end of the run and written to a JSON file (see harness.Figures;
tests/conftest.py prints them, also when pytest-xdist ran the proofs in worker processes)."""
from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/reliability/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.reliability)
            item.add_marker(pytest.mark.slow)
