"""What can go wrong when talking to Dify, and what the user is told about it.

Every failure is a :class:`DifyError` (or a subclass) carrying the HTTP status,
Dify's error ``code`` and ``message`` and a ``kind`` that says what to do about
it. :func:`classify` turns an error body into the right subclass;
:func:`user_message` turns any DifyError into one short sentence for the user,
in Chinese when the question was Chinese, else English. The sentence never
contains Dify's own message or any exception text: those go to the log.
"""
from __future__ import annotations

from typing import Any

from bridge.bridge import in_language


class DifyError(Exception):
    """A Dify call failed. ``status`` is 0 when no HTTP response was received."""

    kind = "unknown"
    # Whether sending the same request again may succeed (only ever done before
    # any of the response body was consumed).
    retryable = False

    def __init__(self, status: int = 0, code: str = "", message: str = "", **details: Any) -> None:
        self.status = int(status or 0)
        self.code = code or ""
        self.message = message or ""
        self.details = details
        super().__init__(self.describe())

    @property
    def retry_after(self) -> float | None:
        """The server's Retry-After hint in seconds, if it sent one."""
        return self.details.get("retry_after")

    def describe(self) -> str:
        bits = [self.kind]
        if self.status:
            bits.append(str(self.status))
        if self.code:
            bits.append(self.code)
        text = " ".join(bits)
        return f"{text}: {self.message}" if self.message else text


class DifyAuthError(DifyError):
    """401: the key is wrong (or the base URL points at another Dify)."""

    kind = "auth"


class DifyAppUnavailable(DifyError):
    """403 / app_unavailable: the app is disabled, unpublished or misconfigured."""

    kind = "app_unavailable"


class DifyAppTypeError(DifyAppUnavailable):
    """The endpoint does not fit the app (not_chat_app ...), or an agent app was asked to block."""

    kind = "app_type"

    @property
    def agent_needs_streaming(self) -> bool:
        return "does not support blocking mode" in self.message.lower()


class DifyQuotaError(DifyError):
    """The app's model cannot run: quota used up, no credentials, model unavailable."""

    kind = "quota"


class DifyModelError(DifyError):
    """The model provider failed the call (completion_request_error)."""

    kind = "model"


class DifyRateLimitError(DifyError):
    """429: too many requests; ``retry_after`` is the server's hint in seconds, if any."""

    kind = "rate_limit"
    retryable = True


class DifyConversationNotFound(DifyError):
    """404 "Conversation Not Exists.": the stored conversation id is stale."""

    kind = "conversation_not_found"


class DifyNotFoundError(DifyError):
    """Another 404: most often a dify_api_base without (or with a wrong) /v1."""

    kind = "not_found"


class DifyBadRequest(DifyError):
    """Another 4xx: Dify refused the request itself (invalid_param and friends)."""

    kind = "bad_request"


class DifyServerError(DifyError):
    """5xx (or an `error` event with status 500)."""

    kind = "server"
    retryable = True


class DifyTimeout(DifyError):
    """No connection within dify_connect_timeout, or silence for dify_read_timeout.

    Only a connect timeout is retried: after a read timeout the request may be
    running on the server, and sending it again would ask the question twice.
    """

    kind = "timeout"

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.details.get("phase") == "connect"


class DifyAnswerTimeout(DifyTimeout):
    """The whole answer took longer than dify_answer_timeout (the watchdog closed it)."""

    kind = "answer_timeout"

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return False


class DifyConnectionError(DifyError):
    """The connection could not be made or broke before a response arrived."""

    kind = "connection"
    retryable = True


class DifyStreamCut(DifyError):
    """A streamed answer broke off before its final event. Never retried.

    ``details["timeout"]`` is true when the stream went silent for longer than
    the read timeout (rather than the connection breaking), ``details["answer_timeout"]``
    when the watchdog closed it at dify_answer_timeout."""

    kind = "stream_cut"


class DifyAnswerTooLarge(DifyStreamCut):
    """One streamed event, or a whole blocking answer, is larger than the client reads
    (see common.sse.max_answer_bytes). Ends the answer like a cut stream."""

    kind = "too_large"


class DifyBadStream(DifyStreamCut):
    """The stream holds something that is not a Dify event (not JSON, not UTF-8): the
    rest of it cannot be trusted, so it is read no further."""

    kind = "bad_stream"


class DifyBadResponse(DifyError):
    """A success status but not what the Dify API sends (e.g. an HTML page)."""

    kind = "bad_response"


class DifyWorkflowFailed(DifyError):
    """The workflow ran but ended failed/stopped; ``message`` is its error text."""

    kind = "workflow_failed"


class DifyWorkflowOutputMissing(DifyError):
    """The workflow succeeded without the output variable the bot reads."""

    kind = "workflow_output"

    @property
    def variable(self) -> str:
        return str(self.details.get("variable", ""))

    @property
    def present(self) -> list[str]:
        return list(self.details.get("present", []))


class DifyConfigError(DifyError):
    """A setting makes the call impossible (e.g. an unknown dify_app_type)."""

    kind = "config"


_QUOTA_CODES = frozenset({"provider_quota_exceeded", "provider_not_initialize", "model_currently_not_support"})
_APP_TYPE_CODES = frozenset({"not_chat_app", "not_workflow_app", "not_completion_app"})


def classify(status: int, code: str | None, message: str | None, retry_after: float | None = None) -> DifyError:
    """The DifyError for an error response (or an SSE ``error`` event)."""
    code = (code or "").strip()
    message = message or ""
    lowered = message.lower()
    if status == 401 or code == "unauthorized":
        return DifyAuthError(status, code, message)
    if code in _APP_TYPE_CODES or "does not support blocking mode" in lowered:
        return DifyAppTypeError(status, code, message)
    if status == 403 or code in ("forbidden", "app_unavailable"):
        return DifyAppUnavailable(status, code, message)
    if code in _QUOTA_CODES:
        return DifyQuotaError(status, code, message)
    if status == 429 or code in ("too_many_requests", "rate_limit_error"):
        return DifyRateLimitError(status, code, message, retry_after=retry_after)
    if status == 404:
        # "Conversation Not Exists." (but not "Last Conversation Not Exists." of a listing).
        if lowered.strip().startswith("conversation not exists"):
            return DifyConversationNotFound(status, code, message)
        return DifyNotFoundError(status, code, message)
    if code == "completion_request_error":
        return DifyModelError(status, code, message)
    if status >= 500 or code == "internal_server_error":
        return DifyServerError(status, code, message, retry_after=retry_after)
    return DifyBadRequest(status, code, message)


# --- what the user reads -------------------------------------------------------------

_TEXTS: dict[str, tuple[str, str]] = {
    "auth": (
        "Dify 拒绝了请求：API 密钥无效。请检查配置项 dify_api_key（以及 dify_api_base 是否指向正确的 Dify 服务）。",
        "Dify refused the request: the API key is not valid. Check the dify_api_key setting "
        "(and that dify_api_base points to the right Dify server).",
    ),
    "not_found": (
        "在这个地址上找不到 Dify 接口，请检查配置项 dify_api_base（通常以 /v1 结尾）。",
        "The Dify API was not found at this address: check the dify_api_base setting (it usually ends in /v1).",
    ),
    "bad_response": (
        "收到的不是 Dify 接口的回应，请检查配置项 dify_api_base（通常以 /v1 结尾）。",
        "The answer did not come from the Dify API: check the dify_api_base setting (it usually ends in /v1).",
    ),
    "app_unavailable": (
        "Dify 应用当前不可用：请确认应用已发布并开启了 API 访问，并且配置项 dify_app_type 与应用类型一致。",
        "The Dify app is unavailable: check that it is published with API access enabled and that the "
        "dify_app_type setting matches the app.",
    ),
    "app_type": (
        "Dify 应用类型与配置不符：请把配置项 dify_app_type 设为应用的实际类型（chatbot、chatflow、agent、workflow 或 completion）。",
        "The Dify app type does not match the settings: set dify_app_type to the app's real type "
        "(chatbot, chatflow, agent, workflow or completion).",
    ),
    "agent_blocking": (
        "这是一个 Agent 应用，只支持流式输出：请把配置项 dify_app_type 设为 agent，或把 dify_response_mode 设为 streaming。",
        "This is an Agent app, which only answers in streaming mode: set dify_app_type to agent, "
        "or dify_response_mode to streaming.",
    ),
    "quota": (
        "Dify 应用的模型暂时不可用（额度已用完或模型供应商尚未配置），请联系管理员。",
        "The Dify app's model is not available (quota used up or provider not set up); please tell the administrator.",
    ),
    "model": (
        "模型服务返回了错误，请稍后再试。",
        "The model service returned an error; please try again later.",
    ),
    "rate_limit": (
        "请求太频繁了，请稍后再试。",
        "Too many requests right now; please try again later.",
    ),
    "server": (
        "Dify 服务出错了，请稍后再试。",
        "The Dify service had an error; please try again later.",
    ),
    "timeout": (
        "Dify 响应超时了，请稍后再试。",
        "Dify took too long to answer; please try again later.",
    ),
    "connection": (
        "无法连接到 Dify 服务，请稍后再试（如果一直这样，请检查配置项 dify_api_base）。",
        "Cannot reach the Dify service; please try again later (if it keeps happening, check the dify_api_base setting).",
    ),
    "answer_timeout": (
        "Dify 的回答超过了时间上限（配置项 dify_answer_timeout），已中止，请稍后再试。",
        "Dify's answer took longer than allowed (the dify_answer_timeout setting) and was stopped; please try again later.",
    ),
    "bad_stream": (
        "Dify 返回的数据无法解析，回答已中止，请稍后再试（如果一直这样，请检查配置项 dify_api_base）。",
        "Dify sent data that could not be read, so the answer was stopped; please try again later "
        "(if it keeps happening, check the dify_api_base setting).",
    ),
    "stream_cut": (
        "Dify 的回答中断了，请再试一次。",
        "Dify's answer was interrupted; please try again.",
    ),
    "too_large": (
        "Dify 的回答太大，无法显示，请换个问法或让回答短一些。",
        "Dify's answer was too large to show; please ask for a shorter one.",
    ),
    "workflow_failed": (
        "Dify 工作流运行失败了，请稍后再试。",
        "The Dify workflow failed; please try again later.",
    ),
    "conversation_not_found": (
        "Dify 找不到这段对话，请稍后再试。",
        "Dify could not find this conversation; please try again later.",
    ),
    "bad_request": (
        "Dify 无法处理这个请求，请换个说法再试；如果一直这样，请管理员查看日志。",
        "Dify could not handle this request; try rephrasing it, and if it keeps happening ask the administrator "
        "to check the log.",
    ),
    "unknown": (
        "我暂时遇到了一些问题，请您稍后重试~",
        "Something went wrong; please try again later.",
    ),
}

CUT_NOTE = ("（回答因连接中断而不完整）", "(The answer was cut off.)")
UPLOAD_FAILED_NOTE = (
    "图片上传失败，这次的问题将不带图片发送。",
    "The image could not be uploaded; your question was sent without it.",
)


def pick(texts: tuple[str, str], chinese: bool) -> str:
    return in_language(*texts, chinese)


def user_message(error: BaseException, chinese: bool) -> str:
    """One short, actionable sentence for ``error`` (never its internal text)."""
    if isinstance(error, DifyWorkflowOutputMissing):
        present = ", ".join(error.present) or ("无" if chinese else "none")
        if chinese:
            return (f"Dify 工作流没有名为“{error.variable}”的输出（现有输出：{present}），"
                    "请检查配置项 dify_workflow_output_variable。")
        return (f"The Dify workflow has no output named '{error.variable}' (outputs present: {present}): "
                "check the dify_workflow_output_variable setting.")
    if isinstance(error, DifyConfigError):
        value = error.details.get("value", "")
        if chinese:
            return f"配置项 dify_app_type 的值“{value}”无效，应为 chatbot、chatflow、agent、workflow 或 completion。"
        return f"The dify_app_type setting '{value}' is not valid: use chatbot, chatflow, agent, workflow or completion."
    if isinstance(error, DifyAppTypeError) and error.agent_needs_streaming:
        return pick(_TEXTS["agent_blocking"], chinese)
    kind = getattr(error, "kind", "unknown") if isinstance(error, DifyError) else "unknown"
    return pick(_TEXTS.get(kind, _TEXTS["unknown"]), chinese)
