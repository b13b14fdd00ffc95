"""Loopback fake of the web-WeChat protocol (reference/personal-wechat.md §4.1) for `wx_protocol:
itchat`: QR login with its poll states, the ticket with cookies, webwxinit, contacts and rooms,
synccheck/webwxsync with a sync key, text/image/file sends, chunked uploads, media downloads, and
error injection (a kicked login, failed sends, malformed sync bodies, HTTP errors)."""
from .server import Sent, WebWxSimulator

__all__ = ["Sent", "WebWxSimulator"]
