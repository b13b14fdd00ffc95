"""The XML of a passive reply (reference §1.5): the root `<xml>`, addressed back to the user."""
from __future__ import annotations

import re
import time


# Characters XML 1.0 does not allow anywhere, even in CDATA (an answer with ANSI colour codes made
# a reply WeChat could not parse, and the user saw "service unavailable").
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def cdata(value: str) -> str:
    # "]]>" cannot appear inside a CDATA section: an answer quoting it would end the element early.
    return "<![CDATA[" + _NOT_XML.sub("", str(value)).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _head(user: str, account: str, msgtype: str) -> str:
    return (f"<ToUserName>{cdata(user)}</ToUserName><FromUserName>{cdata(account)}</FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType>{cdata(msgtype)}</MsgType>")


def text_reply(user: str, account: str, text: str) -> str:
    return f"<xml>{_head(user, account, 'text')}<Content>{cdata(text)}</Content></xml>"


def media_reply(user: str, account: str, kind: str, media_id: str) -> str:
    """An image, voice or video reply by MediaId (the media was uploaded first)."""
    element = kind.capitalize()
    return f"<xml>{_head(user, account, kind)}<{element}><MediaId>{cdata(media_id)}</MediaId></{element}></xml>"
