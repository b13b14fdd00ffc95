"""What each OpenAI-compatible vendor needs: one Preset per bot type of the original.

A preset is data plus a few small functions: where the vendor's chat-completions API is,
which of the original's settings hold its key and address, which model names it knows
(the original's names mapped to current ones where the vendor retired them), what it
refuses in a request, and how it reports errors (status codes and body shapes differ from
OpenAI's). ``bot.compatible.vendor_bot.VendorChatBot`` applies one to the OpenAI-compatible
bot (``bot.chatgpt.chat_gpt_bot.ChatGPTBot``): sessions, streaming, retries and the error
texts stay the ones that bot has.

Base URLs and model names checked against each vendor's documentation (December 2026).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from common import const

# What a request is when one of these is chosen: bot.chatgpt.chat_gpt_bot's error kinds.
AUTH = "auth"
NOT_FOUND = "not_found"
QUOTA = "quota"
RATE_LIMITED = "rate_limited"
BAD_REQUEST = "bad_request"
CONTENT_POLICY = "content_policy"

# A model name that belongs to OpenAI (the config default gpt-3.5-turbo among them): with
# `bot_type` naming a vendor, such a name means "no model chosen", not "ask the vendor for gpt-4o".
_OPENAI_MODEL = re.compile(r"^(gpt-|o\d(-|$)|text-|dall-e|chatgpt|whisper|tts-)")


def _text(settings: Mapping[str, Any], key: str) -> str:
    value = settings.get(key)
    return str(value).strip() if value is not None else ""


@dataclass(frozen=True)
class Preset:
    bot_type: str  # the original's bot type (common.const)
    title: str  # the vendor's name in messages
    key_settings: tuple[str, ...]  # the first one that is set holds the key
    base_setting: str  # the setting holding the API root (or, as the original had it, the full URL)
    default_base: str
    default_model: str
    # Routing names (`model: moonshot`) and retired model names -> what is sent instead.
    aliases: Mapping[str, str] = field(default_factory=dict)
    # A setting that names the model instead of `model` (the original's xunfei_domain,
    # baidu_wenxin_model): `model` only routes to the bot there.
    model_setting: str = ""
    # Request fields the vendor refuses (or that have no meaning there): never sent.
    drop_params: tuple[str, ...] = ()
    # Sampling values outside this range are refused by the vendor: clamped into it.
    sampling_range: tuple[float, float] | None = None
    # Error codes of the vendor (in its error body) -> our error kind.
    error_codes: Mapping[str, str] = field(default_factory=dict)
    # Vendors that say it in words only: (pattern in the message, kind).
    error_messages: tuple[tuple[str, str], ...] = ()
    # HTTP statuses the vendor uses in its own way (DeepSeek's 402 for an empty balance).
    error_statuses: Mapping[int, str] = field(default_factory=dict)
    # Errors the vendor reports inside an HTTP 200 answer: (code, message) or None.
    answer_error: Callable[[dict], tuple[str, str] | None] | None = None
    # The answer may carry the model's reasoning in <think>...</think>: shown to nobody.
    strip_think: bool = False
    keep_system_prompt: Callable[[Mapping[str, Any]], bool] = lambda settings: True
    # Why the settings cannot work with the vendor's current API (one line), or None.
    credentials_problem: Callable[[Mapping[str, Any]], str | None] | None = None
    # The key from the settings (when it is not just the first of key_settings).
    key_from: Callable[[Mapping[str, Any]], str] | None = None
    # The API root from the settings (when it is not just base_setting or the default).
    base_from: Callable[[Mapping[str, Any]], str] | None = None
    # The model from the settings and the model asked for (when the rules of model() do not fit).
    model_from: Callable[[Mapping[str, Any], str | None], str] | None = None
    # The (key, base) settings an error names, when they are not key_settings[0] and base_setting.
    setting_names_from: Callable[[Mapping[str, Any]], tuple[str, str]] | None = None
    docs: str = ""

    # -- settings -> request

    def api_key(self, settings: Mapping[str, Any]) -> str:
        if self.key_from is not None:
            return self.key_from(settings)
        for key in self.key_settings:
            if _text(settings, key):
                return _text(settings, key)
        return ""

    def setting_names(self, settings: Mapping[str, Any]) -> tuple[str, str]:
        """The settings that hold the key and the address in use (what an error names)."""
        if self.setting_names_from is not None:
            return self.setting_names_from(settings)
        return self.key_settings[0], self.base_setting

    def api_base(self, settings: Mapping[str, Any]) -> str:
        base = self.base_from(settings) if self.base_from is not None else _text(settings, self.base_setting)
        return api_root(base or self.default_base)

    def model(self, settings: Mapping[str, Any], requested: str | None) -> str:
        """The model name to send, from the model asked for (`model`, or `#model`'s per-user one)."""
        if self.model_from is not None:
            return self.model_from(settings, requested)
        if self.model_setting:
            chosen = _text(settings, self.model_setting)
            if chosen:
                return self.aliases.get(chosen, chosen)
            return self.aliases.get(str(requested or ""), self.default_model)
        name = str(requested or "").strip()
        if not name or _OPENAI_MODEL.match(name):
            return self.default_model
        return self.aliases.get(name, name)

    def key_problem(self, settings: Mapping[str, Any]) -> str | None:
        """Start-up's check: the key (and any credential the current API needs) is there."""
        if self.credentials_problem is not None:
            problem = self.credentials_problem(settings)
            if problem:
                return problem
        if self.api_key(settings):
            return None
        return f"setting '{self.key_settings[0]}' is empty: put your {self.title} API key in it"

    # -- errors

    def error_kind(self, status: int | None, codes: tuple[str, ...], message: str) -> str | None:
        """Our error kind for what the vendor said (its codes, its message, the HTTP status),
        None when the preset knows nothing more than OpenAI's rules."""
        for code in codes:
            if code in self.error_codes:
                return self.error_codes[code]
        lowered = message.lower()
        for pattern, kind in self.error_messages:
            if pattern.lower() in lowered:
                return kind
        if status is not None and status in self.error_statuses:
            return self.error_statuses[status]
        return None


def api_root(url: str) -> str:
    """The API root of a base URL setting: the original's moonshot_base_url, modelscope_base_url
    and Minimax_base_url hold the full chat-completions URL, so that tail is cut."""
    root = url.strip().rstrip("/")
    for tail in ("/chat/completions",):
        if root.endswith(tail):
            root = root[: -len(tail)]
    return root


# --- vendor-specific pieces ------------------------------------------------------


def _minimax_answer_error(data: dict) -> tuple[str, str] | None:
    """MiniMax answers many errors with HTTP 200 and a ``base_resp`` whose status_code is not 0."""
    base = data.get("base_resp")
    if isinstance(base, dict) and base.get("status_code") not in (None, 0, "0"):
        return str(base.get("status_code")), str(base.get("status_msg") or "")
    return None


def _spark_answer_error(data: dict) -> tuple[str, str] | None:
    """Spark's HTTP API answers with ``code`` (0 when all is well) and ``message`` at the top."""
    code = data.get("code")
    if code not in (None, 0, "0") and not data.get("choices"):
        return str(code), str(data.get("message") or "")
    return None


def _minimax_base(settings: Mapping[str, Any]) -> str:
    url = _text(settings, "Minimax_base_url")
    # The original's default was the retired ChatCompletion Pro URL (…/text/chatcompletion_pro?GroupId=…),
    # which is not an OpenAI-style API: the current root is used instead.
    if "chatcompletion_pro" in url or "chatcompletion_v2" in url or "/text/chatcompletion" in url:
        return ""
    return url


_OPENAI_ROOTS = ("", "https://api.openai.com/v1", "https://api.openai.com")


def _deepseek_relay(settings: Mapping[str, Any]) -> tuple[str, str] | None:
    """The original's DeepSeek bot sent open_ai_api_key to open_ai_api_base. That pair is
    still taken when no deepseek_api_key is set, but only as a pair and only when the base
    is not OpenAI's own (a relay in front of DeepSeek): otherwise an OpenAI key would go to
    DeepSeek, or a DeepSeek key to an OpenAI relay."""
    if _text(settings, "deepseek_api_key") or _text(settings, "deepseek_api_base"):
        return None
    key = _text(settings, "open_ai_api_key")
    base = api_root(_text(settings, "open_ai_api_base"))
    if not key or base in _OPENAI_ROOTS:
        return None
    return key, base


def _deepseek_key(settings: Mapping[str, Any]) -> str:
    relay = _deepseek_relay(settings)
    return relay[0] if relay else _text(settings, "deepseek_api_key")


def _deepseek_base(settings: Mapping[str, Any]) -> str:
    relay = _deepseek_relay(settings)
    return relay[1] if relay else _text(settings, "deepseek_api_base")


def _deepseek_setting_names(settings: Mapping[str, Any]) -> tuple[str, str]:
    return ("open_ai_api_key", "open_ai_api_base") if _deepseek_relay(settings) else ("deepseek_api_key", "deepseek_api_base")


def _deepseek_credentials(settings: Mapping[str, Any]) -> str | None:
    if _deepseek_key(settings):
        return None
    hint = ""
    if _text(settings, "open_ai_api_key"):
        hint = (" (open_ai_api_key is used for DeepSeek only together with an open_ai_api_base that is not "
                "OpenAI's, and only when deepseek_api_key and deepseek_api_base are empty: an OpenAI key is "
                "never sent to DeepSeek)")
    return f"setting 'deepseek_api_key' is empty: put your DeepSeek API key in it{hint}"


def _qwen_credentials(settings: Mapping[str, Any]) -> str | None:
    if _text(settings, "dashscope_api_key"):
        return None
    if _text(settings, "qwen_access_key_id") or _text(settings, "qwen_agent_key"):
        return ("setting 'dashscope_api_key' is empty: the old Qwen SDK settings (qwen_access_key_id, "
                "qwen_access_key_secret, qwen_agent_key, qwen_app_id) belong to an API Alibaba has retired; "
                "create an API key in the Model Studio (百炼) console and put it in dashscope_api_key")
    return None


def _spark_key(settings: Mapping[str, Any]) -> str:
    # Spark's HTTP API takes the APIPassword of the console's "HTTP" tab; it also takes
    # "APIKey:APISecret", which is what the original's websocket settings hold.
    password = _text(settings, "xunfei_api_password")
    if password:
        return password
    key, secret = _text(settings, "xunfei_api_key"), _text(settings, "xunfei_api_secret")
    return f"{key}:{secret}" if key and secret else ""


def _spark_credentials(settings: Mapping[str, Any]) -> str | None:
    if _spark_key(settings):
        return None
    return ("setting 'xunfei_api_password' is empty: Spark's current (HTTP, OpenAI-compatible) API takes the "
            "APIPassword shown in the iFlytek console for your app; put it in xunfei_api_password "
            "(or fill in both xunfei_api_key and xunfei_api_secret)")


def _wenxin_key(settings: Mapping[str, Any]) -> str:
    # Qianfan's v2 API takes one API key (bce-v3/ALTAK-…); the original's AK/SK pair (for
    # the retired access-token API) cannot be used, see _wenxin_credentials.
    key = _text(settings, "baidu_wenxin_api_key")
    if key and (key.startswith("bce-v3/") or not _text(settings, "baidu_wenxin_secret_key")):
        return key
    return ""


def _wenxin_credentials(settings: Mapping[str, Any]) -> str | None:
    key = _text(settings, "baidu_wenxin_api_key")
    if key and not key.startswith("bce-v3/") and _text(settings, "baidu_wenxin_secret_key"):
        return ("settings 'baidu_wenxin_api_key' and 'baidu_wenxin_secret_key' hold an API Key / Secret Key pair "
                "of Baidu's old access-token API, which Qianfan's current (v2, OpenAI-compatible) API does not "
                "take: create an API key (bce-v3/ALTAK-...) in the Qianfan console, put it in baidu_wenxin_api_key "
                "and leave baidu_wenxin_secret_key empty")
    return None


def _wenxin_keeps_system_prompt(settings: Mapping[str, Any]) -> bool:
    # As the original: the character prompt goes to Wenxin only with baidu_wenxin_prompt_enabled.
    return bool(settings.get("baidu_wenxin_prompt_enabled"))


def _wenxin_model(settings: Mapping[str, Any], requested: str | None) -> str:
    """baidu_wenxin_model when the user chose one, else by `model` (wenxin / wenxin-4)."""
    chosen = _text(settings, "baidu_wenxin_model")
    if chosen and chosen != "eb-instant":
        return WENXIN_MODELS.get(chosen, chosen)
    if str(requested or "") == const.WEN_XIN_4:
        return WENXIN_MODELS["completions_pro"]
    return WENXIN_MODELS["eb-instant"]


# The original's Wenxin names were endpoint names of the v1 API; v2 takes model ids.
WENXIN_MODELS = {
    "eb-instant": "ernie-lite-8k",  # ERNIE-Bot-turbo, now ERNIE Lite
    "completions": "ernie-3.5-8k",  # ERNIE-Bot, now ERNIE 3.5
    "completions_pro": "ernie-4.0-8k",  # ERNIE-Bot 4.0
    "ernie_speed": "ernie-speed-8k",
    "ernie-speed-128k": "ernie-speed-128k",
    "ernie-lite-8k": "ernie-lite-8k",
}

# Gemini models Google has retired -> the current general model.
_GEMINI_CURRENT = "gemini-2.5-flash"
_GEMINI_RETIRED = {name: _GEMINI_CURRENT for name in (
    const.GEMINI, "gemini-pro", const.GEMINI_PRO, const.GEMINI_15_flash, const.GEMINI_15_PRO, const.GEMINI_20_flash_exp,
)}

# Zhipu's documented codes: 1000-1004 authentication, 1113 arrears, 1211 unknown model,
# 1301 content filter, 1302/1303/1305 rate limits.
_ZHIPU_CODES = {
    "1000": AUTH, "1001": AUTH, "1002": AUTH, "1003": AUTH, "1004": AUTH,
    "1113": QUOTA, "1211": NOT_FOUND, "1301": CONTENT_POLICY,
    "1302": RATE_LIMITED, "1303": RATE_LIMITED, "1305": RATE_LIMITED,
}


PRESETS: dict[str, Preset] = {}


def _add(preset: Preset) -> Preset:
    PRESETS[preset.bot_type] = preset
    return preset


DEEPSEEK = _add(Preset(
    bot_type=const.DEEPSEEK, title="DeepSeek",
    key_settings=("deepseek_api_key", "open_ai_api_key"), base_setting="deepseek_api_base",
    default_base="https://api.deepseek.com/v1", default_model=const.DEEPSEEK_CHAT,
    aliases={const.DEEPSEEK: const.DEEPSEEK_CHAT},
    key_from=_deepseek_key, base_from=_deepseek_base, credentials_problem=_deepseek_credentials,
    setting_names_from=_deepseek_setting_names,
    # DeepSeek answers a wrong model with 400 "Model Not Exist" and an empty balance with 402.
    error_messages=(("Model Not Exist", NOT_FOUND),), error_statuses={402: QUOTA},
    # deepseek-reasoner ignores the sampling settings and refuses logprobs.
    drop_params=("logprobs", "top_logprobs"),
    docs="https://api-docs.deepseek.com",
))

MOONSHOT = _add(Preset(
    bot_type=const.MOONSHOT, title="Moonshot (Kimi)",
    key_settings=("moonshot_api_key",), base_setting="moonshot_base_url",
    default_base="https://api.moonshot.cn/v1", default_model=const.MOONSHOT_V1_128K,
    aliases={const.MOONSHOT: const.MOONSHOT_V1_32K},
    sampling_range=(0.0, 1.0),
    error_codes={"exceeded_current_quota_error": QUOTA, "engine_overloaded_error": RATE_LIMITED,
                 "resource_not_found_error": NOT_FOUND, "invalid_authentication_error": AUTH},
    docs="https://platform.moonshot.cn/docs/api/chat",
))

ZHIPU = _add(Preset(
    bot_type=const.ZHIPU_AI, title="Zhipu AI (GLM)",
    key_settings=("zhipu_ai_api_key",), base_setting="zhipu_ai_api_base",
    default_base="https://open.bigmodel.cn/api/paas/v4", default_model=const.GLM_4,
    # Zhipu refuses temperature / top_p of exactly 0 or 1 and the OpenAI penalties.
    drop_params=("frequency_penalty", "presence_penalty"), sampling_range=(0.01, 0.99),
    error_codes=_ZHIPU_CODES,
    docs="https://open.bigmodel.cn/dev/api",
))

QWEN = _add(Preset(
    bot_type=const.QWEN_DASHSCOPE, title="Qwen (Alibaba DashScope)",
    key_settings=("dashscope_api_key",), base_setting="dashscope_api_base",
    default_base="https://dashscope.aliyuncs.com/compatible-mode/v1", default_model=const.QWEN_PLUS,
    aliases={const.QWEN: const.QWEN_PLUS, const.QWEN_DASHSCOPE: const.QWEN_PLUS, "qwen-bailian-v1": const.QWEN_PLUS},
    # An account in arrears: HTTP 400 "Arrearage"; a wrong key: 401 invalid_api_key.
    error_codes={"Arrearage": QUOTA, "invalid_api_key": AUTH, "model_not_found": NOT_FOUND,
                 "DataInspectionFailed": CONTENT_POLICY, "data_inspection_failed": CONTENT_POLICY},
    credentials_problem=_qwen_credentials,
    docs="https://help.aliyun.com/zh/model-studio/compatibility-of-openai-with-dashscope",
))

# The old `qwen` bot type (the retired Bailian SDK) now goes to the same compatible API.
QWEN_OLD = _add(replace(QWEN, bot_type=const.QWEN))

MINIMAX = _add(Preset(
    bot_type=const.MiniMax, title="MiniMax",
    key_settings=("Minimax_api_key",), base_setting="Minimax_base_url",
    default_base="https://api.minimaxi.com/v1", default_model="MiniMax-M2",
    aliases={const.MiniMax: "MiniMax-M2"},
    base_from=_minimax_base,
    # temperature must be in (0, 1]; the penalties are not MiniMax parameters.
    drop_params=("frequency_penalty", "presence_penalty"), sampling_range=(0.01, 1.0),
    # base_resp codes: 1004 authentication, 1008 balance, 1002 rate limit, 1026/1027 content.
    error_codes={"1004": AUTH, "2049": AUTH, "1008": QUOTA, "1002": RATE_LIMITED, "1039": RATE_LIMITED,
                 "1026": CONTENT_POLICY, "1027": CONTENT_POLICY},
    # 2013 is "invalid params", which names the model when that is what is wrong.
    error_messages=(("unknown model", NOT_FOUND), ("model not found", NOT_FOUND), ("invalid model", NOT_FOUND)),
    answer_error=_minimax_answer_error, strip_think=True,
    docs="https://platform.minimaxi.com/docs/api-reference/text-openai-api",
))

MODELSCOPE = _add(Preset(
    bot_type=const.MODELSCOPE, title="ModelScope",
    key_settings=("modelscope_api_key",), base_setting="modelscope_base_url",
    default_base="https://api-inference.modelscope.cn/v1", default_model="Qwen/Qwen2.5-7B-Instruct",
    aliases={const.MODELSCOPE: "Qwen/Qwen2.5-7B-Instruct"},
    sampling_range=(0.0, 1.0),
    strip_think=True,
    error_messages=(("invalid api key", AUTH), ("not authorized", AUTH), ("model not found", NOT_FOUND),
                    ("not support", NOT_FOUND), ("quota", QUOTA)),
    docs="https://modelscope.cn/docs/model-service/API-Inference/intro",
))

GEMINI = _add(Preset(
    bot_type=const.GEMINI, title="Google Gemini",
    key_settings=("gemini_api_key",), base_setting="gemini_api_base",
    default_base="https://generativelanguage.googleapis.com/v1beta/openai", default_model=_GEMINI_CURRENT,
    aliases=_GEMINI_RETIRED,
    drop_params=("frequency_penalty", "presence_penalty"),
    # Google's status names; a wrong key is HTTP 400 INVALID_ARGUMENT with reason API_KEY_INVALID.
    error_codes={"API_KEY_INVALID": AUTH, "PERMISSION_DENIED": AUTH, "UNAUTHENTICATED": AUTH, "NOT_FOUND": NOT_FOUND},
    # RESOURCE_EXHAUSTED (429) is both a rate limit and a used-up quota; the message tells which.
    error_messages=(("quota", QUOTA),),
    docs="https://ai.google.dev/gemini-api/docs/openai",
))

XUNFEI = _add(Preset(
    bot_type=const.XUNFEI, title="iFlytek Spark",
    key_settings=("xunfei_api_password", "xunfei_api_key", "xunfei_api_secret"), base_setting="xunfei_api_base",
    default_base="https://spark-api-open.xf-yun.com/v1", default_model="generalv3.5",
    model_setting="xunfei_domain",
    key_from=_spark_key, credentials_problem=_spark_credentials,
    drop_params=("frequency_penalty", "presence_penalty"),
    # Spark's error code table: 11200 no authorisation for the model / volume used up;
    # 11201-11203 daily, per-second or concurrency limits; 10013/10014/10019 content checks;
    # 10003-10005 the request's format, schema or a parameter's value is wrong; 10015/10016
    # the app id is blacklisted / not authorised; 10007 the previous question is still running.
    error_codes={"11200": QUOTA, "11201": QUOTA, "11202": RATE_LIMITED, "11203": RATE_LIMITED,
                 "10013": CONTENT_POLICY, "10014": CONTENT_POLICY, "10019": CONTENT_POLICY,
                 "10404": NOT_FOUND, "10003": BAD_REQUEST, "10004": BAD_REQUEST, "10005": BAD_REQUEST,
                 "10015": AUTH, "10016": AUTH, "10007": RATE_LIMITED},
    answer_error=_spark_answer_error,
    error_messages=(("domain", NOT_FOUND), ("unauthorized", AUTH), ("hmac", AUTH)),
    docs="https://www.xfyun.cn/doc/spark/HTTP%E8%B0%83%E7%94%A8%E6%96%87%E6%A1%A3.html",
))

WENXIN = _add(Preset(
    bot_type=const.BAIDU, title="Baidu Qianfan (Wenxin / ERNIE)",
    key_settings=("baidu_wenxin_api_key",), base_setting="baidu_wenxin_api_base",
    default_base="https://qianfan.baidubce.com/v2", default_model="ernie-lite-8k",
    aliases=WENXIN_MODELS, model_from=_wenxin_model,
    key_from=_wenxin_key, credentials_problem=_wenxin_credentials,
    keep_system_prompt=_wenxin_keeps_system_prompt,
    error_codes={"invalid_iam_token": AUTH, "invalid_model": NOT_FOUND, "model_not_found": NOT_FOUND,
                 "no_model_permission": NOT_FOUND, "rpm_rate_limit_exceeded": RATE_LIMITED,
                 "tpm_rate_limit_exceeded": RATE_LIMITED, "insufficient_quota": QUOTA},
    docs="https://cloud.baidu.com/doc/qianfan/s/qmh4sv5vi",
))

