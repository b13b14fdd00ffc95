"""The interface every platform channel implements."""
from __future__ import annotations

from bridge.bridge import Bridge
from bridge.context import Context
from bridge.reply import Reply, ReplyType


# Exit code when the platform connection ended by itself (e.g. the WeCom client quit),
# so a supervisor can tell it from a clean stop (0) and restart the daemon.
EXIT_PLATFORM_LOST = 4


class Channel:
    channel_type = ""
    NOT_SUPPORT_REPLYTYPE = [ReplyType.VOICE, ReplyType.IMAGE]
    # A channel whose startup() returned because its work is over sets `finished`;
    # `exit_code` is then the daemon's exit code (0: done, EXIT_PLATFORM_LOST: connection lost).
    finished = False
    exit_code = 0

    def startup(self) -> None:
        """Connect to the platform and handle messages. May block until the channel ends."""
        raise NotImplementedError

    def stop(self) -> None:
        """Close the platform connection. Called once, on the way out."""

    def handle_text(self, msg) -> None:
        raise NotImplementedError

    def send(self, reply: Reply, context: Context) -> None:
        """Send `reply` to the conversation of `context` on the platform."""
        raise NotImplementedError

    def build_reply_content(self, query: str, context: Context = None) -> Reply:
        return Bridge().fetch_reply_content(query, context)

    def build_voice_to_text(self, voice_file: str) -> Reply:
        return Bridge().fetch_voice_to_text(voice_file)

    def build_text_to_voice(self, text: str) -> Reply:
        return Bridge().fetch_text_to_voice(text)
