"""Feishu event envelopes (schema 2.0) and a sender that pushes them like the platform
(reference/channel-protocols.md §4.2, §4.3): plain or encrypted, with the signature headers,
within a 3 s deadline.

    sender = EventSender("http://127.0.0.1:9891/", token="vt", encrypt_key="ek")
    sender.challenge()                       # URL verification
    sender.send(text_event("ou_alice", "hi"))  # -> Delivery(status, body, elapsed)
"""
from __future__ import annotations

import itertools
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from . import crypto

APP_ID = "cli_simulated0001"
TENANT = "tenant-sim"
_counter = itertools.count(1)


def new_message_id() -> str:
    return f"om_{uuid.uuid4().hex}"


def envelope(event: dict, token: str, event_id: str | None = None,
             event_type: str = "im.message.receive_v1") -> dict:
    return {
        "schema": "2.0",
        "header": {"event_id": event_id or uuid.uuid4().hex, "event_type": event_type,
                   "create_time": str(int(time.time() * 1000)), "token": token, "app_id": APP_ID,
                   "tenant_key": TENANT},
        "event": event,
    }


def message_event(sender: str, message_type: str, content: dict, *, chat_id: str | None = None,
                  message_id: str | None = None, mentions: list[dict] | None = None) -> dict:
    """A message event from `sender` (an open id); in the group `chat_id` when given, else p2p."""
    return {
        "sender": {"sender_id": {"open_id": sender, "union_id": "on_" + sender, "user_id": sender[-8:]},
                   "sender_type": "user", "tenant_key": TENANT},
        "message": {
            "message_id": message_id or new_message_id(),
            "root_id": "", "parent_id": "",
            "create_time": str(int(time.time() * 1000)), "update_time": str(int(time.time() * 1000)),
            "chat_id": chat_id or f"oc_p2p_{sender}",
            "chat_type": "group" if chat_id else "p2p",
            "message_type": message_type,
            "content": json.dumps(content, ensure_ascii=False),
            "mentions": mentions or [],
            "user_agent": "simulator",
        },
    }


def mention(key: str, open_id: str, name: str) -> dict:
    return {"key": key, "id": {"open_id": open_id, "union_id": "on_" + open_id, "user_id": open_id[-8:]},
            "name": name, "tenant_key": TENANT}


def text_event(sender: str, text: str, **kwargs: Any) -> dict:
    return message_event(sender, "text", {"text": text}, **kwargs)


@dataclass
class Delivery:
    status: int  # 0: no answer within the deadline
    body: bytes
    elapsed: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class EventSender:
    def __init__(self, url: str, token: str, encrypt_key: str = "", deadline: float = 3.0) -> None:
        self.url = url
        self.token = token
        self.encrypt_key = encrypt_key
        self.deadline = deadline
        self.http = httpx.Client(timeout=deadline, trust_env=False)

    def close(self) -> None:
        self.http.close()

    def seal(self, payload: dict, *, timestamp: int | None = None, forge_signature: bool = False,
             nonce: str | None = None, signed: bool = True) -> tuple[bytes, dict]:
        """(body, headers) of `payload` as the platform would post it; `signed=False`: without
        the signature headers (the console's URL verification may come so; lark-oapi answers
        it without looking at them)."""
        if not signed:
            body, _ = self.seal(payload, timestamp=timestamp, nonce=nonce)
            return body, {"Content-Type": "application/json"}
        plain = json.dumps(payload, ensure_ascii=False)
        timestamp_text = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce or secrets.token_hex(8)
        if not self.encrypt_key:
            body = plain.encode("utf-8")
            return body, {"Content-Type": "application/json", "X-Lark-Request-Timestamp": timestamp_text,
                          "X-Lark-Request-Nonce": nonce, "X-Lark-Signature": crypto.sign(timestamp_text, nonce, "", body)}
        body = json.dumps({"encrypt": crypto.encrypt(self.encrypt_key, plain)}).encode("utf-8")
        signature = crypto.sign(timestamp_text, nonce, self.encrypt_key, body)
        if forge_signature:
            signature = crypto.sign(timestamp_text, nonce, "not-the-key", body)
        return body, {"Content-Type": "application/json", "X-Lark-Request-Timestamp": timestamp_text,
                      "X-Lark-Request-Nonce": nonce, "X-Lark-Signature": signature}

    def post(self, body: bytes, headers: dict | None = None) -> Delivery:
        start = time.monotonic()
        try:
            r = self.http.post(self.url, content=body, headers=headers or {"Content-Type": "application/json"})
        except httpx.HTTPError:
            return Delivery(0, b"", time.monotonic() - start)
        return Delivery(r.status_code, r.content, time.monotonic() - start)

    def send_payload(self, payload: dict, **seal: Any) -> Delivery:
        return self.post(*self.seal(payload, **seal))

    def send(self, event: dict, *, event_id: str | None = None, token: str | None = None, **seal: Any) -> Delivery:
        return self.send_payload(envelope(event, self.token if token is None else token, event_id), **seal)

    def challenge(self, challenge: str | None = None, token: str | None = None, signed: bool = True) -> Delivery:
        return self.send_payload({"challenge": challenge or secrets.token_hex(8),
                                  "token": self.token if token is None else token, "type": "url_verification"},
                                 signed=signed)
