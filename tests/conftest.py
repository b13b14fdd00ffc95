"""Shared fixtures. Tests run from the repository root (pytest's rootdir)."""
from __future__ import annotations

import copy
import json
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


def _xdist_worker(config) -> bool:
    """True in a pytest-xdist worker: the controller checks the checkout for the whole run (before
    the workers start, after they all finished), so the workers do not race each other's tests."""
    return hasattr(config, "workerinput")


def pytest_sessionstart(session):
    if _xdist_worker(session.config):
        return
    session.config._checkout_before = _checkout_files()


def pytest_sessionfinish(session, exitstatus):
    _hand_figures_to_controller(session.config)
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
            if getattr(reporter._tw, "width_of_current_line", 0):  # after xdist's progress dots
                reporter.line("")
            reporter.write_line(message, red=True)
        else:
            print(message, file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --- the reliability figures (tests/reliability) -----------------------------------------------
# The proofs add their figures to harness.Figures in the process that ran them. With pytest-xdist
# each worker hands its figures to the controller when it finishes (workeroutput), and the
# controller prints them all at the end of the run; without xdist the one process prints its own.

def _hand_figures_to_controller(config) -> None:
    """In an xdist worker: give the figures it collected to the controller."""
    harness = sys.modules.get("tests.reliability.harness")
    if harness is not None and harness.Figures.data and _xdist_worker(config):
        config.workeroutput["reliability_figures"] = json.dumps(harness.Figures.data, ensure_ascii=False,
                                                                default=str)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """On the xdist controller: take the figures of a worker that finished."""
    data = getattr(node, "workeroutput", {}).get("reliability_figures")
    if data:
        from tests.reliability.harness import Figures

        for proof, values in json.loads(data).items():
            Figures.add(proof, **values)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    harness = sys.modules.get("tests.reliability.harness")
    if _xdist_worker(config) or harness is None or not harness.Figures.data:
        return
    figures = harness.Figures
    figures.data = dict(sorted(figures.data.items()))  # the same order whichever worker ran a proof
    path = figures.write()
    terminalreporter.section("reliability figures")
    for proof, values in figures.data.items():
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        terminalreporter.write_line(f"{proof}: {shown}")
    terminalreporter.write_line(f"(written to {path})")


# --- the order under pytest-xdist ---------------------------------------------------------------
# pytest.ini runs the modules on several workers (--dist loadfile: a module stays on one worker, in
# its own order, with its module fixtures once). A module starts when a worker is free, in the
# order below, so the longest ones go first and many short ones fill the end: the proofs in
# tests/reliability (the soak alone waits 45 s), then tests/e2e; then the modules holding an `alone`
# test, when the other workers run short tests that it waits for; then integration and unit.
# Without xdist the order stays pytest's.

_DIRECTORY_ORDER = ("tests/reliability/", "tests/e2e/", None, "tests/integration/", "tests/unit/")


def pytest_collection_modifyitems(config, items):
    if not _xdist_worker(config):
        return
    module = lambda item: item.nodeid.split("::")[0]  # noqa: E731
    with_alone = {module(item) for item in items if item.get_closest_marker("alone") is not None}

    def rank(item) -> int:
        path = module(item)
        if path in with_alone:
            return _DIRECTORY_ORDER.index(None)
        for n, folder in enumerate(_DIRECTORY_ORDER):
            if folder and path.startswith(folder):
                return n
        return len(_DIRECTORY_ORDER)

    items.sort(key=rank)  # stable: modules and tests keep their order within a rank


# --- tests that run alone ----------------------------------------------------------------------
# Under pytest-xdist (pytest.ini: -n) modules run at the same time on several workers. A test
# marked `alone` runs while no other test runs: each test holds a shared lock on a file in the
# run's temporary folder, an `alone` test the exclusive one; a turnstile lets a waiting `alone`
# test in before tests that ask after it. Without xdist this does nothing.

@pytest.fixture(autouse=True)
def _alone_or_shared(request, tmp_path_factory):
    try:
        import fcntl
    except ImportError:  # Windows: no flock; `alone` is not kept there
        fcntl = None
    if fcntl is None or not _xdist_worker(request.config):
        yield
        return
    folder = tmp_path_factory.getbasetemp().parent  # one folder for all the workers of the run
    alone = request.node.get_closest_marker("alone") is not None
    with open(folder / "alone.turnstile", "a") as turnstile, open(folder / "alone.lock", "a") as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if not alone:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            if alone:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real redis-server for the session (tests/redis_server.py); each test keeps its
    keys apart with its own redis_key_prefix."""
    from tests.redis_server import RedisServer

    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server
