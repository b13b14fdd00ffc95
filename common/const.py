"""Names shared across the project: bot types, model names, channel names.

The values are the original project's, unchanged: they appear in users'
config.json files (``bot_type``, ``model``, ``channel_type``) and in
third-party plugins that do ``from common import const``, so renaming any of
them would silently break an existing deployment.
"""
from __future__ import annotations

# --- bot types (the value of ``bot_type``, or what ``model`` is routed to) ---
OPEN_AI = "openAI"
CHATGPT = "chatGPT"
BAIDU = "baidu"
XUNFEI = "xunfei"
CHATGPTONAZURE = "chatGPTOnAzure"
LINKAI = "linkai"
CLAUDEAI = "claude"  # the old cookie-based Claude web client
CLAUDEAPI = "claudeAPI"  # Claude through the Anthropic API
QWEN = "qwen"  # the old Tongyi Qianwen access
QWEN_DASHSCOPE = "dashscope"  # Tongyi Qianwen through the DashScope SDK
GEMINI = "gemini"
ZHIPU_AI = "glm-4"
MOONSHOT = "moonshot"
MiniMax = "minimax"
DIFY = "dify"
COZE = "coze"
DEEPSEEK = "deepseek"
MODELSCOPE = "modelscope"

# --- model names ---
# OpenAI
GPT35 = "gpt-3.5-turbo"
GPT35_16K = "gpt-3.5-turbo-16k"
GPT4 = "gpt-4"
GPT4_TURBO = "gpt-4-turbo"
GPT4_TURBO_PREVIEW_ALIAS = "gpt-4-turbo-preview"
GPT4_TURBO_11_06 = "gpt-4-1106-preview"
# The original points GPT4_TURBO_PREVIEW at the dated April model (``#model
# gpt-4-turbo`` is mapped to it); kept so stored configs keep resolving the same.
GPT4_TURBO_PREVIEW = "gpt-4-turbo-2024-04-09"
GPT4_TURBO_04_09 = "gpt-4-turbo-2024-04-09"
GPT4_TURBO_01_25 = "gpt-4-0125-preview"
GPT4_VISION_PREVIEW = "gpt-4-vision-preview"
GPT_4o = "gpt-4o"
WHISPER_1 = "whisper-1"
TTS_1 = "tts-1"
TTS_1_HD = "tts-1-hd"

# Claude
CLAUDE3 = "claude-3-opus-20240229"

# Baidu Wenxin
WEN_XIN = "wenxin"
WEN_XIN_4 = "wenxin-4"

# Tongyi Qianwen (DashScope)
QWEN_TURBO = "qwen-turbo"
QWEN_PLUS = "qwen-plus"
QWEN_MAX = "qwen-max"

# Moonshot (Kimi)
MOONSHOT_V1_8K = "moonshot-v1-8k"
MOONSHOT_V1_32K = "moonshot-v1-32k"
MOONSHOT_V1_128K = "moonshot-v1-128k"

# MiniMax
MINIMAX_ABAB6_5 = "abab6.5-chat"

# DeepSeek
DEEPSEEK_CHAT = "deepseek-chat"
DEEPSEEK_REASONER = "deepseek-reasoner"

# LinkAI
LINKAI_35 = "linkai-3.5"
LINKAI_4_TURBO = "linkai-4-turbo"
LINKAI_4o = "linkai-4o"

# The names ``#model <name>`` (godcmd) accepts. A tuple would be safer, but
# plugins in the wild append to or concatenate this list, so it stays a list.
# Unlike the original, dify/coze/deepseek/modelscope/minimax model names are
# listed too: the original routes them (bridge) but ``#model dify`` refused them.
MODEL_LIST = [
    GPT35, GPT35_16K, GPT4, WEN_XIN, WEN_XIN_4, XUNFEI, CLAUDEAI, CLAUDE3, GPT4_TURBO,
    GPT4_TURBO_PREVIEW_ALIAS, GPT4_TURBO_11_06, GPT4_TURBO_PREVIEW, GPT4_TURBO_01_25, GPT_4o,
    QWEN, GEMINI, ZHIPU_AI, MOONSHOT, MOONSHOT_V1_8K, MOONSHOT_V1_32K, MOONSHOT_V1_128K,
    QWEN_TURBO, QWEN_PLUS, QWEN_MAX, LINKAI_35, LINKAI_4_TURBO, LINKAI_4o,
    DIFY, COZE, DEEPSEEK_CHAT, DEEPSEEK_REASONER, MODELSCOPE, MINIMAX_ABAB6_5,
]

# --- channels ---
FEISHU = "feishu"
DINGTALK = "dingtalk"

# The channels plugins are loaded for at start-up (gewechat and wcf are not
# part of this port).
CHANNEL_NAMES: tuple[str, ...] = (
    "wx",
    "wxy",
    "terminal",
    "web",
    "wechatmp",
    "wechatmp_service",
    "wechatcom_app",
    "wechatcom_service",
    "wework",
    "feishu",
    "dingtalk",
)
