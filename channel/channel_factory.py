"""Channel names and where their classes live.

Every name the original knows is listed; a channel not built yet is named with
None so that start-up can say so instead of calling it unknown.
"""
from __future__ import annotations

import importlib

from common import const

# name -> "module:Class", or None while the channel is not built yet.
CHANNELS: dict[str, str | None] = {
    "terminal": "channel.terminal.terminal_channel:TerminalChannel",
    "wx": "channel.wechat.wx_channel:WxChannel",
    "wxy": "channel.wechaty.wechaty_channel:WechatyChannel",
    "wcf": "channel.wcf.wcf_channel:WcfChannel",
    "web": "channel.web.web_channel:WebChannel",
    "wechatmp": "channel.wechatmp.wechatmp_channel:WechatMPChannel",
    "wechatmp_service": "channel.wechatmp.service_channel:WechatMPServiceChannel",
    "wechatcom_app": "channel.wechatcom.wechatcomapp_channel:WechatComAppChannel",
    "wechatcom_service": "channel.wechatcs.wechatcs_channel:WechatComServiceChannel",
    "wework": "channel.wework.wework_channel:WeworkChannel",
    "wecom_bot": "channel.wecom_bot.wecom_bot_channel:WecomBotChannel",
    "feishu": "channel.feishu.feishu_channel:FeishuChannel",
    "dingtalk": "channel.dingtalk.dingtalk_channel:DingTalkChannel",
}


# `wx` speaks one of two protocols, chosen by the setting wx_protocol: Tencent's iLink bot API
# (the default), or, opt-in only, the legacy web-WeChat protocol of the original (never a fallback).
WX_PROTOCOLS: dict[str, str] = {
    "ilink": "channel.wechat.wx_channel:WxChannel",
    "itchat": "channel.wechat.webwx_channel:WebWxChannel",
}


def _wx_target() -> str:
    from config import conf

    protocol = conf().get("wx_protocol", "ilink")
    if protocol not in WX_PROTOCOLS:
        raise ChannelError(f"wx_protocol must be one of {', '.join(WX_PROTOCOLS)}, got {protocol!r}")
    return WX_PROTOCOLS[protocol]


# Other names for a channel: the channel runs (and keeps its state) under its main name.
ALIASES: dict[str, str] = {"weixin": "wx"}


class ChannelError(Exception):
    """The configured channel cannot be started. The message is meant for the user."""


def available_channels() -> list[str]:
    return [name for name, target in CHANNELS.items() if target] + list(ALIASES)


def create_channel(channel_type: str):
    channel_type = ALIASES.get(channel_type, channel_type)
    if channel_type in const.GONE_CHANNELS:
        raise ChannelError(f"channel '{channel_type}': {const.GONE_CHANNELS[channel_type]}")
    if channel_type not in CHANNELS:
        raise ChannelError(
            "unknown channel_type '{}'; valid names: {}".format(channel_type, ", ".join(const.CHANNEL_NAMES))
        )
    target = CHANNELS[channel_type]
    if target is None:
        raise ChannelError(
            "channel '{}' is not available in this version yet; available now: {}".format(
                channel_type, ", ".join(available_channels())
            )
        )
    if channel_type == "wx":
        target = _wx_target()
    module_name, class_name = target.split(":")
    channel_cls = getattr(importlib.import_module(module_name), class_name)
    channel = channel_cls()
    channel.channel_type = channel_type
    return channel
