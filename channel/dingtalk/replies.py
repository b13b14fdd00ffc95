"""Sending answers to a DingTalk conversation (reference/channel-protocols.md §5.4).

Text (as markdown when it has some) goes to the message's sessionWebhook while it is valid and on a
DingTalk host (no token needed; in a group it @-s the sender), else through the robot API (one-to-one `oToMessages/batchSend`, group
`groupMessages/send`). Pictures and files are uploaded (`/media/upload`) and sent through the
robot API, which takes a media id (the session webhook has no picture or file message).
"""
from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import requests

from channel.dingtalk.api import DingTalkApi, DingTalkApiError
from channel.dingtalk.message import DingTalkMessage
from common.log import logger
from common.utils import remove_markdown_symbol

# A webhook this close to its expiry is not used: the answer could arrive after it.
WEBHOOK_MARGIN_MS = 30_000
WEBHOOK_TIMEOUT = (5.0, 20.0)
MARKDOWN_TITLE_CHARS = 20  # the title shows in the chat list and notifications


class WebhookRefused(Exception):
    pass


class Replier:
    def __init__(self, api: DingTalkApi) -> None:
        self.api = api
        self.http = requests.Session()
        self.http.trust_env = False

    # ------------------------------------------------------------------ text
    def text(self, cmsg: DingTalkMessage, text: str) -> str:
        """Send a text, as markdown when it has some (DingTalk shows a text message's markdown
        raw); returns the way it went ("webhook" or "robot")."""
        plain = remove_markdown_symbol(text)
        markdown = plain != text
        title = (plain.strip().split("\n", 1)[0][:MARKDOWN_TITLE_CHARS] or "answer") if markdown else ""
        if self.webhook_usable(cmsg):
            if markdown:
                body = {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
            else:
                body = {"msgtype": "text", "text": {"content": text}}
            if cmsg.is_group and cmsg.sender_staff_id:
                body["at"] = {"atUserIds": [cmsg.sender_staff_id], "isAtAll": False}
            try:
                self._webhook(cmsg.session_webhook, body)
                return "webhook"
            except WebhookRefused as e:
                logger.info(f"[dingtalk] the session webhook of message {cmsg.msg_id} refused the answer ({e}); "
                            f"sending through the robot API")
        if markdown:
            self.robot(cmsg, "sampleMarkdown", {"title": title, "text": text})
        else:
            self.robot(cmsg, "sampleText", {"content": text})
        return "robot"

    def webhook_usable(self, cmsg: DingTalkMessage) -> bool:
        if not cmsg.session_webhook or time.time() * 1000 >= cmsg.webhook_expires_ms - WEBHOOK_MARGIN_MS:
            return False
        if not self.webhook_allowed(cmsg.session_webhook):
            logger.warning(f"[dingtalk] message {cmsg.msg_id}: its sessionWebhook is not on a DingTalk host "
                           f"({str(cmsg.session_webhook)[:100]!r}); not used, answering through the robot API")
            return False
        return True

    def webhook_allowed(self, url: str) -> bool:
        """Whether `url` is on one of the configured DingTalk hosts (dingtalk_api_base,
        dingtalk_oapi_base), with their scheme and port: the answer (and whatever the user said)
        is never posted to a URL a frame could name freely."""
        try:
            target = urlsplit(url)
            port = target.port
        except ValueError:
            return False
        for base in (self.api.api_base, self.api.oapi_base):
            allowed = urlsplit(base)
            if (target.scheme, (target.hostname or "").lower(), port) == \
                    (allowed.scheme, (allowed.hostname or "").lower(), allowed.port) and target.scheme in ("https", "http"):
                return True  # https for DingTalk's own; http only where a setting chose it (a proxy, a simulator)
        return False

    def _webhook(self, url: str, body: dict) -> None:
        try:
            # No redirects: a redirect could lead the answer anywhere.
            r = self.http.post(url, json=body, timeout=WEBHOOK_TIMEOUT, allow_redirects=False)
        except requests.RequestException as e:
            raise ConnectionError(f"the session webhook is not reachable: {e}") from None
        try:
            data = r.json()
        except ValueError:
            data = {}
        code = data.get("errcode", 0) if isinstance(data, dict) else 0
        if r.status_code >= 500:
            raise ConnectionError(f"the session webhook answered HTTP {r.status_code}")
        if r.status_code >= 300 or code:
            raise WebhookRefused(f"HTTP {r.status_code}, errcode {code} {str(data.get('errmsg', ''))[:100]}")

    # ------------------------------------------------------------------ robot API
    def robot(self, cmsg: DingTalkMessage, msg_key: str, param: dict) -> None:
        robot_code = cmsg.robot_code or self.api.client_id
        body = {"robotCode": robot_code, "msgKey": msg_key, "msgParam": json.dumps(param, ensure_ascii=False)}
        if cmsg.is_group:
            self.api.call("/v1.0/robot/groupMessages/send", {**body, "openConversationId": cmsg.conversation_id})
            return
        if not cmsg.sender_staff_id:
            raise DingTalkApiError(None, "", "the sender has no staff id: the robot API cannot reach them")
        answer = self.api.call("/v1.0/robot/oToMessages/batchSend", {**body, "userIds": [cmsg.sender_staff_id]})
        refused = (answer.get("invalidStaffIdList") or []) + (answer.get("flowControlledStaffIdList") or [])
        if refused:
            raise DingTalkApiError(200, "", f"not delivered to {refused}", "/v1.0/robot/oToMessages/batchSend")

    # ------------------------------------------------------------------ media
    def image(self, cmsg: DingTalkMessage, data: bytes, name: str, mime: str) -> None:
        media_id = self.api.upload("image", name, data, mime)
        self.robot(cmsg, "sampleImageMsg", {"photoURL": media_id})

    def file(self, cmsg: DingTalkMessage, data: bytes, name: str, mime: str) -> None:
        media_id = self.api.upload("file", name, data, mime)
        stem, _, ext = name.rpartition(".")
        self.robot(cmsg, "sampleFile", {"mediaId": media_id, "fileName": name, "fileType": ext if stem else "file"})
