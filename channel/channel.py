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

    # Optional capability: showing an answer while the bot is still writing it (a chat
    # bubble that grows). A bot that streams asks can_show_partial first; channels that
    # say no get the answer as before, in whole replies.
    def can_show_partial(self, context: Context) -> bool:
        return False

    def show_partial(self, context: Context, stream_id: str, text: str) -> None:
        """Show `text`, everything written so far of the answer `stream_id`, for `context`.

        The next TEXT reply sent for the same context is the finished text of the oldest
        answer shown (the channel replaces what it showed with it). When the context is
        done and an answer shown got no finished text, the channel takes it away."""
        raise NotImplementedError

    def build_reply_content(self, query: str, context: Context = None) -> Reply:
        return Bridge().fetch_reply_content(query, context)

    def build_voice_to_text(self, voice_file: str) -> Reply:
        return Bridge().fetch_voice_to_text(voice_file)

    def build_text_to_voice(self, text: str) -> Reply:
        return Bridge().fetch_text_to_voice(text)
