"""The web channel's media (images kept in memory for the page to fetch) is bounded per user
and in all; the oldest go first, and an image larger than a user may keep is refused with a
message. Through the real HTTP server (a WebChannel in this process)."""
from __future__ import annotations

import io

import httpx
import pytest

from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from tests.e2e.test_web_process import SSE, running_channel

pytestmark = pytest.mark.slow

MIB = 1024 * 1024


def png(size: int, mark: int) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + bytes([mark]) * (size - 8)


def send_image(channel, user: str, data: bytes, question: str = "x") -> None:
    context = Context(ContextType.TEXT, question)
    context["receiver"] = user
    channel.send(Reply(ReplyType.IMAGE, io.BytesIO(data)), context)


def links(channel, user: str, count: int) -> list[dict]:
    stream = SSE(channel.server.port, user)
    try:
        return [stream.next()["data"] for _ in range(count)]
    finally:
        stream.close()


def test_media_is_bounded_per_user_and_in_all(settings):
    settings["web_media_user_max_bytes"] = MIB
    settings["web_media_max_bytes"] = 2 * MIB
    with running_channel(settings) as channel:
        base = channel.server.base_url
        for i in range(3):
            send_image(channel, "ann", png(400_000, i))
        a = [event["url"] for event in links(channel, "ann", 3)]
        # 1.2 MB for one user: the oldest went.
        assert httpx.get(base + a[0]).status_code == 404
        assert httpx.get(base + a[1]).content == png(400_000, 1)
        assert httpx.get(base + a[2]).status_code == 200
        for user in ("bob", "cat"):
            for i in range(2):
                send_image(channel, user, png(400_000, 10 + i))
        b = [event["url"] for event in links(channel, "bob", 2)]
        c = [event["url"] for event in links(channel, "cat", 2)]
        # Six images of 400 KB are more than 2 MiB in all: the oldest of everyone's (ann's) went.
        assert httpx.get(base + a[1]).status_code == 404
        assert all(httpx.get(base + url).status_code == 200 for url in (a[2], *b, *c))
        assert channel.media.total_bytes <= 2 * MIB


def test_an_image_larger_than_a_user_may_keep_is_refused_with_a_message(settings):
    settings["web_media_user_max_bytes"] = MIB
    with running_channel(settings) as channel:
        send_image(channel, "dan", png(MIB + 1000, 1), question="show me")
        send_image(channel, "dan", png(1000, 2), question="and a small one")
        big, small = links(channel, "dan", 2)
        assert big["type"] == "INFO" and big["content"] == "The image is too large to show here (1.0 MB)."
        assert small["type"] == "IMAGE"
        assert httpx.get(channel.server.base_url + small["url"]).content == png(1000, 2)
