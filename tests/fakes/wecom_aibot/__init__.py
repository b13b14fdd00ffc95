"""Loopback fake of the WeCom AI bot (企业微信智能机器人) servers, built from
reference/wecom-aibot.md: `AibotSimulator` for long-connection mode (server.py: WebSocket;
media.py: media host and response_url). callback_driver.py plays WeCom in callback mode."""
from .crypto import decrypt_media, encrypt_media
from .records import ERRORS, Bubble, ConnectionRecord, NotConnected, Pushed
from .server import AibotSimulator

__all__ = [
    "AibotSimulator",
    "Bubble",
    "ConnectionRecord",
    "ERRORS",
    "NotConnected",
    "Pushed",
    "decrypt_media",
    "encrypt_media",
]
