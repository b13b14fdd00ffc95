"""A lean client of a wechaty puppet service (reference/personal-wechat.md §3.2, §3.3).

The puppet service is a gRPC server (service `wechaty.Puppet`) reached over plaintext HTTP/2
(h2c, no TLS: the service has to run with WECHATY_PUPPET_SERVICE_NO_TLS_INSECURE_SERVER), the
token sent as the HTTP/2 `:authority`. Its address is either configured (the endpoint wins) or
discovered from the token at the hosties URL (`GET <base>/<token>` -> `{ip, port}`).

Only the calls a bot makes are wrapped, with the generated classes and stub of the
`wechaty-grpc` package (requirements-wxy.txt) and grpclib; the python-wechaty framework is not
used. The package is imported only when the channel runs (`load_stubs`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, AsyncIterator

import requests

REQUIREMENTS_FILE = "requirements-wxy.txt"
DEFAULT_PORT = 8788  # the puppet service's usual port, when an endpoint names none
UNARY_TIMEOUT = 30.0

# Event types (wechaty.puppet.EventType) the channel acts on.
EVENT_HEARTBEAT, EVENT_MESSAGE, EVENT_DONG, EVENT_ERROR = 1, 2, 3, 16
EVENT_SCAN, EVENT_READY, EVENT_RESET, EVENT_LOGIN, EVENT_LOGOUT = 22, 23, 24, 25, 26
# Message types (wechaty.puppet.MessageType).
MESSAGE_ATTACHMENT, MESSAGE_AUDIO, MESSAGE_IMAGE, MESSAGE_TEXT = 1, 2, 5, 6
IMAGE_HD = 2
# FileBox JSON (wechaty-puppet FileBoxType): what MessageImage/MessageFile give and MessageSendFile takes.
BOX_BASE64, BOX_URL = 1, 2


class MissingDependency(Exception):
    """The optional client packages are not installed."""


class PuppetError(Exception):
    """A call to the puppet service failed. `refused`: the service refused the token (trying
    again with the same token is useless)."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class DiscoveryError(PuppetError):
    pass


def load_stubs():
    """The modules this client needs: (grpclib.client, grpclib.exceptions, grpclib.const, the
    wechaty.Puppet stub module, its message module). Raises MissingDependency naming the file."""
    try:
        import grpclib.client
        import grpclib.const
        import grpclib.exceptions
        import wechaty_grpc.wechaty as service
        import wechaty_grpc.wechaty.puppet as messages
    except ImportError as e:
        raise MissingDependency(
            f"channel 'wxy' needs the wechaty puppet client ({e.name or e}); install it with "
            f"`pip install -r {REQUIREMENTS_FILE}`") from None
    return grpclib.client, grpclib.exceptions, grpclib.const, service, messages


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """`host:port` (or `host`, or `[v6]:port`) -> Endpoint. Raises ValueError."""
    text = text.strip()
    for scheme in ("grpc://", "http://"):
        if text.startswith(scheme):
            text = text[len(scheme):]
    text = text.rstrip("/")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError(f"no host in {text!r}")
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise ValueError(f"the port of {text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"the port of {text!r} is out of range")
    return Endpoint(host, port)


def discover(base_url: str, token: str, timeout: float = 10.0) -> Endpoint:
    """The address of the puppet service that serves `token`, from the hosties URL."""
    url = base_url.rstrip("/") + "/" + requests.utils.quote(token, safe="")
    try:
        answer = requests.get(url, timeout=timeout)
    except requests.RequestException as e:
        raise DiscoveryError(f"the discovery service at {base_url} is not reachable ({type(e).__name__})") from None
    if answer.status_code != 200:
        raise DiscoveryError(f"the discovery service at {base_url} answered HTTP {answer.status_code}")
    try:
        found = answer.json()
    except ValueError:
        raise DiscoveryError(f"the discovery service at {base_url} did not answer JSON") from None
    if not isinstance(found, dict):
        raise DiscoveryError(f"the discovery service at {base_url} answered {type(found).__name__}, not an object")
    ip, port = found.get("ip"), found.get("port")
    if not isinstance(ip, str) or not ip or ip == "0.0.0.0" or not isinstance(port, int) or port <= 0:
        raise DiscoveryError("the discovery service knows no running puppet service for this token (is the "
                             "service started, and the token right?)")
    return Endpoint(ip, port)


def file_box_json(data: bytes, name: str) -> str:
    import base64

    return json.dumps({"boxType": BOX_BASE64, "name": name, "metadata": {},
                       "base64": base64.b64encode(data).decode("ascii")})


def parse_file_box(text: str) -> dict:
    """A FileBox JSON as a dict with `name` and either `base64` or `remoteUrl`. Raises ValueError."""
    box = json.loads(text)
    if not isinstance(box, dict):
        raise ValueError("the file box is not an object")
    if not (isinstance(box.get("base64"), str) or isinstance(box.get("remoteUrl"), str)):
        raise ValueError(f"a file box of type {box.get('boxType')!r} with neither base64 nor remoteUrl")
    return box


class PuppetConnection:
    """One HTTP/2 connection to the puppet service; its coroutines run on one event loop."""

    def __init__(self, endpoint: Endpoint, token: str) -> None:
        client, self._errors, self._const, service, self.messages = load_stubs()
        self.endpoint = endpoint
        self._channel = client.Channel(endpoint.host, endpoint.port)
        if token:
            # The service tells its tokens apart by the HTTP/2 :authority; grpclib names it
            # from host:port and offers no public way to set it (python-wechaty did the same).
            self._channel._authority = token
        self._calls = service.PuppetStub(self._channel, timeout=UNARY_TIMEOUT)
        self._stream = service.PuppetStub(self._channel)  # the event stream runs without a deadline

    def close(self) -> None:
        self._channel.close()

    def _failure(self, call: str, error: BaseException) -> PuppetError:
        if isinstance(error, self._errors.GRPCError):
            status = error.status
            refused = status in (self._const.Status.UNAUTHENTICATED, self._const.Status.PERMISSION_DENIED)
            what = f"{status.name}" + (f": {error.message}" if error.message else "")
            if refused:
                return PuppetError(f"the puppet service at {self.endpoint} refused the token ({what})", refused=True)
            return PuppetError(f"{call} failed ({what})")
        if isinstance(error, (OSError, ConnectionError)):
            return PuppetError(f"the puppet service at {self.endpoint} is not reachable ({error.strerror or error})")
        return PuppetError(f"{call} failed ({type(error).__name__}: {error})")

    async def _call(self, call: str, coro) -> Any:
        try:
            return await coro
        except (self._errors.GRPCError, self._errors.ProtocolError, self._errors.StreamTerminatedError, OSError,
                TimeoutError) as e:
            raise self._failure(call, e) from None
        except Exception as e:  # a reply that does not parse, h2's own errors
            raise self._failure(call, e) from None

    async def start(self) -> None:
        await self._call("Start", self._calls.start())

    async def stop(self) -> None:
        await self._call("Stop", self._calls.stop())

    async def ding(self, data: str) -> None:
        await self._call("Ding", self._calls.ding(data=data))

    async def events(self) -> AsyncIterator[tuple[int, str]]:
        """(type, payload) of each event until the stream ends; raises PuppetError when it breaks."""
        try:
            async for event in self._stream.event():
                yield int(event.type), event.payload
        except (self._errors.GRPCError, self._errors.ProtocolError, self._errors.StreamTerminatedError, OSError) as e:
            raise self._failure("the event stream", e) from None
        except Exception as e:
            if isinstance(e, GeneratorExit):
                raise
            raise self._failure("the event stream", e) from None

    async def message_payload(self, message_id: str):
        return await self._call("MessagePayload", self._calls.message_payload(id=message_id))

    async def contact_payload(self, contact_id: str):
        return await self._call("ContactPayload", self._calls.contact_payload(id=contact_id))

    async def room_payload(self, room_id: str):
        return await self._call("RoomPayload", self._calls.room_payload(id=room_id))

    async def room_member_payload(self, room_id: str, member_id: str):
        return await self._call("RoomMemberPayload", self._calls.room_member_payload(id=room_id, member_id=member_id))

    async def message_image(self, message_id: str) -> str:
        answer = await self._call("MessageImage", self._calls.message_image(id=message_id, type=IMAGE_HD))
        return answer.filebox

    async def message_file(self, message_id: str) -> str:
        answer = await self._call("MessageFile", self._calls.message_file(id=message_id))
        return answer.filebox

    async def send_text(self, conversation_id: str, text: str, mentions: list[str]) -> str:
        # `mentonal_ids` is the published stubs' spelling of the field.
        answer = await self._call("MessageSendText", self._calls.message_send_text(
            conversation_id=conversation_id, text=text, mentonal_ids=list(mentions)))
        return answer.id

    async def send_file(self, conversation_id: str, box_json: str) -> str:
        answer = await self._call("MessageSendFile", self._calls.message_send_file(
            conversation_id=conversation_id, filebox=box_json))
        return answer.id
