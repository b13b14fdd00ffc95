"""Test-side control of the ntwork simulator running inside another process (`python app.py`).

    ctl = SimControl(tmp_path / "sim")
    ctl.write_scenario(rooms=[{"conversation_id": "R:1", "nickname": "Team"}], data_ready_after=0)
    daemon = Daemon(folder, env=ctl.env())          # PYTHONPATH: tests/fakes first; NTWORK_SIM_DIR
    ctl.wait_for_call("wait_login")
    ctl.inject(ctl.text("R:1", "7881300000000001", "Alice", "@Bot hi", at_list=[ctl.at(ctl.user_id, "Bot")]))
    rec = ctl.wait_for_call("send_room_at_msg", lambda r: "hi" in r["data"]["content"])

The payload builders are also module-level functions (usable with the in-process `ntwork.simulator.SIM`,
whose `inject` accepts the same messages). Every id and `send_time` is a string, as on the real wire
(reference/ntwork.md §4.1/§4.2). This module never imports the fake ntwork package.
"""
from __future__ import annotations

import itertools
import json
import os
import secrets
import time
from typing import Any, Callable, Iterable, Optional

FAKES = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(FAKES))

# ntwork wire ids (kept here so the test process needs no ntwork import)
MT_USER_LOGIN_MSG = 11026
MT_USER_LOGOUT_MSG = 11027
MT_RECV_TEXT_MSG = 11041
MT_RECV_IMAGE_MSG = 11042
MT_RECV_VIDEO_MSG = 11043
MT_RECV_VOICE_MSG = 11044
MT_RECV_FILE_MSG = 11045
MT_RECV_LINK_CARD_MSG = 11047
MT_ROOM_MEMBER_JOINED = 11072  # no ntwork constant exists; dify registers the bare literal

DEFAULT_USER_ID = "1688854420437671"  # the simulator's default login user_id

SCENARIO_KEYS = frozenset({
    "login_info", "login_delay", "data_ready_after", "external_contacts", "inner_contacts", "rooms",
    "room_members", "fail", "timeout", "sync_timeout", "send_results", "cdn_files", "not_ready",
    "installed_version", "version_match",
})

_counter = itertools.count(1)


def _next() -> int:
    return next(_counter)


def _now() -> str:
    return str(int(time.time()))


def _envelope(conversation_id: str, sender: str, sender_name: str, server_id: Optional[str],
              send_time: Optional[Any], receiver: str) -> dict:
    n = _next()
    return {
        "appinfo": secrets.token_hex(16),
        "conversation_id": conversation_id,
        "is_pc": 0,
        "local_id": str(n),
        "receiver": receiver,
        "send_time": _now() if send_time is None else str(send_time),
        "sender": sender,
        "sender_name": sender_name,
        "server_id": str(1000000 + n) if server_id is None else str(server_id),
    }


def at(user_id: str, nickname: str) -> dict:
    """One `at_list` entry."""
    return {"user_id": user_id, "nickname": nickname}


def _at_list(items: Optional[Iterable[Any]]) -> list:
    result = []
    for item in items or []:
        if isinstance(item, dict):
            result.append(dict(item))
        elif isinstance(item, (tuple, list)):
            result.append(at(str(item[0]), str(item[1])))
        else:
            raise TypeError("at_list items are {'user_id', 'nickname'} dicts or (user_id, nickname) pairs")
    return result


def _cdn(file_id: Optional[str], url: Optional[str], auth_key: Optional[str], aes_key: Optional[str],
         size: Optional[int]) -> dict:
    cdn = {"aes_key": aes_key or secrets.token_hex(16), "size": 2048 if size is None else size}
    if url:
        cdn["url"] = url
        cdn["auth_key"] = auth_key or secrets.token_hex(8)
    else:
        cdn["file_id"] = file_id or f"3069020102046230600201000204{secrets.token_hex(12)}"
    return cdn


def text(conversation_id: str, sender: str, sender_name: str, content: str, at_list=None,
         server_id=None, send_time=None, receiver: str = DEFAULT_USER_ID) -> dict:
    """11041. `at_list`: [{"user_id", "nickname"}] or [(user_id, nickname)]."""
    data = _envelope(conversation_id, sender, sender_name, server_id, send_time, receiver)
    data.update({"at_list": _at_list(at_list), "content": content, "content_type": 2})
    return {"type": MT_RECV_TEXT_MSG, "data": data}


def image(conversation_id: str, sender: str, sender_name: str, file_id=None, aes_key=None, size=None,
          url=None, auth_key=None, server_id=None, send_time=None, receiver: str = DEFAULT_USER_ID) -> dict:
    """11042. C2C variant (`cdn.file_id`) by default; WX-CDN variant (`cdn.url` + `auth_key`) when `url`."""
    data = _envelope(conversation_id, sender, sender_name, server_id, send_time, receiver)
    data["cdn"] = _cdn(file_id, url, auth_key, aes_key, size)
    return {"type": MT_RECV_IMAGE_MSG, "data": data}


def voice(conversation_id: str, sender: str, sender_name: str, file_id=None, aes_key=None, size=None,
          server_id=None, send_time=None, receiver: str = DEFAULT_USER_ID) -> dict:
    """11044 (SILK voice, always C2C: `cdn.file_id`). Downloading it yields a valid SILK file."""
    data = _envelope(conversation_id, sender, sender_name, server_id, send_time, receiver)
    data["cdn"] = _cdn(file_id, None, None, aes_key, size)
    return {"type": MT_RECV_VOICE_MSG, "data": data}


def file(conversation_id: str, sender: str, sender_name: str, file_name: str = "report.pdf", file_id=None,
         aes_key=None, size=None, url=None, auth_key=None, server_id=None, send_time=None,
         receiver: str = DEFAULT_USER_ID) -> dict:
    """11045 with `cdn.file_name`; C2C by default, WX-CDN when `url`."""
    data = _envelope(conversation_id, sender, sender_name, server_id, send_time, receiver)
    data["cdn"] = _cdn(file_id, url, auth_key, aes_key, size)
    data["cdn"]["file_name"] = file_name
    return {"type": MT_RECV_FILE_MSG, "data": data}


def link(conversation_id: str, sender: str, sender_name: str, url: str, title: str = "", desc: str = "",
         image_url: str = "", server_id=None, send_time=None, receiver: str = DEFAULT_USER_ID) -> dict:
    """11047 link card (`data.url`; title/desc/image_url are best guesses)."""
    data = _envelope(conversation_id, sender, sender_name, server_id, send_time, receiver)
    data.update({"url": url, "title": title, "desc": desc, "image_url": image_url})
    return {"type": MT_RECV_LINK_CARD_MSG, "data": data}


def member_joined(room_id: str, user_id: str, name: str, room_key: str = "conversation_id") -> dict:
    """11072 "new member joined": `member_list[0]` is the newcomer; the room id sits under `room_key`
    ("conversation_id" or "room_conversation_id"). No content, sender_name or send_time."""
    return {"type": MT_ROOM_MEMBER_JOINED,
            "data": {room_key: room_id, "member_list": [{"user_id": user_id, "name": name}]}}


class SimControl:
    """Drives the simulator of a daemon started with `env=ctl.env()`, through files in `folder`."""

    def __init__(self, folder: Any):
        self.folder = os.path.abspath(str(folder))
        self.inbox = os.path.join(self.folder, "inbox")
        self.calls_path = os.path.join(self.folder, "calls.jsonl")
        self.scenario_path = os.path.join(self.folder, "scenario.json")
        os.makedirs(self.inbox, exist_ok=True)
        self.scenario: dict = {}

    # ---- set-up
    def write_scenario(self, **scenario: Any) -> str:
        """Write scenario.json (read by the daemon when it imports ntwork). Same keys as
        `ntwork.simulator.SIM.configure`; unknown keys raise here."""
        unknown = set(scenario) - SCENARIO_KEYS
        if unknown:
            raise ValueError(f"unknown scenario keys {sorted(unknown)}; known: {sorted(SCENARIO_KEYS)}")
        self.scenario = dict(scenario)
        self._write_json(self.scenario_path, self.scenario)
        return self.scenario_path

    def env(self) -> dict:
        """Environment for the daemon: tests/fakes first on PYTHONPATH (so `import ntwork` finds the
        simulator), then the repository root, then whatever PYTHONPATH was; and NTWORK_SIM_DIR."""
        parts = [FAKES, ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        return {"PYTHONPATH": os.pathsep.join(parts), "NTWORK_SIM_DIR": self.folder}

    @property
    def user_id(self) -> str:
        return str((self.scenario.get("login_info") or {}).get("user_id", DEFAULT_USER_ID))

    # ---- commands (executed by the daemon's simulator in file-name order, within ~20 ms)
    def _command(self, command: dict) -> str:
        name = f"{time.time_ns():020d}-{os.getpid()}-{_next():06d}.json"
        path = os.path.join(self.inbox, name)
        self._write_json(path, command)
        return path

    def inject(self, msg_type: Any, data: Optional[dict] = None) -> str:
        """`inject(11041, {...})` or `inject(ctl.text(...))`. Returns the command file path."""
        message = dict(msg_type) if isinstance(msg_type, dict) else {"type": int(msg_type), "data": data or {}}
        return self._command({"inject": message})

    def crash(self) -> str:
        return self._command({"crash": True})

    def logout(self) -> str:
        return self._command({"logout": True})

    def login(self) -> str:
        return self._command({"login": True})

    def configure(self, **scenario: Any) -> str:
        """Change scenario keys of the running simulator (counters restart from the given values)."""
        unknown = set(scenario) - SCENARIO_KEYS
        if unknown:
            raise ValueError(f"unknown scenario keys {sorted(unknown)}")
        return self._command({"configure": scenario})

    def wait_inbox_empty(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while any(n.endswith(".json") for n in os.listdir(self.inbox)):
            if time.monotonic() > deadline:
                raise AssertionError(f"simulator did not take its commands within {timeout} s (is the daemon running "
                                     f"with NTWORK_SIM_DIR={self.folder}?)")
            time.sleep(0.02)

    # ---- payload builders (receiver defaults to the scenario's login user_id)
    def at(self, user_id: str, nickname: str) -> dict:
        return at(user_id, nickname)

    def text(self, conversation_id, sender, sender_name, content, at_list=None, server_id=None, send_time=None):
        return text(conversation_id, sender, sender_name, content, at_list, server_id, send_time, receiver=self.user_id)

    def image(self, conversation_id, sender, sender_name, **kwargs):
        kwargs.setdefault("receiver", self.user_id)
        return image(conversation_id, sender, sender_name, **kwargs)

    def voice(self, conversation_id, sender, sender_name, **kwargs):
        kwargs.setdefault("receiver", self.user_id)
        return voice(conversation_id, sender, sender_name, **kwargs)

    def file(self, conversation_id, sender, sender_name, file_name="report.pdf", **kwargs):
        kwargs.setdefault("receiver", self.user_id)
        return file(conversation_id, sender, sender_name, file_name, **kwargs)

    def link(self, conversation_id, sender, sender_name, url, **kwargs):
        kwargs.setdefault("receiver", self.user_id)
        return link(conversation_id, sender, sender_name, url, **kwargs)

    def member_joined(self, room_id, user_id, name, room_key="conversation_id"):
        return member_joined(room_id, user_id, name, room_key)

    # ---- observation
    def calls(self, method: Optional[str] = None) -> list:
        """Parsed calls.jsonl (every API call of the daemon, plus sim.* events), optionally one method."""
        try:
            with open(self.calls_path, encoding="utf-8") as f:
                lines = f.readlines()
        except FileNotFoundError:
            return []
        records = []
        for line in lines:
            if line.endswith("\n"):  # a line being written right now is skipped until complete
                records.append(json.loads(line))
        return [r for r in records if method is None or r["method"] == method]

    def clear_calls(self) -> None:
        if os.path.exists(self.calls_path):
            os.remove(self.calls_path)

    def wait_for_call(self, method: str, predicate: Optional[Callable[[dict], bool]] = None,
                      timeout: float = 20, since: int = 0) -> dict:
        """The first record of `method` (at index >= `since` in calls()) matching `predicate`."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.calls()
            for record in records[since:]:
                if record["method"] == method and (predicate is None or predicate(record)):
                    return record
            if time.monotonic() > deadline:
                tail = [(r["method"], r.get("result") if not isinstance(r.get("result"), (dict, list)) else "…")
                        for r in records[-15:]]
                raise AssertionError(f"no {method!r} call within {timeout} s; last calls: {tail}")
            time.sleep(0.02)

    @staticmethod
    def _write_json(path: str, value: Any) -> None:
        tmp = path + ".tmp"
        try:
            text = json.dumps(value, ensure_ascii=False)
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (a test's "\ud800"): written as its JSON escape
            text = json.dumps(value)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
