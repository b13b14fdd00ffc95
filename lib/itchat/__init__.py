"""``from lib import itchat`` for plugins written for the original.

The original bundled the itchat library for its personal WeChat channel (channel_type
"wx"), and plugins call it directly: ``itchat.send(text, toUserName=...)``,
``itchat.search_chatrooms(name=...)``, ``itchat.instance.storageClass.userName`` ...
This program has no such channel yet, so the module keeps every public name of the
original's, and each call raises ``ItchatUnavailable`` naming the function and the channel
it needs, instead of failing at import (which would stop the plugin from loading at all,
even for its features that do not need WeChat).
"""
from __future__ import annotations

from typing import Any, Callable

from config import conf

__version__ = "1.5.0.dev"  # the bundled itchat's version in the original
VERSION = __version__


class ItchatUnavailable(RuntimeError):
    """An itchat function was called; it needs the personal WeChat channel."""


def _unavailable_message(what: str) -> str:
    channel_type = conf().get("channel_type", "")
    hint = " (for WeCom use channel.wework.run.wework)" if channel_type == "wework" else ""
    return (
        f"lib.itchat.{what} needs the personal WeChat channel (channel_type 'wx', itchat), which this "
        f"program does not have yet; the channel now is '{channel_type}'{hint}"
    )


def _needs_wx(name: str) -> Callable[..., Any]:
    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise ItchatUnavailable(_unavailable_message(name))

    unavailable.__name__ = unavailable.__qualname__ = name
    unavailable.__doc__ = f"itchat's {name}: needs the personal WeChat channel (raises ItchatUnavailable)."
    return unavailable


# Every function the original's lib/itchat/__init__.py exposed (bound to its Core instance).
_FUNCTIONS = (
    # login
    "login", "get_QRuuid", "get_QR", "check_login", "web_init", "show_mobile_login",
    "start_receiving", "get_msg", "logout",
    # contacts
    "update_chatroom", "update_friend", "get_contact", "get_friends", "get_chatrooms", "get_mps",
    "set_alias", "set_pinned", "accept_friend", "get_head_img", "create_chatroom",
    "set_chatroom_name", "delete_member_from_chatroom", "add_member_into_chatroom",
    # messages
    "send_raw_msg", "send_msg", "upload_file", "send_file", "send_image", "send_video", "send",
    "revoke",
    # hot reload
    "dump_login_status", "load_login_status",
    # register
    "auto_login", "configured_reply", "msg_register", "run",
    # search
    "search_friends", "search_chatrooms", "search_mps",
)


class Core:
    """Stands for itchat's Core (``itchat.instance``): not logged in, and every call raises
    ItchatUnavailable. Attributes it does not have raise AttributeError with the same hint."""

    alive = False
    isLogging = False

    def __init__(self) -> None:
        for name in _FUNCTIONS:
            setattr(self, name, _needs_wx(name))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(_unavailable_message(f"instance.{name}"))


def set_logging(*args: Any, **kwargs: Any) -> None:
    """itchat's log setup; the program's logger is used instead, so this does nothing."""


def load_sync_itchat() -> Core:
    return Core()


def load_async_itchat() -> Core:
    return Core()


instance = Core()
instanceList = [instance]

login = instance.login
get_QRuuid = instance.get_QRuuid
get_QR = instance.get_QR
check_login = instance.check_login
web_init = instance.web_init
show_mobile_login = instance.show_mobile_login
start_receiving = instance.start_receiving
get_msg = instance.get_msg
logout = instance.logout
update_chatroom = instance.update_chatroom
update_friend = instance.update_friend
get_contact = instance.get_contact
get_friends = instance.get_friends
get_chatrooms = instance.get_chatrooms
get_mps = instance.get_mps
set_alias = instance.set_alias
set_pinned = instance.set_pinned
accept_friend = instance.accept_friend
get_head_img = instance.get_head_img
create_chatroom = instance.create_chatroom
set_chatroom_name = instance.set_chatroom_name
delete_member_from_chatroom = instance.delete_member_from_chatroom
add_member_into_chatroom = instance.add_member_into_chatroom
send_raw_msg = instance.send_raw_msg
send_msg = instance.send_msg
upload_file = instance.upload_file
send_file = instance.send_file
send_image = instance.send_image
send_video = instance.send_video
send = instance.send
revoke = instance.revoke
dump_login_status = instance.dump_login_status
load_login_status = instance.load_login_status
auto_login = instance.auto_login
configured_reply = instance.configured_reply
msg_register = instance.msg_register
run = instance.run
search_friends = instance.search_friends
search_chatrooms = instance.search_chatrooms
search_mps = instance.search_mps
