"""app.sigterm_handler_wrap: the contract's handler shape, run in this process."""
from __future__ import annotations

import signal
import sys

import pytest

import app
from common.store import MemoryStore
from config import conf

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGUSR1 does not exist on Windows")


@pytest.fixture
def fresh_app(monkeypatch):
    monkeypatch.setattr(app, "_shutting_down", False)
    monkeypatch.setattr(app, "_channel", None)
    monkeypatch.setattr(app, "_store", None)
    book = conf().user_data_book
    store = MemoryStore()
    book.attach(store)
    old = signal.getsignal(signal.SIGUSR1)
    yield store
    signal.signal(signal.SIGUSR1, old)
    app._stopped.clear()
    book.close()
    book._store = None
    book.data.pop("signal-user", None)


def test_previous_callable_handler_is_chained_after_saving(fresh_app):
    store = fresh_app
    seen = []

    def previous(signo, frame):
        # By the time the previous handler runs, user data is already saved.
        seen.append((signo, store.load_user_datas().get("signal-user")))

    signal.signal(signal.SIGUSR1, previous)
    app.sigterm_handler_wrap(signal.SIGUSR1)
    conf().get_user_data("signal-user")["k"] = "v"
    signal.raise_signal(signal.SIGUSR1)
    assert seen == [(signal.SIGUSR1, {"k": "v"})]


def test_without_a_callable_previous_handler_it_exits_0(fresh_app):
    store = fresh_app
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # not callable
    app.sigterm_handler_wrap(signal.SIGUSR1)
    conf().get_user_data("signal-user")["k"] = "w"
    with pytest.raises(SystemExit) as exit_info:
        signal.raise_signal(signal.SIGUSR1)
    assert exit_info.value.code == 0
    assert store.load_user_datas()["signal-user"] == {"k": "w"}


def test_handler_logs_the_contract_line(fresh_app, caplog):
    import logging

    signal.signal(signal.SIGUSR1, lambda s, f: None)
    app.sigterm_handler_wrap(signal.SIGUSR1)
    logger = logging.getLogger("log")
    logger.propagate = True
    try:
        with caplog.at_level(logging.INFO, logger="log"):
            signal.raise_signal(signal.SIGUSR1)
    finally:
        logger.propagate = False
    assert f"signal {int(signal.SIGUSR1)} received, exiting..." in caplog.text
