"""``VendorChatBot``: the OpenAI-compatible bot (ChatGPTBot) pointed at one vendor by a Preset.

Everything a chat needs is ChatGPTBot's: sessions and their trimming, ``#清除记忆`` and the
other commands, streaming (shown growing on channels that can), retries, the request
deadline, the rate limit and the user-facing error texts (in the user's language). A preset
only changes where the request goes and with which key, the model name, the request fields
the vendor refuses, and how its errors are read, so that a wrong key, an unknown model, an
empty balance or an unreachable address each get their own clear answer naming the
vendor's setting.

The classes at the original's module paths (``bot.deepseek.deepseek_bot:DeepseekBot`` …)
are this class with their preset, so the original's ``bot_type`` values keep working.
"""
from __future__ import annotations

import json
import re
from typing import Any

from bot.chatgpt import chat_gpt_bot as base
from bot.chatgpt.chat_gpt_bot import EMPTY, ChatAPIError, ChatGPTBot
from bot.compatible.presets import Preset
from bridge.bridge import in_language, is_chinese
from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from common.log import logger
from config import conf

_THINK = re.compile(r"<think>.*?</think>\s*", re.S)


def vendor_error_fields(body: bytes) -> tuple[str, tuple[str, ...]]:
    """(message, every code the body carries) for the error shapes vendors use: OpenAI's
    ``{"error": {...}}``, Google's list of those with a ``status`` and ``details[].reason``,
    ModelScope's ``{"errors": {...}}``, MiniMax's ``base_resp``, and a bare
    ``{"code", "message"}`` (Spark, DashScope's native form)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data: Any = json.loads(text)
    except ValueError:
        return text[:500], ()
    if isinstance(data, list) and data:
        data = data[0]
    if not isinstance(data, dict):
        return str(data)[:500], ()
    error: Any = data.get("error") or data.get("errors") or data.get("base_resp") or data
    if not isinstance(error, dict):
        return str(error)[:500], ()
    codes: list[str] = []
    for key in ("code", "type", "status", "status_code"):
        value = error.get(key)
        if value not in (None, ""):
            codes.append(str(value))
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("reason"):
            codes.append(str(detail["reason"]))
    message = error.get("message") or error.get("msg") or error.get("status_msg") or ""
    return str(message)[:500], tuple(codes)


def without_thinking(text: str) -> str:
    """``text`` without the model's reasoning: whole <think>...</think> blocks, and an
    unfinished one at the end (a streamed answer still inside it)."""
    text = _THINK.sub("", text)
    start = text.find("<think>")
    return text[:start] if start >= 0 else text


class _HideThinking:
    """A PartialAnswer that shows the growing answer without the reasoning part."""

    def __init__(self, partial: Any) -> None:
        self._partial = partial

    def show(self, text: str) -> None:
        shown = without_thinking(text)
        # A stream may stop in the middle of the opening tag ("<th"): not shown either.
        for size in range(min(len(shown), 6), 0, -1):
            if "<think>".startswith(shown[-size:]):
                shown = shown[:-size]
                break
        self._partial.show(shown.lstrip())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._partial, name)


class VendorChatBot(ChatGPTBot):
    """An OpenAI-compatible vendor; subclasses set ``preset``."""

    preset: Preset

    def __init__(self) -> None:
        super().__init__()
        self._said_models: set[tuple[str, str]] = set()

    @classmethod
    def settings_problem(cls, settings: Any) -> str | None:
        return cls.preset.key_problem(settings)

    def reply(self, query: str, context: Context = None) -> Reply:
        if context is not None and context.type == ContextType.IMAGE_CREATE:
            # The vendors' compatible APIs answer chat, not OpenAI's image endpoint; the
            # question would otherwise go to OpenAI with the vendor's key.
            zh = f"{self.preset.title} 不支持画图，请换一个支持画图的机器人。"
            en = f"{self.preset.title} cannot create images here; use a bot that can."
            return Reply(ReplyType.ERROR, in_language(zh, en, is_chinese(query)))
        return super().reply(query, context)

    # -- the request

    def _chat_key(self, context: Context | None) -> tuple[str, bool]:
        # A user's own OpenAI key (#set_openai_api_key) is never sent to another vendor.
        return self.preset.api_key(conf()), False

    def _chat_call(self, messages: list[dict], model: str, api_key: str, own_key: bool, overrides: dict | None = None):
        preset = self.preset
        sent_model = preset.model(conf(), model)
        if sent_model != model and (model, sent_model) not in self._said_models:
            # Once per name: a retired or routing-only model name is not what the vendor gets.
            self._said_models.add((model, sent_model))
            logger.info("[{}] model '{}' is asked for as '{}' ({})".format(preset.bot_type, model, sent_model, preset.title))
        if not preset.keep_system_prompt(conf()):
            messages = [m for m in messages if m.get("role") != "system"]
        call = super()._chat_call(messages, sent_model, api_key, own_key, overrides)
        payload = call.payload
        for name in preset.drop_params:
            payload.pop(name, None)
        if preset.sampling_range is not None:
            low, high = preset.sampling_range
            for name in ("temperature", "top_p"):
                value = payload.get(name)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    payload[name] = min(max(value, low), high)
        for name in [k for k, v in payload.items() if v is None]:
            del payload[name]  # an unset sampling setting is the vendor's default, not null
        return call

    def _chat_endpoint(self, call: Any) -> None:
        preset = self.preset
        call.url = preset.api_base(conf()) + "/chat/completions"
        call.headers = {"Authorization": f"Bearer {call.api_key}"} if call.api_key else {}
        call.key_setting, call.base_setting = preset.setting_names(conf())
        call.settings = "model, " + (preset.model_setting + ", " if preset.model_setting else "") + call.base_setting

    # -- the answer

    def _send(self, call: Any, read: Any):
        if self.preset.strip_think and call.partial is not None and not isinstance(call.partial, _HideThinking):
            call.partial = _HideThinking(call.partial)
        return super()._send(call, read)

    def _read_chat(self, resp: Any, call: Any):
        answer = super()._read_chat(resp, call)
        if self.preset.strip_think and "<think>" in answer.content:
            shown = without_thinking(answer.content).strip()
            if not shown:
                # Only reasoning (an unfinished <think> block, cut by max_tokens or a
                # broken stream): not sent raw; the user is told the answer was empty.
                raise ChatAPIError(EMPTY, "the answer holds only the model's reasoning (<think> ... with no answer after it)")
            answer.content = shown
        return answer

    def _status_error(self, status: int, body: bytes) -> ChatAPIError:
        error = super()._status_error(status, body)
        message, codes = vendor_error_fields(body)
        kind = self.preset.error_kind(status, codes, message)
        if kind is not None and kind != error.kind:
            return ChatAPIError(kind, error.detail, status=status, code=error.code)
        return error

    def _answer_error(self, data: dict, raw: bytes, after_answer: bool = False) -> ChatAPIError | None:
        found = self.preset.answer_error(data) if self.preset.answer_error is not None else None
        if found is None:
            error = super()._answer_error(data, raw, after_answer)
            if error is None:
                return None
            message, codes = vendor_error_fields(raw)
        else:
            code, message = found
            codes = (code,)
        kind = self.preset.error_kind(None, codes, message) or base.UPSTREAM
        return ChatAPIError(kind, f"{codes[0] if codes else ''} {message}".strip(), code=codes[0] if codes else None,
                            after_answer=after_answer)

