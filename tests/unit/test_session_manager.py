"""Session and SessionManager: history, prompts, TTL, size bound, threads."""
from __future__ import annotations

import threading

import pytest

from bot import session_manager as sm
from bot.session_manager import MAX_SESSIONS, Session, SessionManager
from config import conf
from tests.fakes.clock import FakeClock


@pytest.fixture(autouse=True)
def restore_conf(settings):
    yield  # `settings` (tests/conftest.py) restores the live config, nested values too




@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(SessionManager, "clock", staticmethod(fake))
    return fake


class CountingSession(Session):
    """Keeps at most `max_tokens` messages besides the system one (one message = one token)."""

    def __init__(self, session_id, system_prompt=None, model="m"):
        super().__init__(session_id, system_prompt)
        self.model = model
        self.discard_calls = []

    def calc_tokens(self):
        return len(self.messages) - 1

    def discard_exceeding(self, max_tokens=None, cur_tokens=None):
        self.discard_calls.append((max_tokens, cur_tokens))
        while self.calc_tokens() > max_tokens:
            del self.messages[1]
        return self.calc_tokens()


def test_session_starts_with_character_desc():
    conf()["character_desc"] = "You are a test bot."
    s = Session("u1")
    assert s.messages == [{"role": "system", "content": "You are a test bot."}]
    s.add_query("hi")
    s.add_reply("hello")
    assert [m["role"] for m in s.messages] == ["system", "user", "assistant"]
    s.reset()
    assert s.messages == [{"role": "system", "content": "You are a test bot."}]
    s.set_system_prompt("New prompt")
    assert s.messages == [{"role": "system", "content": "New prompt"}]


def test_session_without_character_desc_has_an_empty_prompt():
    # The original's sessions read conf().get("character_desc", ""): no prompt unless set
    # (the "you are ChatGPT" text is only in its table).
    dict.pop(conf(), "character_desc", None)
    assert Session("u").system_prompt == ""
    assert Session("u").messages == [{"role": "system", "content": ""}]


def test_base_session_token_methods_are_abstract():
    s = Session("u", "p")
    with pytest.raises(NotImplementedError):
        s.calc_tokens()
    with pytest.raises(NotImplementedError):
        s.discard_exceeding(100)


def test_build_query_reply_clear():
    manager = SessionManager(CountingSession, model="gpt-x")
    s = manager.build_session("alice")
    assert isinstance(s, CountingSession) and s.model == "gpt-x"
    assert manager.build_session("alice") is s
    manager.session_query("q1", "alice")
    manager.session_reply("a1", "alice", total_tokens=42)
    assert [m["content"] for m in s.messages[1:]] == ["q1", "a1"]
    assert s.discard_calls == [(1000, None), (1000, 42)]
    manager.clear_session("alice")
    manager.clear_session("never-existed")  # no error
    assert manager.build_session("alice") is not s
    manager.build_session("bob")
    manager.clear_all_session()
    assert len(manager.sessions) == 0


def test_new_system_prompt_resets_existing_session():
    manager = SessionManager(CountingSession)
    s = manager.build_session("alice", "first")
    manager.session_query("q", "alice")
    again = manager.build_session("alice", "second")
    assert again is s
    assert s.messages == [{"role": "system", "content": "second"}]


def test_none_session_id_is_not_stored():
    manager = SessionManager(CountingSession)
    s = manager.session_query("q", None)
    assert s.session_id is None and len(manager.sessions) == 0


def test_history_is_trimmed_to_conversation_max_tokens():
    conf()["conversation_max_tokens"] = 3
    manager = SessionManager(CountingSession)
    for i in range(5):
        manager.session_query(f"q{i}", "u")
        manager.session_reply(f"a{i}", "u")
    s = manager.build_session("u")
    assert [m["content"] for m in s.messages] == [s.system_prompt, "a3", "q4", "a4"]


def test_token_counting_error_is_logged_not_raised():
    manager = SessionManager(Session)  # base class: discard_exceeding raises
    s = manager.session_query("q", "u")
    manager.session_reply("a", "u")
    assert [m["role"] for m in s.messages] == ["system", "user", "assistant"]


def test_sessions_expire_after_ttl(clock):
    conf()["expires_in_seconds"] = 60
    manager = SessionManager(CountingSession)
    s = manager.build_session("u")
    clock.advance(59)
    assert manager.build_session("u") is s  # used: TTL restarts
    clock.advance(59)
    assert manager.build_session("u") is s
    clock.advance(61)
    assert manager.build_session("u") is not s


def test_idle_sessions_are_purged_without_reads(clock):
    conf()["expires_in_seconds"] = 60
    manager = SessionManager(CountingSession)
    for i in range(100):
        manager.build_session(f"old{i}")
    clock.advance(61)
    manager.build_session("new")
    assert len(manager.sessions) == 1  # the old ones are gone, not just hidden


def test_zero_ttl_never_expires(clock):
    conf()["expires_in_seconds"] = 0
    manager = SessionManager(CountingSession)
    s = manager.build_session("u")
    clock.advance(10 * 365 * 24 * 3600)
    manager.build_session("other")
    assert manager.build_session("u") is s


@pytest.mark.parametrize("ttl", [0, 3600])
def test_many_sessions_never_read_again_stay_bounded(ttl):
    conf()["expires_in_seconds"] = ttl
    manager = SessionManager(CountingSession)
    for i in range(20_000):
        manager.session_query("hello", f"user-{i}")
    assert len(manager.sessions) <= MAX_SESSIONS
    assert MAX_SESSIONS == sm.MAX_SESSIONS == 10_000
    # The most recent users keep their history.
    assert "user-19999" in manager.sessions


def test_concurrent_build_session_creates_one_session():
    created = []
    lock = threading.Lock()

    class SlowSession(CountingSession):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            with lock:
                created.append(self)

    manager = SessionManager(SlowSession)
    barrier = threading.Barrier(8)
    results = []

    def worker(n):
        barrier.wait()
        for i in range(50):
            results.append(manager.session_query(f"q{n}-{i}", "shared"))

    conf()["conversation_max_tokens"] = 100_000
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(created) == 1
    assert all(r is created[0] for r in results)
    assert len(created[0].messages) == 1 + 8 * 50  # no lost appends
