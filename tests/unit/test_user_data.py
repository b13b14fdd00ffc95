"""User data written the way plugins write it is durable without a clean stop."""
from __future__ import annotations

import time

import pytest

from common import user_data as user_data_module
from common.store import MemoryStore, SQLiteStore
from common.user_data import UserDataBook


def wait_until(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def book_and_store(tmp_path):
    store = SQLiteStore(str(tmp_path / "state.db"))
    book = UserDataBook()
    book.attach(store)
    yield book, store
    book.close()
    store.close()


def test_direct_write_is_saved_within_a_second(book_and_store):
    book, store = book_and_store
    book.get("alice")["openai_api_key"] = "sk-1"
    assert wait_until(lambda: store.load_user_datas().get("alice") == {"openai_api_key": "sk-1"}, 1.0)


def test_nested_change_is_saved_within_a_second(book_and_store):
    book, store = book_and_store
    data = book.get("bob")
    data["history"] = []
    assert wait_until(lambda: store.load_user_datas().get("bob") == {"history": []}, 1.0)
    data["history"].append("x")  # the dict itself does not see this
    assert wait_until(lambda: store.load_user_datas().get("bob") == {"history": ["x"]}, 1.0)


def test_reopened_book_sees_saved_values(tmp_path):
    store = SQLiteStore(str(tmp_path / "state.db"))
    book = UserDataBook()
    book.attach(store)
    book.get(123)["gpt_model"] = "gpt-4o"  # non-string ids are kept under their text
    book.close()
    store.close()
    store = SQLiteStore(str(tmp_path / "state.db"))
    again = UserDataBook()
    again.attach(store)
    try:
        assert again.get("123") == {"gpt_model": "gpt-4o"}
        assert again.get(123) is again.get("123")
    finally:
        again.close()
        store.close()


def test_reading_does_not_create_rows(book_and_store):
    book, store = book_and_store
    for i in range(50):
        book.get(f"reader-{i}")
    assert book.peek("nobody") is None
    book.flush()
    assert store.load_user_datas() == {}


def test_unserialisable_value_is_kept_as_text_and_others_still_saved(book_and_store):
    book, store = book_and_store
    book.get("weird")["obj"] = object()
    book.get("fine")["k"] = 1
    book.flush()
    saved = store.load_user_datas()
    assert saved.get("fine") == {"k": 1}
    # default=str keeps something rather than losing the user's other values
    assert "weird" in saved
    assert saved["weird"]["obj"].startswith("<object object at")


def test_store_failure_keeps_changes_for_the_next_flush():
    class FlakyStore(MemoryStore):
        fail = True

        def save_user_datas(self, changed):
            if self.fail:
                raise OSError("disk full")
            return super().save_user_datas(changed)

    store = FlakyStore()
    book = UserDataBook()
    book._store = store  # attach without the flusher thread, to control timing
    book.get("u")["k"] = "v"
    assert book.flush() == 0
    store.fail = False
    assert book.flush() == 1
    assert store.load_user_datas() == {"u": {"k": "v"}}


def test_flush_cost_does_not_grow_with_idle_users(monkeypatch):
    store = MemoryStore()
    book = UserDataBook()
    book._store = store
    for i in range(1000):
        book.get(f"u{i}")["k"] = i
    assert book.flush() == 1000
    # After the watch window, unchanged users are no longer compared.
    monkeypatch.setattr(user_data_module, "WATCH_SECONDS", 0.0)
    book.flush()
    assert book._watched == {}


@pytest.fixture
def live_config(tmp_path):
    """A Config whose user data is written through to a SQLite store, as the daemon's is."""
    from config import Config

    store = SQLiteStore(str(tmp_path / "state.db"))
    cfg = Config()
    cfg.user_data_book.attach(store)
    yield cfg, store
    cfg.user_data_book.close()
    store.close()


def test_changes_through_user_datas_are_saved(live_config):
    cfg, store = live_config
    assert isinstance(cfg.user_datas, dict)
    cfg.user_datas["alice"] = {"openai_api_key": "sk-1"}
    assert wait_until(lambda: store.load_user_datas().get("alice") == {"openai_api_key": "sk-1"}, 1.0)
    cfg.user_datas["alice"]["gpt_model"] = "gpt-4o"  # nested, through the table
    assert wait_until(lambda: store.load_user_datas().get("alice", {}).get("gpt_model") == "gpt-4o", 1.0)
    held = {"n": 1}
    cfg.user_datas["bob"] = held
    assert cfg.get_user_data("bob") is held  # the same dict, as in the original
    held["n"] = 2
    assert wait_until(lambda: store.load_user_datas().get("bob") == {"n": 2}, 1.0)
    del cfg.user_datas["alice"]
    assert "alice" not in cfg.user_datas
    assert wait_until(lambda: "alice" not in store.load_user_datas(), 1.0)
    assert cfg.user_datas.pop("nobody", None) is None


def test_assigning_user_datas_replaces_every_user(live_config):
    cfg, store = live_config
    cfg.get_user_data("old")["k"] = 1
    cfg.user_data_book.flush()
    cfg.user_datas = {"carol": {"k": "v"}, 7: {"n": 7}}
    assert cfg.get_user_data("carol") == {"k": "v"} and cfg.user_datas["7"] == {"n": 7}
    cfg.user_data_book.flush()
    assert store.load_user_datas() == {"carol": {"k": "v"}, "7": {"n": 7}}


def test_user_datas_refuses_values_that_are_not_dicts(live_config):
    cfg, store = live_config
    cfg.user_datas["dave"] = {"k": 1}
    with pytest.raises(TypeError, match="must be a dict"):
        cfg.user_datas["dave"] = "text"
    with pytest.raises(TypeError, match="must be a dict"):
        cfg.user_datas = {"erin": {"ok": 1}, "frank": ["not", "a", "dict"]}
    assert dict(cfg.user_datas) == {"dave": {"k": 1}}  # unchanged


def test_a_stop_saves_changes_made_after_the_watch_window(tmp_path, monkeypatch):
    # A plugin keeps the dict and changes it long after fetching it, or stores a plain dict
    # of its own: the original saved everything at a stop, and so must we.
    monkeypatch.setattr(user_data_module, "FLUSH_INTERVAL", 3600.0)  # only explicit flushes
    store = SQLiteStore(str(tmp_path / "state.db"))
    book = UserDataBook()
    book.attach(store)
    alice = book.get("alice")
    alice["hist"] = []
    book.data["bob"] = held = {"a": 1}
    book.flush()
    monkeypatch.setattr(user_data_module, "WATCH_SECONDS", 0.0)
    book.flush()  # the watch window is over: later nested changes go unseen by routine flushes
    alice["hist"].append("x")
    held["a"] = 2
    book.flush()
    assert store.load_user_datas() == {"alice": {"hist": []}, "bob": {"a": 1}}
    book.close()
    assert store.load_user_datas() == {"alice": {"hist": ["x"]}, "bob": {"a": 2}}
    store.close()


def test_flush_tracked_saves_what_this_thread_touched_and_nothing_else(tmp_path):
    # Without the flusher thread: what is saved here is saved by flush_tracked alone. The
    # pipeline calls it before marking a message answered, so a kill -9 right after the
    # answer cannot lose a change the answer depended on.
    store = SQLiteStore(str(tmp_path / "state.db"))
    try:
        book = UserDataBook()
        book._store = store
        other = book.get("bystander")
        book.track()
        data = book.get("carol")
        data.setdefault("counts", {})
        data["counts"]["hello"] = 1  # a nested change: no __setitem__ on the book's dict
        other["late"] = True  # fetched before track(), changed on this thread: noted too
        assert book.flush_tracked() == 2
        saved = SQLiteStore(str(tmp_path / "state.db")).load_user_datas()
        assert saved == {"carol": {"counts": {"hello": 1}}, "bystander": {"late": True}}
        # Tracking ended: later changes wait for the flusher, as before.
        book.get("dave")["x"] = 1
        assert book.flush_tracked() == 0
        assert "dave" not in store.load_user_datas()
    finally:
        store.close()
