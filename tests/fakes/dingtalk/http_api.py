"""The HTTP side of the DingTalk simulator (reference/channel-protocols.md §5.2-§5.4, §5.7): the
Stream gateway, the access token, the session webhooks, the robot API, the robot's file
download, the old API's media upload and the AI card APIs.

Choices where the reference is silent:
- OpenAPI errors are HTTP 4xx with `{"code", "message"}`; a missing or unknown token is 401
  `InvalidAuthentication`; wrong credentials at the gateway or the token call are 401
  `invalidClientIdOrSecret` (gateway) / 400 `invalidClientIdOrSecret` (token);
- an expired or unknown session webhook answers 200 `{"errcode": 300001, "errmsg": "session expired"}`;
- the media upload answers `{"errcode": 0, "media_id": "@media-N"}`; an unknown token is errcode 40014;
- the robot API refuses a msgParam over 15,000 bytes with 400 `invalidParameter.msgParam`;
- `/v1.0/card/streaming` to an unknown outTrackId is 400 `cardNotExist`; an update after
  `isFinalize` is recorded as an error (`sim.errors`) and refused with 400; each accepted update
  is recorded with its arrival time (`at`, monotonic).
"""
from __future__ import annotations

from email import policy
from email.parser import BytesParser
import json
import time
import uuid
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from .payloads import now_ms

MSG_PARAM_MAX = 15000  # bytes, the robot API's documented limit

if TYPE_CHECKING:
    from .server import DingTalkSimulator


class Handler(BaseHTTPRequestHandler):
    sim: "DingTalkSimulator"
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    # ------------------------------------------------------------------ plumbing
    def _reply(self, status: int, body, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self) -> dict:
        try:
            data = json.loads(self._body() or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = url.path, {k: v[0] for k, v in parse_qs(url.query).items()}
        sim = self.sim
        injected = sim._take_failure(path)
        if path == "/oapi/media/upload":
            raw = self._body()
            if injected is not None:
                return self._reply(*injected)
            return self._upload(query, raw)
        body = self._json() if method in ("POST", "PUT") else {}
        with sim.lock:
            sim.requests.append({"method": method, "path": path, "query": query, "json": body,
                                 "token": self.headers.get("x-acs-dingtalk-access-token")})
        if injected is not None:
            return self._reply(*injected)
        route = ROUTES.get((method, path))
        if route is not None:
            return route(self, body)
        if method == "GET" and path.startswith("/files/"):
            return self._file(path[len("/files/"):])
        if method == "POST" and path == "/robot/sendBySession":
            return self._webhook(query.get("session", ""), body)
        self._reply(404, {"code": "notFound", "message": path})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def _authorised(self) -> bool:
        token = self.headers.get("x-acs-dingtalk-access-token") or ""
        if self.sim._token_valid(token):
            return True
        self._reply(401, {"code": "InvalidAuthentication", "message": "access token is invalid or expired"})
        return False

    # ------------------------------------------------------------------ gateway and token
    def _gateway(self, body: dict) -> None:
        sim = self.sim
        client, secret = body.get("clientId"), body.get("clientSecret")
        with sim.lock:
            sim.gateway_calls.append(body)
            good = sim.apps.get(client) == secret and client is not None
        if not good:
            return self._reply(401, {"code": "invalidClientIdOrSecret", "message": "clientId or clientSecret is wrong"})
        subs = body.get("subscriptions") or []
        if not any(isinstance(s, dict) and s.get("type") == "CALLBACK" for s in subs):
            return self._reply(400, {"code": "invalidSubscriptions", "message": "no subscription"})
        ticket = uuid.uuid4().hex
        with sim.lock:
            sim.tickets[ticket] = {"client_id": client, "expires": time.monotonic() + sim.ticket_ttl, "used": False}
        self._reply(200, {"endpoint": sim.ws_endpoint, "ticket": ticket})

    def _token(self, body: dict) -> None:
        sim = self.sim
        with sim.lock:
            sim.token_calls += 1
            key = str(body.get("appKey"))
            sim.token_calls_by_app[key] = sim.token_calls_by_app.get(key, 0) + 1
            good = sim.apps.get(body.get("appKey")) == body.get("appSecret") and body.get("appKey") is not None
            if good:
                token = "tok-" + uuid.uuid4().hex
                sim.tokens[token] = time.monotonic() + sim.token_ttl
        if not good:
            return self._reply(400, {"code": "invalidClientIdOrSecret", "message": "appKey or appSecret is wrong"})
        self._reply(200, {"accessToken": token, "expireIn": sim.token_ttl})

    # ------------------------------------------------------------------ replies
    def _webhook(self, session: str, body: dict) -> None:
        sim = self.sim
        with sim.lock:
            grant = sim.sessions.get(session)
            live = grant is not None and grant["expires_ms"] > now_ms()
            sim.webhook_posts.append({"session": session, "json": body, "accepted": live,
                                      "conversation": grant["conversation"] if grant else None})
            sim.changed.notify_all()
        if not live:
            return self._reply(200, {"errcode": 300001, "errmsg": "session expired"})
        self._reply(200, {"errcode": 0, "errmsg": "ok"})

    def _robot_send(self, body: dict, kind: str) -> None:
        if not self._authorised():
            return
        sim = self.sim
        if body.get("robotCode") not in sim.apps or not body.get("msgKey"):
            return self._reply(400, {"code": "invalidParameter", "message": "robotCode or msgKey"})
        if len(str(body.get("msgParam") or "").encode("utf-8")) > MSG_PARAM_MAX:
            return self._reply(400, {"code": "invalidParameter.msgParam", "message": "msgParam longer than 15000 bytes"})
        try:
            param = json.loads(body.get("msgParam") or "")
        except ValueError:
            return self._reply(400, {"code": "invalidParameter", "message": "msgParam is not JSON"})
        with sim.lock:
            sim.robot_sends.append({"kind": kind, "json": body, "param": param})
            sim.changed.notify_all()
        answer = {"processQueryKey": uuid.uuid4().hex}
        if kind == "p2p":
            answer.update(invalidStaffIdList=[], flowControlledStaffIdList=[])
        self._reply(200, answer)

    # ------------------------------------------------------------------ files
    def _download(self, body: dict) -> None:
        if not self._authorised():
            return
        code = body.get("downloadCode")
        with self.sim.lock:
            known = code in self.sim.files
        if not known:
            return self._reply(400, {"code": "invalidParameter.downloadCode", "message": "unknown downloadCode"})
        self._reply(200, {"downloadUrl": f"{self.sim.http_url}/files/{code}"})

    def _file(self, code: str) -> None:
        with self.sim.lock:
            data = self.sim.files.get(code)
            if data is not None:
                self.sim.file_fetches.append(code)
        if data is None:
            return self._reply(404, b"not found", "text/plain")
        self._reply(200, data, "application/octet-stream")

    def _upload(self, query: dict, raw: bytes) -> None:
        sim = self.sim
        if not sim._token_valid(query.get("access_token", "")):
            return self._reply(200, {"errcode": 40014, "errmsg": "invalid access_token"})
        parsed = BytesParser(policy=policy.HTTP).parsebytes(
            b"Content-Type: " + self.headers.get("Content-Type", "").encode() + b"\r\n\r\n" + raw)
        media, kind = None, query.get("type") or ""
        for part in parsed.iter_parts() if parsed.is_multipart() else []:
            if part.get_param("name", header="content-disposition") == "media":
                media = (part.get_filename() or "", part.get_payload(decode=True) or b"")
        media_ok = media is not None
        if not media_ok or kind not in ("image", "voice", "video", "file"):
            return self._reply(200, {"errcode": 40004, "errmsg": "invalid media type or no media"})
        with sim.lock:
            media_id = f"@media-{len(sim.uploads) + 1}"
            sim.uploads[media_id] = {"type": kind, "name": media[0], "data": media[1]}
        self._reply(200, {"errcode": 0, "errmsg": "ok", "type": kind, "media_id": media_id, "created_at": now_ms()})

    # ------------------------------------------------------------------ cards
    def _card_create(self, body: dict) -> None:
        if not self._authorised():
            return
        sim = self.sim
        track = body.get("outTrackId")
        if not track or not body.get("cardTemplateId") or not body.get("openSpaceId"):
            return self._reply(400, {"code": "invalidParameter", "message": "outTrackId, cardTemplateId, openSpaceId"})
        with sim.lock:
            sim.cards[track] = {"create": body, "updates": [], "instance_updates": [], "finalized": False}
            sim.changed.notify_all()
        self._reply(200, {"success": True, "result": {"outTrackId": track, "deliverResults": [{"success": True}]}})

    def _card_streaming(self, body: dict) -> None:
        if not self._authorised():
            return
        sim = self.sim
        with sim.lock:
            card = sim.cards.get(body.get("outTrackId"))
            if card is None:
                return self._reply(400, {"code": "cardNotExist", "message": "unknown outTrackId"})
            if card["finalized"]:
                sim.errors.append(("update after finalize", body))
                return self._reply(400, {"code": "cardFinalized", "message": "the card was finalized"})
            space = str(card["create"].get("openSpaceId", ""))
            failing = [k for k, n in sim.finalize_failures.items() if n > 0 and space.endswith(k)]
            if body.get("isFinalize") and failing:
                sim.finalize_failures[failing[0]] -= 1
                card["refused_finalizes"] = card.get("refused_finalizes", 0) + 1
                sim.changed.notify_all()
                return self._reply(500, {"code": "ServiceUnavailable", "message": "injected"})
            card["updates"].append({**body, "at": time.monotonic()})
            if body.get("isFinalize"):
                card["finalized"] = True
            sim.changed.notify_all()
        self._reply(200, {"success": True})

    def _card_instance(self, body: dict) -> None:
        if not self._authorised():
            return
        sim = self.sim
        with sim.lock:
            card = sim.cards.get(body.get("outTrackId"))
            if card is None:
                return self._reply(400, {"code": "cardNotExist", "message": "unknown outTrackId"})
            card["instance_updates"].append(body)
            card["instance_attempts"] = card.get("instance_attempts", 0) + 1
            sim.changed.notify_all()
        self._reply(200, {"success": True})


ROUTES = {
    ("POST", "/v1.0/gateway/connections/open"): Handler._gateway,
    ("POST", "/v1.0/oauth2/accessToken"): Handler._token,
    ("POST", "/v1.0/robot/oToMessages/batchSend"): lambda h, b: h._robot_send(b, "p2p"),
    ("POST", "/v1.0/robot/groupMessages/send"): lambda h, b: h._robot_send(b, "group"),
    ("POST", "/v1.0/robot/messageFiles/download"): Handler._download,
    ("POST", "/v1.0/card/instances/createAndDeliver"): Handler._card_create,
    ("PUT", "/v1.0/card/streaming"): Handler._card_streaming,
    ("PUT", "/v1.0/card/instances"): Handler._card_instance,
}
