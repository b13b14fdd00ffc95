"""Robot messages as DingTalk pushes them (reference/channel-protocols.md §5.3), and the Stream
frames that carry them (§5.2). Written from the reference."""
from __future__ import annotations

import json
import time
import uuid
from typing import Optional

BOT_TOPIC = "/v1.0/im/bot/messages/get"


def now_ms() -> int:
    return int(time.time() * 1000)


def robot_message(client_id: str, sender: str, msgtype: str, body: dict, *, group: Optional[str] = None,
                  group_title: str = "", at_bot: bool = True, nick: str = "", msg_id: Optional[str] = None,
                  webhook: str = "", webhook_expires_ms: Optional[int] = None) -> dict:
    """The `data` of a robot-message callback. `sender` is the staff id; `group` a conversation id."""
    created = now_ms()
    data = {
        "msgId": msg_id or "msg" + uuid.uuid4().hex[:20],
        "msgtype": msgtype,
        "conversationType": "2" if group else "1",
        "conversationId": group or "cid-p2p-" + sender,
        "senderId": "$:LWCP_v1:$" + sender,
        "senderStaffId": sender,
        "senderNick": nick or sender.capitalize(),
        "senderCorpId": "ding-corp",
        "isAdmin": False,
        "chatbotUserId": "$:LWCP_v1:$bot",
        "chatbotCorpId": "ding-corp",
        "robotCode": client_id,
        "createAt": created,
        "sessionWebhook": webhook,
        "sessionWebhookExpiredTime": created + 90 * 60 * 1000 if webhook_expires_ms is None else webhook_expires_ms,
        **body,
    }
    if group:
        data["conversationTitle"] = group_title or group
        data["isInAtList"] = at_bot
        data["atUsers"] = [{"dingtalkId": "$:LWCP_v1:$bot"}] if at_bot else []
    return data


def text_body(content: str, *, at_prefix: bool = False) -> dict:
    # DingTalk strips the robot's @name and leaves the space before the text.
    return {"text": {"content": (" " if at_prefix else "") + content}}


def picture_body(download_code: str) -> dict:
    return {"content": {"downloadCode": download_code, "pictureDownloadCode": download_code}}


def rich_text_body(items: list) -> dict:
    """`items`: strings (text) and ("picture", downloadCode) pairs."""
    rich = [{"text": i} if isinstance(i, str) else {"type": "picture", "downloadCode": i[1]} for i in items]
    return {"content": {"richText": rich}}


def audio_body(recognition: str, download_code: str = "audio-code") -> dict:
    return {"content": {"duration": 2000, "downloadCode": download_code, "recognition": recognition}}


def file_body(download_code: str, file_name: str) -> dict:
    return {"content": {"downloadCode": download_code, "fileName": file_name, "fileId": uuid.uuid4().hex}}


def callback_frame(data: dict | str, app_id: str, connection_id: str, message_id: Optional[str] = None,
                   topic: str = BOT_TOPIC) -> dict:
    return {
        "specVersion": "1.0",
        "type": "CALLBACK",
        "headers": {"appId": app_id, "connectionId": connection_id, "contentType": "application/json",
                    "messageId": message_id or uuid.uuid4().hex, "time": str(now_ms()), "topic": topic},
        "data": data if isinstance(data, str) else json.dumps(data, ensure_ascii=False),
    }


def system_frame(topic: str, data: dict, connection_id: str) -> dict:
    return {
        "specVersion": "1.0",
        "type": "SYSTEM",
        "headers": {"contentType": "application/json", "messageId": uuid.uuid4().hex, "time": str(now_ms()),
                    "topic": topic, "connectionId": connection_id},
        "data": json.dumps(data),
    }
