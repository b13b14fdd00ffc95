"""A loopback Feishu: the OpenAPI server (server.py), its long connection (ws_server.py), and an
event sender that encrypts and signs like the platform (events.py)."""
from .events import EventSender, envelope, mention, message_event, new_message_id, text_event
from .server import FeishuSimulator, Sent

__all__ = ["EventSender", "FeishuSimulator", "Sent", "envelope", "mention", "message_event", "new_message_id",
           "text_event"]
