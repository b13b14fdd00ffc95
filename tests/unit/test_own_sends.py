"""channel/own_sends.py: how long a send is remembered and how many echoes it matches (the
channels' behaviour is in tests/e2e/test_wxy_process.py and test_wcf_process.py)."""
from __future__ import annotations

from channel.own_sends import ECHO_SECONDS, MEDIA, TEXT, OwnSends
from tests.fakes.clock import FakeClock


def test_a_send_matches_one_echo_in_its_conversation_only():
    own = OwnSends(clock=FakeClock())
    own.note_send("room", TEXT, "@Bob\u2005echo: hi")
    assert not own.is_echo("", "other-room", TEXT, "@Bob echo: hi")
    assert not own.is_echo("", "room", MEDIA, "")
    assert own.is_echo("", "room", TEXT, " @Bob echo:  hi")  # the mention space, trimmed
    assert not own.is_echo("", "room", TEXT, "@Bob echo: hi")  # the account writing the same again


def test_an_echo_known_by_its_id_also_uses_up_the_text_record():
    own = OwnSends(clock=FakeClock())
    own.note_id("sent-1", own.note_send("room", TEXT, "same text"))
    assert own.is_echo("sent-1", "room", TEXT, "whatever the payload says")
    assert not own.is_echo("", "room", TEXT, "same text")


def test_a_record_is_forgotten_after_its_time():
    clock = FakeClock()
    own = OwnSends(clock=clock)
    own.note_id("sent-1", own.note_send("room", TEXT, "late"))
    clock.advance(ECHO_SECONDS + 1)
    assert not own.is_echo("sent-1", "room", TEXT, "late")
