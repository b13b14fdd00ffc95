import datetime
import importlib.util
import sys
import types

import pytest

from common import time_check
from common.time_check import is_in_service_time, time_checker

T = datetime.time


def test_plain_window():
    assert is_in_service_time(T(9, 0), "09:00", "18:00")
    assert is_in_service_time(T(18, 0, 59), "09:00", "18:00")  # stop minute included
    assert not is_in_service_time(T(18, 1), "09:00", "18:00")
    assert not is_in_service_time(T(8, 59), "09:00", "18:00")
    assert is_in_service_time(datetime.datetime(2024, 1, 1, 12, 30), "9:00", "18:00")


def test_window_across_midnight():
    assert is_in_service_time(T(23, 30), "22:00", "06:00")
    assert is_in_service_time(T(0, 0), "22:00", "06:00")
    assert is_in_service_time(T(6, 0), "22:00", "06:00")
    assert not is_in_service_time(T(12, 0), "22:00", "06:00")
    assert not is_in_service_time(T(21, 59), "22:00", "06:00")


def test_whole_day_and_always_on():
    for minute in range(0, 24 * 60, 7):
        now = T(minute // 60, minute % 60)
        assert is_in_service_time(now, "00:00", "24:00")
        assert is_in_service_time(now, "08:00", "08:00")
    assert is_in_service_time(T(23, 59), "06:00", "24:00")
    assert not is_in_service_time(T(5, 59), "06:00", "24:00")


@pytest.mark.parametrize("bad", ["25:00", "24:01", "12:60", "noon", "12", "", "1:2", None])
def test_invalid_times_raise(bad):
    with pytest.raises(ValueError, match="HH:MM"):
        is_in_service_time(T(1, 0), bad, "10:00")
    with pytest.raises(ValueError, match="chat_stop_time"):
        is_in_service_time(T(1, 0), "10:00", bad)


class Msg:
    def __init__(self, content):
        self.content = content


class Channel:
    def __init__(self):
        self.handled = []

    @time_checker
    def handle_single(self, cmsg):
        self.handled.append(cmsg.content)
        return "ok"


def _use_config(monkeypatch, values):
    monkeypatch.setattr(time_check, "_conf", lambda: values)


def _closed_window_now():
    # A two-minute window starting two hours from now, so "now" is outside it.
    start = datetime.datetime.now() + datetime.timedelta(hours=2)
    stop = start + datetime.timedelta(minutes=1)
    return {"chat_time_module": True, "chat_start_time": start.strftime("%H:%M"),
            "chat_stop_time": stop.strftime("%H:%M")}


def test_time_checker_off_passes(monkeypatch):
    _use_config(monkeypatch, {"chat_time_module": False})
    ch = Channel()
    assert ch.handle_single(Msg("hi")) == "ok"
    assert ch.handled == ["hi"]


def test_time_checker_drops_outside_window_but_allows_reconf(monkeypatch):
    _use_config(monkeypatch, _closed_window_now())
    ch = Channel()
    assert ch.handle_single(Msg("hi")) is None
    assert ch.handle_single(Msg("#reconf")) == "ok"
    assert ch.handle_single(Msg("please #更新配置")) == "ok"
    assert ch.handled == ["#reconf", "please #更新配置"]


def test_time_checker_inside_window_and_bad_config(monkeypatch):
    _use_config(monkeypatch, {"chat_time_module": True, "chat_start_time": "00:00", "chat_stop_time": "24:00"})
    ch = Channel()
    assert ch.handle_single(Msg("hi")) == "ok"
    _use_config(monkeypatch, {"chat_time_module": True, "chat_start_time": "9am", "chat_stop_time": "24:00"})
    assert ch.handle_single(Msg("typo")) == "ok"  # bad config fails open


def test_time_checker_reads_config_module(monkeypatch):
    # The real lazy `from config import conf` path: with the real config when
    # config.py exists, else with a stand-in module.
    if importlib.util.find_spec("config") is None:
        fake = types.ModuleType("config")
        fake.conf = lambda: _closed_window_now()
        monkeypatch.setitem(sys.modules, "config", fake)
    else:
        try:
            from config import conf
        except Exception as error:  # config.py is someone else's, maybe mid-edit
            pytest.skip(f"config.py does not import: {error}")
        for key, value in _closed_window_now().items():
            monkeypatch.setitem(conf(), key, value)
    ch = Channel()
    assert ch.handle_single(Msg("hi")) is None
    assert ch.handle_single(Msg("#reconf")) == "ok"
