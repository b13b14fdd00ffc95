"""Error codes and limits of the WeChat Official Account and WeCom APIs, as the simulator answers them.

Codes named in reference/channel-protocols.md §1.7, §2.4 and §3.1 are used with the meaning given
there. The others are marked "choice": the reference is silent, so the simulator uses the code the
public platforms document for that case, and a test should assert on the constant, not the number.
"""
from __future__ import annotations

OK = 0
SYSTEM_BUSY = -1
INVALID_CREDENTIAL = 40001  # bad secret, or a token that a newer one replaced ("not latest")
INVALID_GRANT_TYPE = 40002  # choice
INVALID_OPENID = 40003
INVALID_MEDIA_TYPE = 40004  # choice: `type` not allowed for the platform
INVALID_FILE_TYPE = 40005  # choice: file extension not allowed for the type
INVALID_FILE_SIZE = 40006  # choice: oversize upload (WeCom voice/file, every material), empty file
INVALID_MEDIA_ID = 40007
INVALID_MSGTYPE = 40008  # choice
INVALID_IMAGE_SIZE = 40009  # choice: image over 10 MB
INVALID_VOICE_SIZE = 40010  # choice: OA voice over 2 MB or 60 s
INVALID_VIDEO_SIZE = 40011  # choice: video over 10 MB
INVALID_THUMB_SIZE = 40012  # choice: thumb over 64 KB
INVALID_APPID = 40013  # also "invalid corpid" on WeCom
INVALID_TOKEN = 40014
INVALID_AGENTID = 40056  # choice: message/send agentid is not the token's app
INVALID_PARAMETER = 40058  # choice: bad limit/cursor/voice_format in kf/sync_msg
IP_NOT_WHITELISTED = 40164
MISSING_TOKEN = 41001
MISSING_APPID = 41002  # choice; also missing corpid
MISSING_SECRET = 41004  # choice; also missing corpsecret
MISSING_MEDIA = 41005  # choice: multipart without a `media` part
MISSING_AGENTID = 41011  # choice
TOKEN_EXPIRED = 42001
REQUIRE_GET = 43001  # choice
REQUIRE_POST = 43002  # choice
NOT_SUBSCRIBED = 43004
EMPTY_CONTENT = 44004
CONTENT_TOO_LONG = 45002
QUOTA_REACHED = 45009  # OA: daily quota; WeCom: "api freq out of limit"
OUT_OF_WINDOW = 45015  # the 48 h customer-service window
SEND_COUNT_EXCEEDED = 45047
DATA_FORMAT_ERROR = 47001  # choice: body is not JSON
API_UNAUTHORIZED = 48001  # uncertified OA calling an active API
IP_NOT_TRUSTED = 60020
NO_VALID_RECIPIENT = 81013
KF_INVALID_OPEN_KFID = 95000
KF_COUNT_LIMIT = 95001  # more than 5 replies to one customer message
KF_TIME_LIMIT = 95002  # the customer's last message is older than 48 h
KF_OPEN_KFID_NOT_FOUND = 95004
KF_INVALID_SYNC_TOKEN = 95007
KF_NO_CUSTOMER_MESSAGE = 95024  # choice of meaning: the customer never wrote to this account

ERRORS: dict[int, str] = {
    OK: "ok",
    SYSTEM_BUSY: "system error",
    INVALID_CREDENTIAL: "invalid credential, access_token is invalid or not latest",
    INVALID_GRANT_TYPE: "invalid grant_type",
    INVALID_OPENID: "invalid openid",
    INVALID_MEDIA_TYPE: "invalid media type",
    INVALID_FILE_TYPE: "invalid file type",
    INVALID_FILE_SIZE: "invalid media size",
    INVALID_MEDIA_ID: "invalid media_id",
    INVALID_MSGTYPE: "invalid message type",
    INVALID_IMAGE_SIZE: "invalid image size",
    INVALID_VOICE_SIZE: "invalid voice size",
    INVALID_VIDEO_SIZE: "invalid video size",
    INVALID_THUMB_SIZE: "invalid thumb size",
    INVALID_APPID: "invalid appid",
    INVALID_TOKEN: "invalid access_token",
    INVALID_AGENTID: "invalid agentid",
    INVALID_PARAMETER: "invalid Request Parameter",
    IP_NOT_WHITELISTED: "invalid ip, not in whitelist",
    MISSING_TOKEN: "access_token missing",
    MISSING_APPID: "appid missing",
    MISSING_SECRET: "appsecret missing",
    MISSING_MEDIA: "media data missing",
    MISSING_AGENTID: "missing agentid",
    TOKEN_EXPIRED: "access_token expired",
    REQUIRE_GET: "require GET method",
    REQUIRE_POST: "require POST method",
    NOT_SUBSCRIBED: "require subscribe",
    EMPTY_CONTENT: "empty content",
    CONTENT_TOO_LONG: "content size out of limit",
    QUOTA_REACHED: "reach max api daily quota limit",
    OUT_OF_WINDOW: "response out of time limit or subscription is canceled",
    SEND_COUNT_EXCEEDED: "out of response count limit",
    DATA_FORMAT_ERROR: "data format error",
    API_UNAUTHORIZED: "api unauthorized",
    IP_NOT_TRUSTED: "not allow to access from your ip",
    NO_VALID_RECIPIENT: "user & party & tag all invalid",
    KF_INVALID_OPEN_KFID: "invalid open_kfid",
    KF_COUNT_LIMIT: "send msg count limit: at most 5 messages per customer message",
    KF_TIME_LIMIT: "send msg time limit: the customer's last message is older than 48 hours",
    KF_OPEN_KFID_NOT_FOUND: "open_kfid not exist",
    KF_INVALID_SYNC_TOKEN: "invalid msg token",
    KF_NO_CUSTOMER_MESSAGE: "the customer sent no message in the last 48 hours",
}


def errmsg(code: int, detail: str = "") -> str:
    base = ERRORS.get(code, "injected error")
    return f"{base}, {detail}" if detail else base


# --- limits ------------------------------------------------------------------------------------
TEXT_MAX_BYTES = 2048  # OA custom send (rejected), WeCom message/send (truncated), kf send_msg (rejected)
TOKEN_TTL = 7200.0  # expires_in of both token calls
CUSTOMER_WINDOW = 48 * 3600.0  # OA custom send and kf send_msg
TEMP_MEDIA_TTL = 3 * 24 * 3600.0  # media/upload; also the kf sync_msg history window
KF_SYNC_TOKEN_TTL = 600.0  # the Token of a kf_msg_or_event callback
KF_REPLIES_PER_MESSAGE = 5
KF_MAX_LIMIT = 1000
MB = 1024 * 1024
