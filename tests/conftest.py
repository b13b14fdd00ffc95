"""Shared fixtures. Tests run from the repository root (pytest's rootdir)."""
from __future__ import annotations

import copy
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


@pytest.fixture
def settings():
    """The live config, restored after the test. Use `settings["key"] = value`."""
    from config import conf

    config = conf()
    saved = copy.deepcopy(dict(config))
    yield config
    dict.clear(config)
    dict.update(config, saved)
