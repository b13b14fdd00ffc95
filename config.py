# encoding:utf-8
"""Settings: every key of the original, with the defaults its code really applies.

Sources, later wins: config.json (or config.yaml / config.yml), else
config-template.json; then `.env`; then environment variables. Unknown keys and
values of the wrong type stop start-up with a ConfigError naming the key.

The contract (plugins import these): conf(), load_config(), Config.get_user_data,
Config.save_user_datas, Config.load_user_datas, pconf, plugin_config,
write_plugin_config, remove_plugin_config, get_appdata_dir, get_root,
subscribe_msg, global_config.
"""
from __future__ import annotations

import copy
import difflib
import json
import math
import os
import re
import threading
from typing import Any

from common import const
from common.log import logger, set_debug
from common.masking import mask_value
from common.original_settings import ORIGINAL_TABLE
from common.utils import write_json_atomic

_UNSET = object()


class ConfigError(Exception):
    """A setting is wrong. The message is one line meant for the user."""


# (default, description). The default is the one the original's code applies when the
# key is absent; the type a value must have is taken from the default unless
# _EXTRA_TYPES says otherwise.
SETTINGS: dict[str, tuple[Any, str]] = {
    # --- general / runtime
    "channel_type": ("wx", "Channel to start. Available now: terminal, web, wework (Windows only), wecom_bot (the WeCom AI bot), wechatmp and wechatmp_service (WeChat Official Account), wechatcom_app (a WeCom self-built app), wechatcom_service (WeCom customer service, 微信客服), feishu (Feishu / Lark: HTTP events or the long connection), dingtalk (a DingTalk robot, Stream mode), wx (also `weixin`: personal WeChat through Tencent's iLink bot API, QR login; `wx_protocol: itchat` switches it to the legacy web-WeChat protocol, at the risk of the account), wxy (personal WeChat through a wechaty puppet service: needs `wechaty_puppet_service_token` or `wechaty_puppet_service_endpoint` and `pip install -r requirements-wxy.txt`), wcf (personal WeChat through WeChatFerry, a hook of the Windows PC WeChat client: on Windows, or against a WeChatFerry service named by wcf_host). `gewechat` stops start-up: its service has shut down. `--cmd` forces terminal. Several channels side by side: a list [\"wx\", \"web\"] or \"wx,web\" (each at most once, no two on one port, terminal not with wx; each channel's sessions are then kept apart by its name). New: the list."),
    "debug": (False, "DEBUG logging on the console and in run.log; `#debug` toggles it at run time."),
    "appdata_dir": ("", "Data folder (state database, imported user data), relative to the project folder."),
    "state_store": ("sqlite", "Durable state backend: `sqlite` (file `state.db` in appdata_dir; the default), `memory` (lost on exit; tests only) or `redis` (the Redis server of redis_url, so instances can share state; see README \"Redis state store\"). New."),
    "redis_url": ("redis://127.0.0.1:6379/0", "With state_store `redis`: the server, as redis://[[user]:password@]host[:port][/db], rediss:// for TLS or unix:///path/to/redis.sock. Checked when the config is read; Redis unreachable at start-up stops the start. Give Redis `appendonly yes` so its restart keeps accepted messages. New."),
    "redis_key_prefix": ("dow:", "With state_store `redis`: the start of every key the daemon writes, so one Redis can hold several bots (each its own prefix); instances of one bot share it. New."),
    "shutdown_timeout": (10, "Seconds a stop waits for the messages taken to be answered before it exits; those left are kept in the state store and answered after the next start. New."),
    "worker_threads": (8, "Size of the worker pool that generates replies, shared by all sessions. New (the original fixes 8)."),
    "session_queue_size": (100, "Messages one session may have waiting; past that the user is told the bot is busy (`#` commands such as `#reset` are still taken). New."),
    "max_pending_messages": (10000, "Messages waiting or being answered over all sessions; past that a new message gets the same busy answer as a full session queue (naming the message), so memory stays bounded however many users write at once (about 3 KB a short message). New."),
    "max_pending_chars": (10_000_000, "Characters of message text waiting or being answered over all sessions (the text is most of what a waiting message costs: about 2 bytes a character); past that a new message gets the busy answer, as with max_pending_messages. New."),
    "error_reply": ("我暂时遇到了一些问题，请您稍后重试~", "Generic error text sent to users."),
    "clear_memory_commands": (["#清除记忆"], "Extra aliases of `#reset` (each must start with `#`). The original's bots default to `[\"#清除记忆\"]` but its godcmd to `[]` (there `#清除记忆` was an unknown command unless set); here both use `[\"#清除记忆\"]`."),
    "subscribe_msg": ("", "Greeting sent on follow (wechatmp); `{trigger_prefix}` is replaced by the first single_chat_prefix."),
    "web_ui_port": (7860, "Port of the original's gradio admin page (not used by this port)."),
    "web_ui_username": ("dow", "User name of the original's gradio admin page (not used by this port)."),
    "web_ui_password": ("dify-on-wechat", "Password of the original's gradio admin page (not used by this port)."),
    "web_port": (9899, "Port of the `web` chat channel."),
    "web_host": ("0.0.0.0", "Address the `web` channel's HTTP server listens on (127.0.0.1: this machine only). New."),
    "web_password": ("", "Password of the `web` chat page; empty: no password. The API then wants `Authorization: Bearer <password>`; the page trades it for a short-lived stream token. New."),
    "http_max_connections": (10000, "Connections the HTTP server (web channel, webhooks) holds at once. When full, the one that has waited longest for its request goes, so idle connections never lock new users out; lowered at start to what the process's open-file limit allows. New."),
    "answer_max_chars": (65536, "Longest answer sent, in characters; a longer one is cut and ends with a note saying so (a bot stops reading it there). At least 1000. New."),
    "dedup_ttl": (6 * 3600, "Seconds a message id is remembered after the message was answered, so that a platform's re-delivery is recognised and not answered twice (the ids take about 130 bytes each in state.db; expired ones are purged every 10 minutes, so the file levels at the message rate times this). At least 60. New (the original kept ids in memory for 6 hours, lost on a restart)."),
    "tmp_max_age": (3600, "Seconds a file in tmp/ is kept; older ones are deleted at start and every few minutes (never wework_contacts.json, wework_rooms.json, wework_room_members.json, .gitkeep, nor a file the web page may still fetch). At least 60. New."),
    "web_media_user_max_bytes": (16 * 1024 * 1024, "Bytes of images and files the `web` channel keeps in memory for one user; past that the oldest go. New."),
    "web_media_max_bytes": (64 * 1024 * 1024, "Bytes of images and files the `web` channel keeps in memory for all users together; past that the oldest go. New."),
    "web_history_size": (50, "Messages of each `web` user's conversation kept in the state store, so a reloaded page (or one opened after a restart) shows them again; 0: none. New."),
    # --- bot / model routing
    "model": ("gpt-3.5-turbo", "Model name; also picks the bot when bot_type is empty (`dify` selects the Dify bot). `#model` changes it."),
    "bot_type": ("", "Forces the bot, e.g. `chatGPT` for any OpenAI-compatible endpoint, `dify`."),
    "use_azure_chatgpt": (False, "Use Azure OpenAI for the chat bot."),
    "azure_deployment_id": ("", "Azure model deployment name."),
    "azure_api_version": ("", "Azure API version (empty: the bot's own default)."),
    "open_ai_api_key": ("", "OpenAI (or compatible) API key."),
    "open_ai_api_base": ("https://api.openai.com/v1", "OpenAI-compatible API root."),
    "proxy": ("", "HTTP proxy for OpenAI-style requests."),
    "character_desc": ("", "System prompt of session-based bots (empty: none, as in the original's code; its table suggests a \"you are ChatGPT\" text)."),
    "conversation_max_tokens": (1000, "History budget (tokens) before old turns are trimmed."),
    "expires_in_seconds": (3600, "Idle time after which a bot session is forgotten (0: never; the original's code never expires them when unset)."),
    "temperature": (0.9, "Sampling temperature."),
    "top_p": (1, "Sampling top_p."),
    "frequency_penalty": (0, "Sampling frequency penalty."),
    "presence_penalty": (0, "Sampling presence penalty."),
    "request_timeout": (180, "Request timeout in seconds of the OpenAI-style bots (the original's ChatGPT bot waited without limit when unset; its other bots used 180)."),
    "timeout": (120, "Retry window of the OpenAI-style bots (the original reads request_timeout instead)."),
    "rate_limit_chatgpt": (20, "Chat requests per minute (OpenAI-style bots)."),
    "rate_limit_dalle": (50, "Image generations per minute."),
    "baidu_wenxin_model": ("eb-instant", "Baidu Wenxin model (`model: wenxin` / `wenxin-4`, `bot_type: baidu`): a Qianfan v2 model id such as `ernie-4.0-8k`, `ernie-3.5-8k`, `ernie-speed-128k`; the original's v1 names are mapped (`eb-instant` -> `ernie-lite-8k`, `completions` -> `ernie-3.5-8k`, `completions_pro` -> `ernie-4.0-8k`). Left at `eb-instant`, `model: wenxin-4` asks for `ernie-4.0-8k` (the original's intent; its default made wenxin-4 unreachable)."),
    "baidu_wenxin_api_key": ("", "Baidu Qianfan API key (`bce-v3/ALTAK-...`, created in the Qianfan console) for Wenxin / ERNIE through Qianfan's v2 OpenAI-compatible API. The original's API Key + Secret Key pair (old access-token API) no longer works: start-up says so."),
    "baidu_wenxin_secret_key": ("", "Secret Key of the original's old access-token API; leave empty with a v2 API key in baidu_wenxin_api_key."),
    "baidu_wenxin_prompt_enabled": (False, "Send the character prompt (character_desc) to Wenxin as a system message; off: Wenxin gets no system prompt, as in the original."),
    "baidu_wenxin_api_base": ("https://qianfan.baidubce.com/v2", "Baidu Qianfan OpenAI-compatible API root (Wenxin / ERNIE). New."),
    "xunfei_app_id": ("", "iFlytek Spark app id (the websocket API's; the HTTP API does not need it)."),
    "xunfei_api_key": ("", "iFlytek Spark API key; with xunfei_api_secret it is sent as `APIKey:APISecret` when xunfei_api_password is empty."),
    "xunfei_api_secret": ("", "iFlytek Spark API secret (see xunfei_api_key)."),
    "xunfei_api_password": ("", "iFlytek Spark APIPassword (console, the app's HTTP credentials): the key of Spark's HTTP OpenAI-compatible API. New."),
    "xunfei_api_base": ("https://spark-api-open.xf-yun.com/v1", "iFlytek Spark HTTP (OpenAI-compatible) API root. New."),
    "xunfei_domain": ("generalv3.5", "iFlytek Spark model (the `model` sent): `lite`, `generalv3`, `pro-128k`, `generalv3.5` (Max), `max-32k`, `4.0Ultra`."),
    "xunfei_spark_url": ("wss://spark-api.xf-yun.com/v3.5/chat", "The original's Spark websocket URL; not used (the bot speaks the HTTP API at xunfei_api_base)."),
    "claude_api_cookie": ("", "Legacy web Claude cookie (model `claude`: that web client is retired, start-up says so; use a `claude-3*` model or bot_type `claudeAPI`)."),
    "claude_uuid": ("", "Legacy web Claude organisation uuid (retired with it)."),
    "claude_api_key": ("", "Anthropic API key (bot `claudeAPI`: a `model` starting with `claude-3`, or bot_type `claudeAPI` for newer models such as claude-sonnet-4-5)."),
    "claude_api_base": ("", "Anthropic API root for `claudeAPI` (a relay speaking the Messages API; a trailing `/v1` is dropped, the client adds `/v1/messages`); empty: Anthropic's own. The original used open_ai_api_base, which is still read when this is empty and that one is not OpenAI's. New."),
    "claude_stream": (True, "`claudeAPI`: ask for a streamed answer (shown growing on channels that can; no idle cut-off on long answers); false: one JSON answer, for relays that cannot stream. New."),
    "claude_max_tokens": (4096, "`claudeAPI`: most tokens of one answer (the Messages API's max_tokens; the original sent 4096). New."),
    "qwen_access_key_id": ("", "Old Qwen SDK access key id."),
    "qwen_access_key_secret": ("", "Old Qwen SDK access key secret."),
    "qwen_agent_key": ("", "Old Qwen SDK agent key."),
    "qwen_app_id": ("", "Old Qwen SDK app id."),
    "qwen_node_id": ("", "Old Qwen SDK flow node id (keep empty unless used)."),
    "dashscope_api_key": ("", "Alibaba DashScope (Model Studio, 百炼) API key, for Qwen (`model: qwen`, `qwen-turbo/plus/max`, `bot_type: dashscope` or `qwen`)."),
    "dashscope_api_base": ("https://dashscope.aliyuncs.com/compatible-mode/v1", "DashScope OpenAI-compatible API root (Singapore: `https://dashscope-intl.aliyuncs.com/compatible-mode/v1`). New."),
    "gemini_api_key": ("", "Google Gemini API key (Google AI Studio)."),
    "gemini_api_base": ("https://generativelanguage.googleapis.com/v1beta/openai", "Gemini OpenAI-compatible API root. New."),
    "deepseek_api_key": ("", "DeepSeek API key (sent to deepseek_api_base, else DeepSeek's own address). When it and deepseek_api_base are empty, open_ai_api_key is used together with open_ai_api_base, as the original's DeepSeek bot did, but only when open_ai_api_base is not OpenAI's (an OpenAI key never goes to DeepSeek). New."),
    "deepseek_api_base": ("", "DeepSeek API root; empty: open_ai_api_base when it is not OpenAI's own (the original's behaviour), else `https://api.deepseek.com/v1`. New."),
    "zhipu_ai_api_key": ("", "Zhipu AI (GLM) API key."),
    "zhipu_ai_api_base": ("https://open.bigmodel.cn/api/paas/v4", "Zhipu AI OpenAI-compatible API root (the original ignored it; now used)."),
    "moonshot_api_key": ("", "Moonshot (Kimi) API key."),
    "moonshot_base_url": ("https://api.moonshot.cn/v1/chat/completions", "Moonshot API: the root (`https://api.moonshot.cn/v1`) or, as in the original, the full chat-completions URL."),
    "modelscope_api_key": ("", "ModelScope API-Inference key (access token)."),
    "modelscope_base_url": ("https://api-inference.modelscope.cn/v1/chat/completions", "ModelScope API: the root or, as in the original, the full chat-completions URL."),
    "Minimax_api_key": ("", "MiniMax API key (capitalised as in the original)."),
    "Minimax_group_id": ("", "MiniMax group id (the retired ChatCompletion Pro API's; the OpenAI-compatible API does not need it)."),
    "Minimax_base_url": ("", "MiniMax API root; empty (or the original's old `.../text/chatcompletion_pro` URL): `https://api.minimaxi.com/v1` (international: `https://api.minimax.io/v1`)."),
    "coze_api_base": ("https://api.coze.cn", "Coze API root: `https://api.coze.cn` (扣子, China) or `https://api.coze.com` (international)."),
    "coze_api_key": ("", "Coze personal access token (`pat_...`), sent as a bearer token to the v3 chat API."),
    "coze_bot_id": ("", "Coze bot id (the bot must be published as an API / Agent-as-API)."),
    "coze_return_show_img": ("false", "Coze: send the markdown images and file links of an answer as images and files (`true`/`false`); a failed download sends the link."),
    "coze_conversation_max_messages": (20, "Coze: user messages per conversation before a new one starts (0: never). Conversations are kept in the state store, so a restart continues them."),
    "coze_stream": (True, "Coze: ask for a streamed answer (shown growing on channels that can); false: create the chat and poll it (/v3/chat/retrieve, /v3/chat/message/list). New."),
    "coze_answer_timeout": (300, "Coze: most seconds one answer may take (streamed or polled), then the user is told. New."),
    # --- Dify
    "dify_api_base": ("https://api.dify.ai/v1", "Dify Service API root."),
    "dify_api_key": ("", "Dify app key (`app-...`)."),
    "dify_app_type": ("chatbot", "Dify app type: chatbot, chatflow, agent, workflow, completion."),
    "dify_response_mode": ("streaming", "How chat apps answer: `streaming` (avoids the cloud's 100 s cut-off) or `blocking` (not for agent apps). New."),
    "dify_stream_reply": (False, "Send each finished paragraph of a streamed Dify answer as soon as it is complete instead of waiting for the end. New."),
    "dify_workflow_input_variable": ("query", "Workflow apps: the input variable that receives the user's text. New."),
    "dify_workflow_output_variable": ("text", "Workflow apps: the output variable that holds the answer. New."),
    "dify_connect_timeout": (10, "Seconds to wait for a connection to Dify. New."),
    "dify_read_timeout": (120, "Seconds Dify may stay silent (between streamed events, or for a whole blocking answer) before the request fails. New."),
    "dify_answer_timeout": (300, "Most seconds one Dify answer may take in total, however slowly it streams; then the connection is closed and the user told (what arrived is kept). New."),
    "dify_max_retries": (2, "Retries of a Dify request after a 429, a 5xx or a connection error, with growing pauses. New."),
    "dify_conversation_max_messages": (5, "User messages per Dify conversation before a new one starts (<=0: no limit)."),
    "dify_error_reply": ("", "If set, replaces every Dify error text sent to users."),
    # --- trigger rules
    "single_chat_prefix": ([""], "A private message must start with one of these (removed); `[\"\"]` answers everything."),
    "single_chat_reply_prefix": ("", "Text put before private text replies (the original's table suggests `[bot] `)."),
    "single_chat_reply_suffix": ("", "Text put after private text replies."),
    "accept_friend_commands": ([], "Friend-request texts that are accepted automatically (empty: none; the original's table suggests `[\"加好友\"]`)."),
    "accept_friend_msg": ("", "Message sent after accepting a friend request."),
    "group_chat_prefix": ([], "A group message starting with one of these triggers the bot (removed). Empty: only an @mention or a group_chat_keyword triggers (the original's table suggests `[\"@bot\"]`)."),
    "group_chat_suffix": ([""], "Kept for compatibility; not used by the original's code."),
    "group_chat_keyword": ([], "A group message containing one of these triggers the bot (kept in the text)."),
    "group_at_off": (False, "When true an @mention alone no longer triggers the bot."),
    "no_need_at": (False, "When true group replies do not start with @sender."),
    "group_chat_reply_prefix": ("", "Text put before group text replies."),
    "group_chat_reply_suffix": ("", "Text put after group text replies."),
    "group_name_white_list": ([], "Group names the bot answers in; `ALL_GROUP` means every group."),
    "group_name_keyword_white_list": ([], "A group is answered if its name contains one of these."),
    "group_userid_black_list": ([], "Kept for compatibility; not used by the original's code."),
    "group_chat_in_one_session": ([], "Group names (or `ALL_GROUP`) whose members share one bot session."),
    "nick_name_black_list": ([], "Sender nicknames that are never answered (every trigger, private and group)."),
    "trigger_by_self": (True, "Whether messages sent by the bot's own account can trigger it."),
    "group_welcome_msg": ("", "Fixed welcome for new group members (hello plugin); empty: the bot writes one."),
    "group_chat_exit_group": (False, "Hello plugin: say something when a member leaves."),
    "group_exit_msg": ("", "Hello plugin: fixed text when a member leaves."),
    "concurrency_in_session": (1, "Messages of one session handled at once; 1 keeps replies in question order (the original's code default is 4)."),
    "chat_time_module": (False, "Only answer between chat_start_time and chat_stop_time."),
    "chat_start_time": ("00:00", "Start of service hours (HH:MM)."),
    "chat_stop_time": ("24:00", "End of service hours (HH:MM); may be earlier than the start (crosses midnight)."),
    "hot_reload": (False, "Personal WeChat with wx_protocol itchat: keep the login over a restart (kept in the state store; a login WeChat no longer takes leads to a new QR); also skip messages older than 60 s."),
    # --- voice
    "speech_recognition": (False, "Transcribe private voice messages."),
    "group_speech_recognition": (False, "Transcribe group voice messages."),
    "voice_reply_voice": (False, "Answer voice with voice."),
    "always_reply_voice": (False, "Answer everything with voice."),
    "voice_to_text": ("openai", "Speech-to-text engine."),
    "text_to_voice": ("google", "Text-to-speech engine."),
    "text_to_voice_model": ("tts-1", "OpenAI/LinkAI text-to-speech model."),
    "tts_voice_id": ("alloy", "OpenAI/LinkAI voice."),
    "baidu_app_id": ("", "Baidu speech app id."),
    "baidu_api_key": ("", "Baidu speech API key."),
    "baidu_secret_key": ("", "Baidu speech secret key."),
    "baidu_dev_pid": (1536, "Baidu speech language model id (1536 Mandarin)."),
    "voice_to_text_model": ("whisper-1", "Speech-to-text engines `openai` and `linkai`: the transcription model (`whisper-1`, `gpt-4o-transcribe`, `gpt-4o-mini-transcribe`); the original always sent `whisper-1`. New."),
    # Vendor speech engines (voice/baidu, ali, tencent, xunfei, edge, pytts). New unless noted.
    "voice_request_timeout": (30.0, "Seconds a vendor speech engine (baidu, ali, tencent, xunfei, edge) waits for an answer. New."),
    "baidu_speech_token_url": ("https://aip.baidubce.com/oauth/2.0/token", "Baidu speech: OAuth token endpoint (from baidu_api_key + baidu_secret_key). New."),
    "baidu_speech_asr_url": ("https://vop.baidu.com/server_api", "Baidu speech: recognition endpoint (`voice_to_text: baidu`). New."),
    "baidu_speech_tts_url": ("https://tsn.baidu.com/text2audio", "Baidu speech: synthesis endpoint (`text_to_voice: baidu`). New."),
    "ali_voice_app_key": ("", "Aliyun NLS (`voice_to_text`/`text_to_voice: ali`): the project AppKey; empty: `app_key` of voice/ali/config.json (the original's file). New."),
    "ali_voice_access_key_id": ("", "Aliyun NLS: AccessKey id for CreateToken; qwen_access_key_id wins when set (as in the original); empty: `access_key_id` of voice/ali/config.json. New."),
    "ali_voice_access_key_secret": ("", "Aliyun NLS: AccessKey secret (see ali_voice_access_key_id). New."),
    "ali_voice_token_url": ("https://nls-meta.cn-shanghai.aliyuncs.com/", "Aliyun NLS: CreateToken endpoint. New."),
    "ali_voice_asr_url": ("", "Aliyun NLS: one-sentence recognition endpoint; empty: `api_url_voice_to_text` of voice/ali/config.json, else https://nls-gateway-cn-shanghai.aliyuncs.com/stream/v1/asr. New."),
    "ali_voice_tts_url": ("", "Aliyun NLS: synthesis endpoint; empty: `api_url_text_to_voice` of voice/ali/config.json, else https://nls-gateway-cn-shanghai.aliyuncs.com/stream/v1/tts. New."),
    "ali_voice_tts_voice": ("", "Aliyun NLS: synthesis voice (e.g. `xiaoyun`); empty: the project's default. New."),
    "tencent_secret_id": ("", "Tencent Cloud speech (`tencent`): SecretId; empty: `secret_id` of voice/tencent/config.json (the original's file). New."),
    "tencent_secret_key": ("", "Tencent Cloud speech: SecretKey; empty: `secret_key` of voice/tencent/config.json. New."),
    "tencent_voice_type": ("", "Tencent Cloud TTS VoiceType; empty: `voice_type` of voice/tencent/config.json, else 1003. New."),
    "tencent_region": ("ap-guangzhou", "Tencent Cloud speech: region (X-TC-Region). New."),
    "tencent_asr_engine": ("16k_zh", "Tencent Cloud SentenceRecognition EngSerViceType (16k_zh, 16k_en, 16k_yue, ...). New."),
    "tencent_asr_endpoint": ("https://asr.tencentcloudapi.com", "Tencent Cloud ASR API endpoint. New."),
    "tencent_tts_endpoint": ("https://tts.tencentcloudapi.com", "Tencent Cloud TTS API endpoint. New."),
    "xunfei_asr_url": ("wss://iat-api.xfyun.cn/v2/iat", "iFlytek dictation websocket (`voice_to_text: xunfei`); credentials from voice/xunfei/config.json (APPID, APIKey, APISecret), else xunfei_app_id / xunfei_api_key / xunfei_api_secret. New."),
    "xunfei_tts_url": ("wss://tts-api.xfyun.cn/v2/tts", "iFlytek synthesis websocket (`text_to_voice: xunfei`). New."),
    "edge_tts_voice": ("zh-CN-YunjianNeural", "Edge TTS (`text_to_voice: edge`) voice; `edge-tts --list-voices` lists them. New."),
    "edge_tts_wss_url": ("", "Edge TTS: service websocket URL replacing edge-tts's built-in one (a gateway, or a test fake); empty: the package's. New."),
    "azure_voice_api_key": ("", "Azure speech key."),
    "azure_voice_region": ("japaneast", "Azure speech region."),
    "azure_voice_api_base": ("", "Voice engine `azure`: root URL that replaces both regional hosts (`https://{region}.stt.speech.microsoft.com` and `https://{region}.tts.speech.microsoft.com`), for a sovereign cloud, a proxy or a test; empty: the region's. New."),
    "azure_voice_language": ("zh-CN", "Voice engine `azure`: language of speech recognition (the original's voice/azure/config.json `speech_recognition_language`). New."),
    "azure_voice_name": ("zh-CN-XiaoxiaoNeural", "Voice engine `azure`: neural voice for Chinese text (the original's `speech_synthesis_voice_name`). New."),
    "azure_voice_name_en": ("en-US-JacobNeural", "Voice engine `azure`: neural voice for any other text (the original's `speech_synthesis_en`). New."),
    "xi_api_key": ("", "ElevenLabs API key."),
    "xi_voice_id": ("", "ElevenLabs voice id."),
    "xi_api_base": ("https://api.elevenlabs.io", "Voice engine `elevenlabs`: API root (without `/v1`); another value only for a proxy or a test. New."),
    "xi_model_id": ("eleven_multilingual_v2", "Voice engine `elevenlabs`: text-to-speech model (the one the original used). New."),
    "xi_stt_model_id": ("scribe_v2", "Voice engine `elevenlabs`: speech-to-text model (the original had no ElevenLabs speech to text). New."),
    "google_voice_api_key": ("", "Voice engine `google`: a Google Cloud API key with Speech-to-Text and Text-to-Speech enabled. Required: the free unofficial endpoints the original used (speech_recognition, gTTS) are not supported. New."),
    "google_voice_api_base": ("", "Voice engine `google`: root URL that replaces both `https://speech.googleapis.com` and `https://texttospeech.googleapis.com`, for a proxy or a test; empty: Google's. New."),
    "google_voice_language": ("cmn-Hans-CN", "Voice engine `google`: language of speech recognition (BCP-47, e.g. `cmn-Hans-CN`, `en-US`). New."),
    "translate": ("baidu", "Translator used by plugins."),
    "baidu_translate_app_id": ("", "Baidu translate app id."),
    "baidu_translate_app_key": ("", "Baidu translate key."),
    # --- images
    "image_create_prefix": ([""], "A text starting with one of these asks for an image (prefix removed). `[\"\"]`: never, as in the original's code; its table suggests `[\"画\", \"看\", \"找\"]`."),
    "text_to_image": ("dall-e-2", "Image generation model."),
    "image_create_size": ("256x256", "Generated image size."),
    "dalle3_image_quality": ("standard", "DALL-E 3 quality (`standard` or `hd`)."),
    "dalle3_image_style": ("vivid", "DALL-E 3 style."),
    "azure_openai_dalle_api_base": ("", "Separate Azure resource for DALL-E: API root."),
    "azure_openai_dalle_api_key": ("", "Separate Azure resource for DALL-E: key."),
    "azure_openai_dalle_deployment_id": ("", "Separate Azure resource for DALL-E: deployment."),
    "image_proxy": (False, "LinkAI image proxy."),
    "image_recognition": (False, "Send the user's last image (kept 3 minutes) with the next question."),
    # --- plugins and media
    "plugin_trigger_prefix": ("$", "Prefix of plugin chat commands (keep it different from `#`)."),
    "plugin_install_allow_local": (False, "Let `#installp` take local paths and file:// git URLs (for tests and offline mirrors); off, only https/ssh git URLs and plugins/source.json names are accepted. New."),
    "use_global_plugin_config": (False, "Kept for compatibility; plugins/config.json is always read when present."),
    "download_timeout": (60, "Most seconds one download of an image or file linked from an answer or a message may take in total; at most half the worker_threads download at once, past that (or on failure) the link is sent as text. New."),
    "allowed_internal_hosts": ([], "Hosts (names, addresses or networks such as 10.0.0.0/8) that links in answers and messages may point to although they are internal (loopback, private, link-local); every other internal address is refused. The host of dify_api_base is always allowed. New."),
    "max_media_send_count": (3, "Most media items sent from one reply."),
    "media_send_interval": (1, "Seconds between media items of one reply."),
    # --- channels
    "wework_smart": (True, "WeCom: attach to the logged-in PC client (false starts another instance)."),
    "wework_init_wait": (60, "WeCom: most seconds to wait after login for the client's contacts and rooms to be readable (checked every second; the original always slept 60 s). New."),
    "wework_reply_delay": ("1-2", "WeCom: seconds to wait before handling a message, like a person would: a range \"1-2\" (random), a number, or 0 for none. New (the original fixed 1-2 s)."),
    "wecom_bot_id": ("", "WeCom AI bot (channel wecom_bot): the bot's BotID, from the WeCom admin console (智能机器人 → API 模式). New."),
    "wecom_bot_secret": ("", "WeCom AI bot: the long-connection Secret (not the callback Token). New."),
    "wecom_bot_mode": ("websocket", "WeCom AI bot: `websocket` (the daemon connects out to WeCom; no public URL needed) or `callback` (WeCom POSTs to /wecombot on wecom_bot_port; for companies that switch long connections off). New."),
    "wecom_bot_ws_url": ("wss://openws.work.weixin.qq.com", "WeCom AI bot: the long-connection address (a private deployment shows its own in its admin console). New."),
    "wecom_bot_heartbeat": (30, "WeCom AI bot: seconds between heartbeats on the long connection; two unanswered in a row mean it is dead and it is reconnected. New."),
    "wecom_bot_stream_always": (False, "WeCom AI bot: show every streamed answer growing in its bubble; false: only with dify_stream_reply. New."),
    "wecom_bot_token": ("", "WeCom AI bot, callback mode: the callback Token. New."),
    "wecom_bot_aes_key": ("", "WeCom AI bot, callback mode: the EncodingAESKey (43 characters); it also decrypts the media of callbacks. New."),
    "wecom_bot_host": ("0.0.0.0", "WeCom AI bot, callback mode: address the callback server listens on. New."),
    "wecom_bot_port": (9892, "WeCom AI bot, callback mode: port of the callback server (path /wecombot). New."),
    "wx_ilink_api_base": ("https://ilinkai.weixin.qq.com", "Personal WeChat (channel wx / weixin): root of Tencent's iLink bot API, used for the QR login; after the login the host WeChat names is used (and kept with the login). Another value only for a proxy or a test simulator. New."),
    "wx_ilink_cdn_base": ("https://novac2c.cdn.weixin.qq.com/c2c", "Personal WeChat: root of the iLink CDN that carries pictures, voice, files and videos (AES-128 encrypted). Another value only for a proxy or a test simulator. New."),
    "wx_ilink_poll_timeout": (35, "Personal WeChat: seconds one long poll (new messages, the login QR's status) may wait for WeChat's answer; WeChat holds a poll about 35 s. New."),
    "wx_ilink_retry_delay": (2, "Personal WeChat: seconds before receiving is tried again after a failure (at least 0.5); doubled after each failure in a row, up to 30 s. New."),
    "wx_ilink_login_timeout": (480, "Personal WeChat: seconds a QR login may take (new QR codes are shown as they expire); then a new login is offered 5 minutes later. New."),
    "wx_protocol": ("ilink", "Personal WeChat (channel wx / weixin): `ilink` (Tencent's iLink bot API, the default and the supported way) or `itchat` (the original's legacy web-WeChat protocol: QR login, private chats and groups with @, friend requests, hot_reload). itchat is opt-in only and never a fallback: WeChat blocks web logins for most accounts and since 2025 kicks or restricts accounts that use it; start-up warns about it. New."),
    "itchat_base_url": ("https://login.weixin.qq.com", "Personal WeChat with wx_protocol itchat: root of the web-WeChat login host (the QR, the login poll); every later host comes from WeChat's answer at login. Another value only for a proxy or a test simulator. New."),
    "itchat_poll_timeout": (35, "Personal WeChat with wx_protocol itchat: seconds one synccheck may wait for WeChat's answer (WeChat holds it about 25 s). New."),
    "itchat_retry_delay": (2, "Personal WeChat with wx_protocol itchat: seconds before receiving is tried again after a failure; doubled after each failure in a row, up to 30 s. New."),
    "wx_media_max_bytes": (20 * 1024 * 1024, "Personal WeChat: largest picture, voice, file or video taken in or sent out, in bytes; a larger one is refused and the user told. New."),
    "wcf_host": ("", "WeChatFerry (channel wcf): host of a running WeChatFerry service to connect to; empty starts the service inside PC WeChat on this machine (Windows only). Pictures, voice and files pass by file path, so a service on another machine needs a folder both see under the same path. New."),
    "wcf_port": (10086, "WeChatFerry: the service's command port; received messages come on the next port (wcf_port + 1). New."),
    "wcf_rpc_timeout": (5, "WeChatFerry: seconds the service may take to answer one call; no answer means it is gone, and the daemon exits with code 4 so that a supervisor can start it again. New."),
    "wcf_media_max_bytes": (20 * 1024 * 1024, "WeChatFerry: largest picture, voice or file taken in or sent out, in bytes; a larger one is refused and the user told. New."),
    "wechaty_puppet_service_token": ("", "Channel wxy (personal WeChat through a wechaty puppet service): the puppet service token; sent to the service as the HTTP/2 :authority, and used to find the service through `wechaty_discovery_url` unless `wechaty_puppet_service_endpoint` is set. wxy needs the token or the endpoint (or both), and `pip install -r requirements-wxy.txt`."),
    "wechaty_puppet_service_endpoint": ("", "Channel wxy: `host:port` of the puppet service (plaintext HTTP/2, as the service must run with WECHATY_PUPPET_SERVICE_NO_TLS_INSECURE_SERVER=true); when set it wins over discovery by token. New."),
    "wechaty_discovery_url": ("https://api.chatie.io/v0/hosties", "Channel wxy: the URL that finds the puppet service of a token (`GET <url>/<token>` answers `{ip, port}`), used when no endpoint is set. Another value only for a self-hosted discovery service or a test simulator. New."),
    "wechaty_retry_delay": (2.0, "Channel wxy: seconds before connecting again after the event stream was lost or a connection failed; doubled after each failure in a row, up to 60 s. New."),
    "wechaty_heartbeat_interval": (60.0, "Channel wxy: seconds without any event from the puppet service before it is pinged (Ding); twice that without anything and the connection counts as lost and is made again. 0 turns the check off. New."),
    "wechaty_media_max_bytes": (20 * 1024 * 1024, "Channel wxy: largest picture or voice taken in, or picture or file sent out, in bytes; a larger one is refused and the user told. New."),
    "wechatmp_token": ("", "Official Account callback token."),
    "wechatmp_port": (8080, "Official Account callback port: WeChat POSTs to http://<host>:<port>/wx (listening on 0.0.0.0)."),
    "wechatmp_app_id": ("", "Official Account app id."),
    "wechatmp_app_secret": ("", "Official Account app secret."),
    "wechatmp_aes_key": ("", "Official Account EncodingAESKey (43 characters) for safe mode (安全模式); empty: plaintext mode."),
    "wechatmp_api_base": ("https://api.weixin.qq.com", "Official Account: root of the server API (`/cgi-bin/...` is added); another value only for a proxy or a test simulator. New."),
    "wechatcom_corp_id": ("", "WeCom corp id."),
    "wechatcomapp_token": ("", "WeCom app callback token."),
    "wechatcomapp_port": (9898, "WeCom app callback port (also used by wechatcom_service, on path /wxcomapp)."),
    "wechatcomapp_secret": ("", "WeCom app secret."),
    "wechatcomapp_agent_id": ("", "WeCom app agent id."),
    "wechatcomapp_aes_key": ("", "WeCom app EncodingAESKey."),
    "wechatcom_api_base": ("https://qyapi.weixin.qq.com", "WeCom app and customer service: root of the server API (`/cgi-bin/...` is added); another value only for a proxy or a test simulator. New."),
    "feishu_port": (9891, "Feishu event callback port (path `/`; feishu_event_mode http)."),
    "feishu_app_id": ("", "Feishu app id."),
    "feishu_app_secret": ("", "Feishu app secret."),
    "feishu_token": ("", "Feishu: the Verification Token of the app's event subscription; required with feishu_event_mode http, where every request must carry it."),
    "feishu_bot_name": ("", "Feishu bot name a group @mention must match when the bot's open id cannot be read from the API (it is, at start)."),
    "feishu_encrypt_key": ("", "Feishu: the app's Encrypt Key (Events and callbacks page). When set, events must be encrypted and signed (X-Lark-Signature), and others are refused. New."),
    "feishu_event_mode": ("http", "Feishu: `http` (Feishu POSTs events to `/` on feishu_port) or `websocket` (the daemon connects out over Feishu's long connection; no public URL needed). New."),
    "feishu_api_base": ("https://open.feishu.cn", "Feishu: root of the OpenAPI and of the long connection's endpoint (`https://open.larksuite.com` for Lark); another value only for a proxy or a test simulator. New."),
    "dingtalk_client_id": ("", "DingTalk client id."),
    "dingtalk_client_secret": ("", "DingTalk client secret."),
    "dingtalk_card_enabled": (False, "DingTalk: answer with AI cards; a streamed Dify answer grows in its card (updated at most every dingtalk_card_interval seconds) and the card is finished with the whole text."),
    "dingtalk_card_template_id": ("382e4302-551d-4880-bf29-a30acfab2e71.schema", "DingTalk: the AI card template (its content variable is `msgContent`); the default is the AI markdown card of dingtalk-stream, which the original used. New."),
    "dingtalk_card_interval": (0.5, "DingTalk: at least this many seconds between two streaming updates of one AI card (DingTalk throttles card updates). New."),
    "dingtalk_api_base": ("https://api.dingtalk.com", "DingTalk: root of the OpenAPI (token, Stream gateway, robot messages, files, cards); another value only for a proxy or a test simulator. New."),
    "dingtalk_oapi_base": ("https://oapi.dingtalk.com", "DingTalk: root of the older API used for media uploads (`/media/upload`); another value only for a proxy or a test simulator. New."),
    "dingtalk_health_port": (0, "DingTalk: port of an HTTP server answering GET /healthz with the Stream connection's state (0: none; Stream mode needs no port otherwise). New."),
    "dingtalk_health_host": ("127.0.0.1", "DingTalk: address the /healthz server of dingtalk_health_port listens on (127.0.0.1: this machine only; 0.0.0.0 for a probe from elsewhere). New."),
    "dingtalk_reconnect_max": (60.0, "DingTalk: longest wait in seconds between two attempts to reconnect the Stream connection (the wait starts at 1 s and doubles, with jitter). New."),
    "gewechat_base_url": ("", "gewechat server URL (channel not ported)."),
    "gewechat_download_url": ("", "gewechat download URL (channel not ported)."),
    "gewechat_token": ("", "gewechat token (channel not ported)."),
    "gewechat_app_id": ("", "gewechat app id (channel not ported)."),
    "gewechat_callback_url": ("", "gewechat callback URL (channel not ported)."),
    # --- LinkAI
    "use_linkai": (False, "Use LinkAI: with linkai_api_key the LinkAI bot answers and the LinkAI client takes settings and messages pushed from the LinkAI console (README, LinkAI)."),
    "linkai_api_key": ("", "LinkAI API key."),
    "linkai_app_code": ("", "LinkAI app code."),
    "linkai_api_base": ("https://api.link-ai.tech", "LinkAI API root."),
    "linkai_client_host": ("client.link-ai.tech", "LinkAI client (started with `use_linkai` and `linkai_api_key`): host of LinkAI's client service, which pushes settings and messages from the LinkAI console. Only a LinkAI domain (link-ai.tech, .chat, .pro, .cloud) or a loopback address (a local proxy, a test server): the API key is sent there. New."),
    "linkai_client_port": (7071, "LinkAI client: TCP port of linkai_client_host. New."),
    "linkai_client_reconnect_max": (60.0, "LinkAI client: longest wait in seconds between two attempts to reconnect (the wait starts at 1 s and doubles, with jitter). New."),
}

# Keys whose values the original's users write either way (ids as numbers or strings).
_NUMBER = (int, float)
_EXTRA_TYPES: dict[str, tuple[type, ...]] = {
    "channel_type": (str, list),  # a list: several channels side by side
    "wechatcomapp_agent_id": (str, int),
    "baidu_app_id": (str, int),
    "baidu_dev_pid": (int, str),
    "baidu_translate_app_id": (str, int),
    "xunfei_app_id": (str, int),
    "tencent_voice_type": (str, int),
    "qwen_app_id": (str, int),
    "dingtalk_client_id": (str, int),
    "coze_return_show_img": (str, bool),
    "coze_bot_id": (str, int),
    "wework_reply_delay": (str, int, float),
    "Minimax_group_id": (str, int),
}

# Positive-integer settings the pipeline relies on.
_AT_LEAST_ONE = ("wecom_bot_heartbeat", "worker_threads", "concurrency_in_session", "session_queue_size", "http_max_connections",
                 "max_pending_messages", "max_pending_chars", "dify_answer_timeout", "download_timeout",
                 "wx_ilink_login_timeout", "wx_media_max_bytes", "wcf_port", "wcf_media_max_bytes", "wechaty_media_max_bytes")

# Settings with a smallest sensible value.
_MINIMUM = {"answer_max_chars": 1000, "tmp_max_age": 60, "dedup_ttl": 60, "web_media_user_max_bytes": 1024 * 1024,
            "web_media_max_bytes": 1024 * 1024, "dingtalk_reconnect_max": 0.1, "linkai_client_reconnect_max": 0.1}

_NOT_NEGATIVE = ("wcf_rpc_timeout", "wechaty_retry_delay", "wechaty_heartbeat_interval", "wx_ilink_poll_timeout", "wx_ilink_retry_delay", "itchat_poll_timeout", "itchat_retry_delay", "wework_init_wait", "dify_max_retries", "dify_connect_timeout",
                 "dify_read_timeout", "shutdown_timeout", "dingtalk_card_interval", "dingtalk_health_port")

_DELAY_RANGE = re.compile(r"^\s*\d+(\.\d+)?\s*(-\s*\d+(\.\d+)?\s*)?$")

# Settings that take one of a few words.
CHOICES: dict[str, tuple[str, ...]] = {
    "dify_app_type": ("chatbot", "chatflow", "agent", "workflow", "completion"),
    "dify_response_mode": ("streaming", "blocking"),
    "state_store": ("sqlite", "memory", "redis"),
    "wecom_bot_mode": ("websocket", "callback"),
    "feishu_event_mode": ("http", "websocket"),
    "wx_protocol": ("ilink", "itchat"),
}

_LOWER_TO_KEY = {k.lower(): k for k in SETTINGS}
_TYPE_NAMES = {str: "a string", bool: "true or false", int: "a whole number", float: "a number", list: "a list", dict: "an object"}


def expected_types(key: str) -> tuple[type, ...]:
    if key in _EXTRA_TYPES:
        return _EXTRA_TYPES[key]
    default = SETTINGS[key][0]
    if isinstance(default, bool):
        return (bool,)
    if isinstance(default, (int, float)):
        return _NUMBER if isinstance(default, float) or key in ("top_p", "frequency_penalty", "presence_penalty", "request_timeout", "timeout", "media_send_interval", "shutdown_timeout", "expires_in_seconds", "tmp_max_age", "dify_connect_timeout", "dify_read_timeout", "dify_answer_timeout", "download_timeout", "wework_init_wait", "wx_ilink_poll_timeout", "wx_ilink_retry_delay", "wx_ilink_login_timeout", "wcf_rpc_timeout", "itchat_poll_timeout", "itchat_retry_delay") else (int,)
    return (type(default),)


def _describe(types: tuple[type, ...]) -> str:
    if types == _NUMBER:
        return "a number"
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def check_value(key: str, value: Any, source: str = "") -> None:
    """Raise ConfigError when `value` cannot be the value of `key`.

    `source` says where a value that is not from the settings file came from
    ("environment variable DEBUG", ".env line 3"); the message then names it.
    """
    setting = f"setting '{key}'" + (f" from {source}" if source else "")
    types = expected_types(key)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if ok and isinstance(value, list):
        ok = all(isinstance(item, str) for item in value)
        if not ok:
            raise ConfigError(f"{setting} must be a list of strings, got {shown(value)}")
    if not ok:
        raise ConfigError(
            f"{setting} must be {_describe(types)}, got {type(value).__name__} {shown(value, 60)}"
        )
    if key in _AT_LEAST_ONE and value < 1:
        raise ConfigError(f"{setting} must be at least 1, got {value}")
    if key == "channel_type":
        for name in (value.split(",") if isinstance(value, str) else value):
            if name.strip() in const.GONE_CHANNELS:
                raise ConfigError(f"{setting}: {const.GONE_CHANNELS[name.strip()]}")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{setting} must be one of {', '.join(CHOICES[key])}, got {shown(value)}")
    if key == "wework_reply_delay" and isinstance(value, str) and not _DELAY_RANGE.match(value):
        raise ConfigError(f"{setting} must be seconds like 0, 1.5 or a range \"1-2\", got {shown(value)}")
    if key in _MINIMUM and value < _MINIMUM[key]:
        raise ConfigError(f"{setting} must be at least {_MINIMUM[key]}, got {value}")
    if key in _NOT_NEGATIVE and value < 0:
        raise ConfigError(f"{setting} must not be negative, got {value}")
    if key == "linkai_client_port" and not 1 <= value <= 65535:
        raise ConfigError(f"{setting} must be a TCP port (1-65535), got {value}")
    if key == "linkai_client_host" and not is_linkai_client_host(value):
        raise ConfigError(f"{setting} must be a LinkAI host (e.g. client.link-ai.tech) or a loopback address "
                          f"such as 127.0.0.1, got {shown(value, 60)}: the LinkAI API key is sent to it")
    if key == "redis_url":
        from common.store.redis_url import check_redis_url

        problem = check_redis_url(value)
        if problem:
            raise ConfigError(f"{setting} must be a Redis URL such as redis://127.0.0.1:6379/0 "
                              f"(rediss:// for TLS, unix:///path.sock): {problem}")
    if key == "redis_key_prefix" and (not value or value != value.strip()):
        raise ConfigError(f"{setting} must be a non-empty text without spaces at its ends, got {shown(value)}")
    if key == "allowed_internal_hosts":
        for item in value:
            if not _is_host_entry(item):
                raise ConfigError(f"{setting} must list host names, addresses or networks such as "
                                  f"10.0.0.0/8 (no scheme, port or path), got {json.dumps(item, ensure_ascii=False)[:60]}")


# The domains the linkai SDK itself accepts (its check_host), and loopback for a local proxy or a test server.
_LINKAI_DOMAIN = re.compile(r"^(.*\.)?(link-ai\.tech|link-ai\.chat|link-ai\.pro|link-ai\.cloud)$", re.IGNORECASE)


def is_linkai_client_host(host: str) -> bool:
    import ipaddress

    if _LINKAI_DOMAIN.match(host) or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_HOST_NAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$")


def _is_host_entry(item: str) -> bool:
    """A name, an IPv4/IPv6 address or a network: what common.fetch compares a link's host with.
    A URL or a host:port would silently match nothing."""
    import ipaddress

    item = item.strip()
    try:
        ipaddress.ip_network(item.strip("[]"), strict=False)
        return True
    except ValueError:
        return bool(_HOST_NAME.match(item))


def unknown_key_error(key: str, source: str = "", no_match_hint: str = "") -> ConfigError:
    """`no_match_hint` is said when no setting's name is close to `key`."""
    close = difflib.get_close_matches(key.lower(), list(_LOWER_TO_KEY), n=1, cutoff=0.6)
    hint = f" (did you mean '{_LOWER_TO_KEY[close[0]]}'?)" if close else (f": {no_match_hint}" if no_match_hint else "")
    where = f" in {source}" if source else ""
    return ConfigError(f"unknown setting {_key_text(key)}{where}{hint}")


def _key_text(key: Any) -> str:
    """A key as an error message shows it: 'key', or, for one that is long or not plain
    printable text, its JSON form cut short (a message stays one short line)."""
    if isinstance(key, str) and len(key) <= 100 and key.isprintable():
        return f"'{key}'"
    return shown(key, 100)


# ----------------------------------------------------------- hostile settings files
#
# A settings file (or .env, or environment) may be broken or hostile. Whatever it holds,
# start-up ends in one line naming the problem (exit 2), never in a traceback, and
# nothing is logged at length.

MAX_CONFIG_BYTES = 1024 * 1024  # far more than any real config.json; a bigger file is refused
MAX_CONFIG_DEPTH = 32  # settings are at most a list in an object; comments may nest a little
LOGGED_VALUE_CHARS = 200  # what a log line or an error shows of one value
_LARGEST_NUMBER = 2**63 - 1  # no setting needs more; bigger ones are typos or attacks
# Line breaks json.dumps leaves as they are (it escapes the ASCII ones).
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def shown(value: Any, limit: int = LOGGED_VALUE_CHARS) -> str:
    """`value` as one line of text of about `limit` characters at most (JSON form; a
    longer one is cut, saying how long it was), safe to log and print."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        text = f"<{type(value).__name__}>"
    # Lone surrogates cannot be written as UTF-8: show them escaped.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8").translate(_LINE_BREAKS)
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text)} characters)"
    return text


def read_settings_text(path: str) -> str:
    """The text of a settings file: at most MAX_CONFIG_BYTES, UTF-8 (a BOM is allowed)."""
    name = os.path.basename(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{name} is {size} bytes; a settings file may hold at most {MAX_CONFIG_BYTES} bytes")
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read {name}: {e.strerror or e}") from None
    if len(raw) > MAX_CONFIG_BYTES:  # it grew meanwhile
        raise ConfigError(f"{name} holds more than {MAX_CONFIG_BYTES} bytes; a settings file may hold at most that")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{name} is not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); save it as UTF-8"
        ) from None


def _yaml_loader():
    import yaml

    class SettingsLoader(yaml.SafeLoader):
        """yaml.safe_load's loader, refusing aliases and deep nesting. An alias repeats a
        value anywhere; nested aliases multiply it ("billion laughs": a few hundred bytes
        that expand to gigabytes). Settings never need one."""

        def __init__(self, stream):
            super().__init__(stream)
            self._depth = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise ConfigError(
                    f"{self.settings_name} uses a YAML alias (*{shown(event.anchor, 40)[1:-1]}) at line "
                    f"{event.start_mark.line + 1}; aliases are not accepted in settings, write the value out"
                )
            self._depth += 1
            try:
                if self._depth > MAX_CONFIG_DEPTH:
                    mark = self.peek_event().start_mark
                    raise ConfigError(f"{self.settings_name} is nested deeper than {MAX_CONFIG_DEPTH} levels (line {mark.line + 1})")
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    return SettingsLoader


def _parse_yaml(text: str, name: str) -> Any:
    import yaml

    loader = _yaml_loader()(text)
    loader.settings_name = name
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        if isinstance(e, yaml.constructor.ConstructorError):  # !!python/object and other tags
            raise ConfigError(f"{name} uses a YAML tag settings cannot have{where} ({shown(e.problem, 120)[1:-1]})") from None
        raise ConfigError(f"{name} is not valid YAML{where}") from None
    except ValueError as e:  # an integer of thousands of digits
        raise ConfigError(f"{name} is not valid YAML: {_first_sentence(e)}") from None
    finally:
        loader.dispose()


def _parse_json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        # Some of json's messages end in " at" already ("Invalid control character at").
        raise ConfigError(f"{name} is not valid JSON: {e.msg.removesuffix(' at')} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise ConfigError(f"{name} is nested deeper than {MAX_CONFIG_DEPTH} levels") from None
    except ValueError as e:  # an integer of thousands of digits
        raise ConfigError(f"{name} is not valid JSON: {_first_sentence(e)}") from None


def _first_sentence(error: BaseException) -> str:
    return shown(str(error).split(";")[0], 120)[1:-1]


def check_plain(value: Any, what: str) -> None:
    """Refuse what no setting can hold and what would break logging or the program later:
    nesting deeper than MAX_CONFIG_DEPTH, keys that are not text, text with lone
    surrogates (not encodable, so not even loggable), NaN, infinities and huge numbers.
    `what` names the value in the message ("setting 'model' from .env line 3")."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{what} is nested deeper than {MAX_CONFIG_DEPTH} levels")
        if isinstance(item, str):
            _check_text(item, what)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ConfigError(f"{what} holds {item}, which is not a number a setting can take")
        elif isinstance(item, int):
            if abs(item) > _LARGEST_NUMBER:
                raise ConfigError(f"{what} holds a number of {len(str(abs(item)))} digits, too large for any setting")
        elif isinstance(item, dict):
            for key, inner in item.items():
                if not isinstance(key, str):
                    raise ConfigError(f"{what}: keys must be text, got {type(key).__name__} {shown(key, 60)}")
                _check_text(key, what)
                stack.append((inner, depth + 1))
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend((inner, depth + 1) for inner in item)


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ConfigError(
            f"{what} holds a lone surrogate ({text[e.start]!r} at character {e.start}), which is not text; "
            f"write the character itself, not half of it"
        ) from None


def is_comment_key(key: str) -> bool:
    # A key starting with "_" is a comment in config.json (as in upstream's newer versions).
    return isinstance(key, str) and key.startswith("_")


def drag_sensitive(config: Any) -> Any:
    """A copy of `config` (a dict or a JSON string) with secrets masked, for logging."""
    if isinstance(config, str):
        try:
            parsed = json.loads(config)
        except ValueError:
            return "<config text that is not JSON>"
        return json.dumps(drag_sensitive(parsed), indent=4, ensure_ascii=False)
    if isinstance(config, dict):
        masked = {}
        for key, value in config.items():
            if isinstance(value, dict):
                masked[key] = drag_sensitive(value)
            else:
                masked[key] = copy.deepcopy(mask_value(key, value))
        return masked
    return config


# Every key conf() accepts, with the value the original's table shows for it (our
# default for the keys the original lacks). Plugins import it; as in the original,
# a plugin may add its own keys here, and conf() then accepts them.
available_setting: dict[str, Any] = {
    key: copy.deepcopy(ORIGINAL_TABLE[key] if key in ORIGINAL_TABLE else SETTINGS[key][0]) for key in SETTINGS
}
for _key, _value in ORIGINAL_TABLE.items():
    available_setting.setdefault(_key, copy.deepcopy(_value))


def is_known_key(key: Any) -> bool:
    """A key conf() accepts: one of ours, or one in available_setting (plugins may add)."""
    return key in SETTINGS or key in available_setting


class Config(dict):
    """The live settings. Holds only the values that were set; reads of a known key
    that was not set return the code default. Unknown keys raise, as in the original."""

    def __init__(self, d: dict | None = None):
        super().__init__()
        for k, v in (d or {}).items():
            self[k] = v
        # The original exposes this attribute; here it is a live view kept durable by
        # common.user_data (assigned by the UserDataBook).
        from common.user_data import UserDataBook

        self.user_data_book = UserDataBook()

    # -- dict interface with the original's key check
    def __getitem__(self, key: str) -> Any:
        """`conf()[k]`, as in the original: the set value; KeyError when k is known but
        not set (defaults come only through get()); an error naming k when unknown."""
        if not is_known_key(key):
            raise unknown_key_error(key)
        return dict.__getitem__(self, key)

    def __setitem__(self, key: str, value: Any) -> None:
        if not is_known_key(key):
            raise unknown_key_error(key)
        dict.__setitem__(self, key, value)

    def get(self, key: str, default: Any = _UNSET) -> Any:
        """`conf().get(k, d)`: the set value, else `d` when given (the original's
        call-site default), else the code default of SETTINGS (None for a key a
        plugin added to available_setting, as the original gives)."""
        if not is_known_key(key):
            raise unknown_key_error(key)
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        if default is not _UNSET:
            return default
        if key not in SETTINGS:
            return None
        value = SETTINGS[key][0]
        # A list or dict default is copied so a caller cannot change the table; others are immutable.
        return copy.deepcopy(value) if isinstance(value, (list, dict)) else value

    def set(self, key: str, value: Any) -> None:
        self[key] = value

    # -- user data (plugins mutate the returned dict in place)
    @property
    def user_datas(self) -> dict:
        """Every user's data, {user: dict}. Plugins read and change it directly, as in the
        original; adding, replacing, removing a user or changing a user's dict is saved
        to the state store like a change through get_user_data."""
        return self.user_data_book.data

    @user_datas.setter
    def user_datas(self, value: dict) -> None:
        # The original's load_user_datas assigns the attribute; plugins may too.
        self.user_data_book.replace_all(value)

    @property
    def state_store(self):
        """The durable StateStore the daemon opened (None before start-up), for
        per-session bot state, dedup keys and pending replies."""
        return self.user_data_book.store

    def get_user_data(self, user: Any) -> dict:
        return self.user_data_book.get(user)

    def load_user_datas(self) -> None:
        self.user_data_book.load()

    def save_user_datas(self) -> None:
        self.user_data_book.flush(everyone=True)


config = Config()
_load_lock = threading.RLock()
_config_path: str | None = None  # --config, read again by every reload
_chosen_path: str | None = None  # the file actually read last


def get_root() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def read_file(path: str) -> str:
    with open(path, mode="r", encoding="utf-8-sig") as f:
        return f.read()


def find_config_file(explicit: str | None = None) -> str:
    """The file settings come from: --config PATH, else config.json/.yaml/.yml in the
    current folder then the project folder, else config-template.json."""
    if explicit:
        if not os.path.isfile(explicit):
            raise ConfigError(f"config file '{explicit}' does not exist")
        return explicit
    folders = [os.getcwd(), get_root()]
    for name in ("config.json", "config.yaml", "config.yml", "config-template.json"):
        for folder in folders:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                if name == "config-template.json":
                    logger.info("[INIT] config.json not found, using config-template.json")
                return path
    raise ConfigError("no config.json found (copy config-template.json to config.json and edit it)")


def parse_config_file(path: str) -> dict:
    name = os.path.basename(path)
    text = read_settings_text(path)
    if path.endswith((".yaml", ".yml")):
        data = _parse_yaml(text, name)
        data = {} if data is None else data
    else:
        data = _parse_json(text, name)
    if not isinstance(data, dict):
        raise ConfigError(f"{name} must hold an object of settings, not {type(data).__name__}")
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"{name}: setting names must be text, got {type(key).__name__} {shown(key, 60)}")
        check_plain(key, f"{name}: a setting name")
        check_plain(value, f"setting {_key_text(key)}")
    return data


def parse_env_value(key: str, raw: str) -> Any:
    """An environment value: JSON when it is valid JSON, else the raw string (never eval).

    String settings keep the raw text (an agent id 1000002 stays "1000002"), and
    boolean settings also take true/false/yes/no/on/off/1/0 in any case.
    """
    types = expected_types(key)
    if bool in types and raw.strip().lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        return raw.strip().lower() in ("true", "yes", "on", "1")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return raw
    if types[0] is str and not isinstance(value, str):
        return raw
    return value


def _log_override(key: str, raw: str, source: str) -> None:
    logger.info(f"[INIT] setting {key} from {source}: {shown(mask_value(key, raw))}")


def _environment_overrides(environ: dict[str, str]) -> tuple[dict, dict[str, str]]:
    """Settings from environment variables, and where each came from. A variable that is
    not named like a setting belongs to someone else and is left alone."""
    values, sources = {}, {}
    for name, raw in environ.items():
        key = _LOWER_TO_KEY.get(str(name).lower())
        if key is None or raw is None:
            continue
        source = f"environment variable {name}"
        _log_override(key, raw, source)
        values[key] = parse_env_value(key, raw)
        sources[key] = source
    return values, sources


def _dotenv_overrides(path: str) -> tuple[dict, dict[str, str]]:
    """Settings from a .env file, and the line each came from. The file is written for
    this program, so a line that is not a setting is refused like a key in config.json."""
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    label = os.path.basename(path)
    read_settings_text(path)  # size and encoding, refused in one line like the config file's
    lines: dict[str, int] = {}
    with open(path, encoding="utf-8-sig") as f:
        for binding in parse_stream(f):
            text = binding.original.string
            # A binding's text starts with the blank lines before it.
            line = binding.original.line + text[: len(text) - len(text.lstrip())].count("\n")
            if binding.error:
                raise ConfigError(f"{label} line {line} is not a KEY=value line")
            if binding.key is not None:
                lines[binding.key] = line
    values, sources = {}, {}
    # dotenv_values also expands ${VARIABLE} references, as .env users expect.
    for name, raw in dotenv_values(path, encoding="utf-8-sig").items():
        source = f"{label} line {lines.get(name, '?')}"
        key = _LOWER_TO_KEY.get(name.lower())
        if key is None:
            # No close match: most likely a .env written for another tool (docker compose, Dify).
            raise unknown_key_error(name, source, "this program reads ./.env as settings; "
                                                  "move other tools' variables to another file")
        if raw is None:
            raise ConfigError(f"{source}: '{name}' has no value (write {name}=value)")
        _log_override(key, raw, source)
        values[key] = parse_env_value(key, raw)
        sources[key] = source
    return values, sources


def build_config(path: str, environ: dict[str, str] | None = None, dotenv_path: str | None = None) -> dict:
    """Read and validate every source; return the validated settings (no side effects)."""
    data = {k: v for k, v in parse_config_file(path).items() if not is_comment_key(k)}
    for key in data:
        if key not in SETTINGS:
            raise unknown_key_error(key)
    sources: dict[str, str] = {}
    dotenv_file = dotenv_path if dotenv_path is not None else os.path.join(os.getcwd(), ".env")
    if os.path.isfile(dotenv_file):
        values, where = _dotenv_overrides(dotenv_file)
        data.update(values)
        sources.update(where)
    values, where = _environment_overrides(dict(os.environ if environ is None else environ))
    data.update(values)
    sources.update(where)
    for key, value in data.items():
        if key in sources:  # the file's values were checked as it was read
            check_plain(value, f"setting '{key}' from {sources[key]}")
        check_value(key, value, sources.get(key, ""))
    return data


# Settings the command line forces (--cmd: the terminal channel; --sandbox: the local Dify).
# They win over every file and environment variable, at start-up and at every reload.
_command_line_settings: dict[str, Any] = {}


def set_command_line_settings(values: dict[str, Any]) -> None:
    """Force `values` now and after every reload (#reconf); called by app.py."""
    with _load_lock:
        for key, value in values.items():
            if key not in SETTINGS:
                raise unknown_key_error(key)
            check_value(key, value, "the command line")
        _command_line_settings.clear()
        _command_line_settings.update(values)
        for key, value in values.items():
            dict.__setitem__(config, key, value)


def load_config(path: str | None = None) -> Config:
    """(Re)load the settings into the one live Config object.

    A `path` given once (--config) is read again by every later reload; without one
    the usual places are searched each time, so a config.json created after start-up
    is found. Settings forced on the command line are applied again.
    Raises ConfigError on a bad file or value; the live config is left unchanged then.
    """
    global _config_path, _chosen_path
    with _load_lock:
        explicit = path or _config_path
        chosen = find_config_file(explicit)
        data = build_config(chosen)
        data.update(_command_line_settings)
        dict.clear(config)
        for k, v in data.items():
            dict.__setitem__(config, k, v)
        _config_path = explicit
        _chosen_path = chosen
        set_debug(bool(config.get("debug")))
        logger.info(f"[INIT] load config from {chosen}: {settings_for_log(dict(config))}")
        return config


def apply_setting(key: str, value: Any, source: str) -> None:
    """Change one setting of the live config at run time (LinkAI pushes settings), checked
    as a value of config.json is. Raises ConfigError, and the live value stays as it was,
    when the key is unknown, the value is wrong or the command line forces the setting.
    Like a change by #set commands, it lasts until the next reload (#reconf) or restart."""
    if not isinstance(key, str) or key not in SETTINGS:
        raise unknown_key_error(key, source)
    what = f"setting '{key}' from {source}"
    check_plain(value, what)
    check_value(key, value, source)
    with _load_lock:
        if key in _command_line_settings:
            raise ConfigError(f"{what} not applied: the command line sets it")
        dict.__setitem__(config, key, value)
        if key == "debug":
            set_debug(bool(value))


def settings_for_log(settings: dict) -> str:
    """The settings as one JSON line, secrets masked and each long value cut short."""
    masked = drag_sensitive(settings)
    clipped = {}
    for key, value in masked.items():
        text = json.dumps(value, ensure_ascii=False, default=str)
        clipped[key] = value if len(text) <= LOGGED_VALUE_CHARS else shown(value)
    return json.dumps(clipped, ensure_ascii=False, default=str)


def config_path() -> str | None:
    """The file the live settings were read from."""
    return _chosen_path


def save_config() -> None:
    """Write the live settings back to config.json (sorted), as the original does."""
    path = _chosen_path if _chosen_path and _chosen_path.endswith(".json") and not _chosen_path.endswith("config-template.json") else os.path.join(os.getcwd(), "config.json")
    try:
        data = {k: dict.__getitem__(config, k) for k in sorted(dict.keys(config))}
        write_json_atomic(path, data)
        logger.info("[Config] Configuration saved.")
    except OSError as e:
        logger.error(f"[Config] Save configuration error: {e}")


def conf() -> Config:
    return config


def get_appdata_dir() -> str:
    data_path = os.path.join(get_root(), conf().get("appdata_dir", ""))
    if not os.path.exists(data_path):
        logger.info("[INIT] data path not exists, create it: {}".format(data_path))
        os.makedirs(data_path, exist_ok=True)
    return data_path


def subscribe_msg() -> str:
    prefixes = conf().get("single_chat_prefix", [""]) or [""]
    msg = conf().get("subscribe_msg", "")
    return msg.replace("{trigger_prefix}", prefixes[0])


# Plugin settings from plugins/config.json and plugins/<name>/config.json, by lower-cased name.
plugin_config: dict[str, Any] = {}


def write_plugin_config(pconf: dict) -> None:
    for k in pconf:
        plugin_config[k.lower()] = pconf[k]


def remove_plugin_config(name: str) -> None:
    plugin_config.pop(name.lower(), None)


def pconf(plugin_name: str) -> dict | None:
    return plugin_config.get(plugin_name) or plugin_config.get(plugin_name.lower())


# Process-wide state the original shares this way (godcmd fills admin_users).
global_config: dict[str, Any] = {"admin_users": []}
