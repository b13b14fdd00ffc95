"""Names shared across the project: bot types, model names, channel names.

Every name the original project defines here exists with the same value: they
appear in users' config.json files (``bot_type``, ``model``) and third-party
plugins read them (``from common import const``, ``from common.const import *``),
so renaming or re-valuing one would silently break an existing deployment.
A few names of our own follow the original's (marked "ours").
"""
from __future__ import annotations

# --- bot types (the value of ``bot_type``, or what ``model`` is routed to) ---
OPEN_AI = "openAI"
CHATGPT = "chatGPT"
BAIDU = "baidu"
XUNFEI = "xunfei"
CHATGPTONAZURE = "chatGPTOnAzure"
LINKAI = "linkai"
GEMINI = "gemini"
DIFY = "dify"
ZHIPU_AI = "glm-4"
COZE = "coze"
CLAUDEAI = "claude"  # the old cookie-based Claude web client
CLAUDEAPI = "claudeAPI"  # Claude through the Anthropic API
QWEN = "qwen"  # the old Tongyi Qianwen access
QWEN_DASHSCOPE = "dashscope"  # Tongyi Qianwen through the DashScope SDK
MOONSHOT = "moonshot"
MiniMax = "minimax"
DEEPSEEK = "deepseek"
MODELSCOPE = "modelscope"

# --- model names ---
# OpenAI
GPT35 = "gpt-3.5-turbo"
GPT35_0125 = "gpt-3.5-turbo-0125"
GPT35_1106 = "gpt-3.5-turbo-1106"
GPT35_16K = "gpt-3.5-turbo-16k"  # ours: the original lists it as a bare string
GPT_4o = "gpt-4o"
GPT_4O = "gpt-4o"
GPT_4O_0806 = "gpt-4o-2024-08-06"
GPT_4o_MINI = "gpt-4o-mini"
GPT_4O_MINI = "gpt-4o-mini"
GPT4 = "gpt-4"
GPT4_32k = "gpt-4-32k"
GPT4_06_13 = "gpt-4-0613"
GPT4_32k_06_13 = "gpt-4-32k-0613"
GPT4_TURBO = "gpt-4-turbo"
GPT4_TURBO_PREVIEW = "gpt-4-turbo-preview"  # what ``#model gpt-4-turbo`` stores
GPT4_TURBO_04_09 = "gpt-4-turbo-2024-04-09"
GPT4_TURBO_01_25 = "gpt-4-0125-preview"
GPT4_TURBO_11_06 = "gpt-4-1106-preview"
GPT4_VISION_PREVIEW = "gpt-4-vision-preview"
O1 = "o1-preview"
O1_MINI = "o1-mini"
WHISPER_1 = "whisper-1"
TTS_1 = "tts-1"
TTS_1_HD = "tts-1-hd"

# Baidu Wenxin
WEN_XIN = "wenxin"
WEN_XIN_4 = "wenxin-4"

# Tongyi Qianwen (DashScope)
QWEN_TURBO = "qwen-turbo"
QWEN_PLUS = "qwen-plus"
QWEN_MAX = "qwen-max"

# LinkAI
LINKAI_35 = "linkai-3.5"
LINKAI_4_TURBO = "linkai-4-turbo"
LINKAI_4o = "linkai-4o"

# Google Gemini
GEMINI_PRO = "gemini-1.0-pro"
GEMINI_15_flash = "gemini-1.5-flash"
GEMINI_15_PRO = "gemini-1.5-pro"
GEMINI_20_flash_exp = "gemini-2.0-flash-exp"

# Zhipu GLM
GLM_4 = "glm-4"
GLM_4_PLUS = "glm-4-plus"
GLM_4_flash = "glm-4-flash"
GLM_4_LONG = "glm-4-long"
GLM_4_ALLTOOLS = "glm-4-alltools"
GLM_4_0520 = "glm-4-0520"
GLM_4_AIR = "glm-4-air"
GLM_4_AIRX = "glm-4-airx"

# Claude ("latest" names follow Anthropic's newest release; dated names stay fixed)
CLAUDE3 = "claude-3-opus-20240229"
CLAUDE_3_OPUS = "claude-3-opus-latest"
CLAUDE_3_OPUS_0229 = "claude-3-opus-20240229"
CLAUDE_35_SONNET = "claude-3-5-sonnet-latest"
CLAUDE_35_SONNET_1022 = "claude-3-5-sonnet-20241022"
CLAUDE_35_SONNET_0620 = "claude-3-5-sonnet-20240620"
CLAUDE_3_SONNET = "claude-3-sonnet-20240229"
CLAUDE_3_HAIKU = "claude-3-haiku-20240307"

# DeepSeek
DEEPSEEK_CHAT = "deepseek-chat"  # DeepSeek-V3
DEEPSEEK_REASONER = "deepseek-reasoner"  # DeepSeek-R1

# Moonshot (Kimi); ours: the original spells these names out where it uses them
MOONSHOT_V1_8K = "moonshot-v1-8k"
MOONSHOT_V1_32K = "moonshot-v1-32k"
MOONSHOT_V1_128K = "moonshot-v1-128k"

# MiniMax; ours: the model name the bridge routes to the MiniMax bot
MINIMAX_ABAB6_5 = "abab6.5-chat"

# Models served through Gitee AI and ModelScope (OpenAI-compatible endpoints).
GITEE_AI_MODEL_LIST = [
    "Yi-34B-Chat", "InternVL2-8B", "deepseek-coder-33B-instruct", "InternVL2.5-26B", "Qwen2-VL-72B",
    "Qwen2.5-32B-Instruct", "glm-4-9b-chat", "codegeex4-all-9b", "Qwen2.5-Coder-32B-Instruct",
    "Qwen2.5-72B-Instruct", "Qwen2.5-7B-Instruct", "Qwen2-72B-Instruct", "Qwen2-7B-Instruct",
    "code-raccoon-v1", "Qwen2.5-14B-Instruct",
]

MODELSCOPE_MODEL_LIST = [
    "LLM-Research/c4ai-command-r-plus-08-2024", "mistralai/Mistral-Small-Instruct-2409",
    "mistralai/Ministral-8B-Instruct-2410", "mistralai/Mistral-Large-Instruct-2407",
    "Qwen/Qwen2.5-Coder-32B-Instruct", "Qwen/Qwen2.5-Coder-14B-Instruct", "Qwen/Qwen2.5-Coder-7B-Instruct",
    "Qwen/Qwen2.5-72B-Instruct", "Qwen/Qwen2.5-32B-Instruct", "Qwen/Qwen2.5-14B-Instruct",
    "Qwen/Qwen2.5-7B-Instruct", "Qwen/QwQ-32B-Preview", "LLM-Research/Llama-3.3-70B-Instruct",
    "opencompass/CompassJudger-1-32B-Instruct", "Qwen/QVQ-72B-Preview", "LLM-Research/Meta-Llama-3.1-405B-Instruct",
    "LLM-Research/Meta-Llama-3.1-8B-Instruct", "Qwen/Qwen2-VL-7B-Instruct", "LLM-Research/Meta-Llama-3.1-70B-Instruct",
    "Qwen/Qwen2.5-14B-Instruct-1M", "Qwen/Qwen2.5-7B-Instruct-1M", "Qwen/Qwen2.5-VL-3B-Instruct",
    "Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-VL-72B-Instruct", "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "deepseek-ai/DeepSeek-R1", "deepseek-ai/DeepSeek-V3", "Qwen/QwQ-32B",
]

# The names ``#model <name>`` (godcmd) accepts: the original's list, in its order,
# then abab6.5-chat (ours: the bridge routes it, so #model should accept it). A
# tuple would be safer, but plugins in the wild append to or concatenate this
# list, so it stays a list.
MODEL_LIST = [
    GPT35, GPT35_0125, GPT35_1106, GPT35_16K,
    O1, O1_MINI, GPT_4o, GPT_4O_0806, GPT_4o_MINI, GPT4_TURBO, GPT4_TURBO_PREVIEW, GPT4_TURBO_01_25,
    GPT4_TURBO_11_06, GPT4, GPT4_32k, GPT4_06_13, GPT4_32k_06_13,
    WEN_XIN, WEN_XIN_4,
    XUNFEI,
    ZHIPU_AI, GLM_4, GLM_4_PLUS, GLM_4_flash, GLM_4_LONG, GLM_4_ALLTOOLS, GLM_4_0520, GLM_4_AIR, GLM_4_AIRX,
    MOONSHOT, MiniMax,
    GEMINI, GEMINI_PRO, GEMINI_15_flash, GEMINI_15_PRO, GEMINI_20_flash_exp,
    CLAUDE_3_OPUS, CLAUDE_3_OPUS_0229, CLAUDE_35_SONNET, CLAUDE_35_SONNET_1022, CLAUDE_35_SONNET_0620,
    CLAUDE_3_SONNET, CLAUDE_3_HAIKU, CLAUDEAI, "claude-3-haiku", "claude-3-sonnet", "claude-3-opus", "claude-3.5-sonnet",
    MOONSHOT_V1_8K, MOONSHOT_V1_32K, MOONSHOT_V1_128K,
    QWEN, QWEN_TURBO, QWEN_PLUS, QWEN_MAX,
    LINKAI_35, LINKAI_4_TURBO, LINKAI_4o,
    DIFY, COZE,
    DEEPSEEK_CHAT, DEEPSEEK_REASONER,
    MODELSCOPE,
] + GITEE_AI_MODEL_LIST + MODELSCOPE_MODEL_LIST + [MINIMAX_ABAB6_5]

# --- channels ---
FEISHU = "feishu"
DINGTALK = "dingtalk"

# Ours: channel names of the original that can no longer work, with what start-up says instead.
GONE_CHANNELS: dict[str, str] = {
    "gewechat": "the gewechat service has shut down upstream, so this channel cannot work any more; use `wx` "
                "(personal WeChat through Tencent's official iLink bot API, QR login), `wxy` (wechaty) or `wework` "
                "(the WeCom PC client) instead",
}

# Ours: the channels plugins are loaded for at start-up (gewechat is gone upstream). The
# original left wcf out of its list (its wcf channel came late); plugins are loaded for it here,
# as for every other chat channel (DESIGN §1), so that godcmd and the rest work on it too.
CHANNEL_NAMES: tuple[str, ...] = (
    "wx",
    "wxy",
    "wcf",
    "terminal",
    "web",
    "wechatmp",
    "wechatmp_service",
    "wechatcom_app",
    "wechatcom_service",
    "wework",
    "feishu",
    "dingtalk",
    "wecom_bot",
)
