# encoding:utf-8
# A plugin that answers "picture", "voice" or "video" with such a reply ("lost file": a file reply
# whose file does not exist) (the way drawing, TTS and
# video plugins do), so a channel's media sending can be tested without a model that makes media.
# The bytes are made here and written to tmp/media_reply-<kind>.bin for the test to compare.
import io
import math
import os
import struct
import wave
import zlib

import plugins
from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from common.tmp_dir import TmpDir
from plugins import *


def _png() -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes([x * 16 % 256, y * 16 % 256, 128]) * 1 for y in range(8) for x in range(1))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 8, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _wav(path: str, seconds: float) -> None:
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i / 10))) for i in range(int(8000 * seconds))))


@plugins.register(name="MediaReply", desire_priority=50, desc="answers with a picture, voice or video", version="0.1",
                  author="tests")
class MediaReply(Plugin):
    def __init__(self):
        super().__init__()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context

    def on_handle_context(self, e_context: EventContext):
        context = e_context["context"]
        if context.type == ContextType.TEXT and context.content == "lost file":
            # A file reply whose file is gone by the time it is sent (a plugin's tmp file cleaned up).
            e_context["reply"] = Reply(ReplyType.FILE, os.path.join(TmpDir().path(), "gone", "secret-report.pdf"))
            e_context.action = EventAction.BREAK_PASS
            return
        if context.type != ContextType.TEXT or context.content not in ("picture", "voice", "video"):
            return
        folder = TmpDir().path()
        if context.content == "picture":
            data = _png()
            reply = Reply(ReplyType.IMAGE, io.BytesIO(data))
        elif context.content == "video":
            data = b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000)
            reply = Reply(ReplyType.VIDEO, io.BytesIO(data))
        else:
            path = os.path.join(folder, "media_reply-voice.wav")
            _wav(path, 1.0)
            with open(path, "rb") as f:
                data = f.read()
            reply = Reply(ReplyType.VOICE, path)
        with open(os.path.join(folder, f"media_reply-{context.content}.bin"), "wb") as f:
            f.write(data)
        e_context["reply"] = reply
        e_context.action = EventAction.BREAK_PASS
