"""Bodies a hostile or broken sender could POST to a callback URL (DESIGN §7 "bad input").

Each returns the plaintext XML (or bytes) only; CallbackSender.send_xml wraps a plaintext in a
correctly signed (and in safe mode encrypted) request so it reaches the daemon's parser, and
CallbackSender.post_raw sends an outer body as is.
"""
from __future__ import annotations

import time

from .xml_messages import build_xml, cdata, next_msg_id

MB = 1024 * 1024
NON_XML_BODY = b'{"ToUserName": "gh_x", "MsgType": "text", "Content": "not xml at all"}'
BINARY_BODY = bytes(range(256)) * 16
TRUNCATED_XML = "<xml><ToUserName><![CDATA[gh_x]]></ToUserName><FromUserName><![CDATA[o"


def _head(to: str, user: str) -> str:
    return (f"<ToUserName>{cdata(to)}</ToUserName><FromUserName>{cdata(user)}</FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType>{cdata('text')}</MsgType>")


def entity_bomb(to: str, user: str, levels: int = 10, fanout: int = 10) -> str:
    """"Billion laughs": `levels` nested entities each `fanout` times the previous; 10 x 10 would
    expand to 10^10 copies. The entity sits in Content (outside CDATA, where it would expand)."""
    lines = ['<!ENTITY e0 "lol">']
    for level in range(1, levels):
        lines.append(f'<!ENTITY e{level} "{f"&e{level - 1};" * fanout}">')
    doctype = "<!DOCTYPE xml [\n" + "\n".join(lines) + "\n]>"
    return (f'<?xml version="1.0"?>\n{doctype}\n<xml>{_head(to, user)}'
            f"<Content>&e{levels - 1};</Content><MsgId>{next_msg_id()}</MsgId></xml>")


def external_entity(to: str, user: str, target: str = "file:///etc/passwd") -> str:
    """XXE: Content is an external entity; `target` may be an http:// URL of a canary server so a
    test can tell whether the daemon fetched it."""
    doctype = f'<!DOCTYPE xml [\n<!ENTITY xxe SYSTEM "{target}">\n]>'
    return (f'<?xml version="1.0"?>\n{doctype}\n<xml>{_head(to, user)}'
            f"<Content>&xxe;</Content><MsgId>{next_msg_id()}</MsgId></xml>")


def huge_text(to: str, user: str, size: int = 10 * MB) -> str:
    """A well-formed text message of about `size` bytes (the bulk is Content)."""
    shell = build_xml([("ToUserName", to), ("FromUserName", user), ("CreateTime", int(time.time())),
                       ("MsgType", "text"), ("Content", ""), ("MsgId", next_msg_id())])
    return shell.replace("<Content><![CDATA[]]>", "<Content><![CDATA[" + "A" * max(0, size - len(shell)) + "]]>")
