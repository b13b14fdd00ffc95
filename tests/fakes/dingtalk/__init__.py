"""DingTalk (Stream-mode robot) simulator: gateway, Stream WebSocket, OpenAPI (reference/channel-protocols.md §5.7)."""
from .server import DingTalkSimulator, Pushed

__all__ = ["DingTalkSimulator", "Pushed"]
