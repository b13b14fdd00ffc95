"""Shared fixtures. Tests run from the repository root (pytest's rootdir)."""
from __future__ import annotations

import copy
import logging
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


class LogRecords(logging.Handler):
    """Every record the project's logger passes on during a test."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]

    def text(self, level: int = logging.DEBUG) -> str:
        """The messages at `level` and above, one a line."""
        return "\n".join(r.getMessage() for r in self.records if r.levelno >= level)


@pytest.fixture
def logs():
    """The project logger's records during the test (see LogRecords)."""
    from common.log import logger

    handler = LogRecords()
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def _unload_ntwork() -> None:
    for name in list(sys.modules):
        if name == "ntwork" or name.startswith("ntwork."):
            del sys.modules[name]


@pytest.fixture(scope="module")
def ntwork():
    """The ntwork simulator (tests/fakes/ntwork) imported as `ntwork` in this process,
    unloaded afterwards so other tests see no ntwork."""
    fakes = os.path.join(ROOT, "tests", "fakes")
    saved = {key: os.environ.get(key) for key in ("NTWORK_LOG", "NTWORK_SIM_DIR")}
    _unload_ntwork()
    os.environ["NTWORK_LOG"] = "ERROR"
    os.environ.pop("NTWORK_SIM_DIR", None)
    sys.path.insert(0, fakes)
    try:
        import ntwork as module
        import ntwork.simulator  # noqa: F401
    finally:
        sys.path.remove(fakes)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield module
    module.simulator.SIM.close()
    _unload_ntwork()


# --- the checkout stays clean -------------------------------------------------------------------
# A test writes into its tmp_path, never into the project folder (plugins/plugins.json, tmp/,
# run.log, config.json, state files). The run fails when a file there appeared, changed or went.

_SKIPPED_DIRS = {".git", "__pycache__", ".pytest_cache", ".venv", "venv", "node_modules"}


def _checkout_files() -> dict[str, tuple[int, int]]:
    files = {}
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in _SKIPPED_DIRS]
        for name in names:
            path = os.path.join(folder, name)
            try:
                info = os.stat(path)
            except OSError:
                continue
            files[os.path.relpath(path, ROOT)] = (info.st_size, info.st_mtime_ns)
    return files


def pytest_sessionstart(session):
    session.config._checkout_before = _checkout_files()


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_checkout_before", None)
    if before is None or session.config.getoption("collectonly"):
        return
    after = _checkout_files()
    changed = sorted(
        [f"added {p}" for p in after.keys() - before.keys()]
        + [f"removed {p}" for p in before.keys() - after.keys()]
        + [f"changed {p}" for p in before.keys() & after.keys() if before[p] != after[p]]
    )
    if changed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = "the tests left the checkout changed: " + ", ".join(changed)
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(message, red=True)
        else:
            print(message, file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
