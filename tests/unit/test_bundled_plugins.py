"""The bundled plugins keyword, banwords, hello, finish, role, dungeon and custom_dify_app,
loaded from the repository's plugins folder by the real PluginManager and driven through
the real pipeline (RecordingChannel: rules, queues, plugins, Bridge, decoration, send).

Plugin settings live in tmp (plugins.json and the shared config.json of the configured
folder); the bots are a recording bot, the Dify simulator or the OpenAI simulator."""
from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import config
from bot.bot import Bot
from bridge.bridge import Bridge
from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from plugins import PluginManager
from sandbox.dify_server import DifyServer
from tests.fakes.dify_fixtures import dify, dify_settings, unused_port  # noqa: F401 - fixtures
from tests.fakes.openai_server import OpenAIServer
from tests.fakes.recording_channel import RecordingChannel, make_msg

GROUP = ("g-1", "测试群")


# ----------------------------------------------------------------------------- helpers


class CaptureBot(Bot):
    """Records (context type, query, session id) and answers "bot: <query>", or the
    scripted answer of ``answers``. Has no session manager."""

    calls: list[tuple[ContextType, str, Any]] = []
    answers: dict[str, str] = {}
    lock = threading.Lock()

    def reply(self, query: str, context=None) -> Reply:
        with CaptureBot.lock:
            CaptureBot.calls.append((context.type, query, context.get("session_id")))
        return Reply(ReplyType.TEXT, CaptureBot.answers.get(query, f"bot: {query}"))


CAPTURE_BOT = f"{__name__}:CaptureBot"



@pytest.fixture
def load(tmp_path: Path, settings):
    """load(plugin_settings) -> a RecordingChannel with the bundled plugins loaded, the
    shared plugin settings written to tmp/config.json."""
    settings["single_chat_prefix"] = [""]
    settings["group_name_white_list"] = ["ALL_GROUP"]
    settings["group_chat_prefix"] = ["@bot"]
    settings["plugin_trigger_prefix"] = "$"
    settings["group_welcome_msg"] = ""
    settings["group_exit_msg"] = ""
    settings["group_chat_exit_group"] = False
    settings["image_create_prefix"] = ["画"]
    # Fixtures listed after `load` (dify, openai) choose their own bot.
    settings["bot_type"] = CAPTURE_BOT
    CaptureBot.calls.clear()
    CaptureBot.answers.clear()
    channels: list[RecordingChannel] = []

    def _load(plugin_settings: dict | None = None) -> RecordingChannel:
        PluginManager._reset_for_tests()
        config.plugin_config.clear()
        folder = tmp_path / "plugin_settings"
        folder.mkdir(exist_ok=True)
        # Only the plugins under test: godcmd (written elsewhere) answers "#" commands.
        # Role and Dungeon are off by default (as in the original); their tests need them on.
        entries = {
            "Godcmd": {"enabled": False, "priority": 999},
            "Role": {"enabled": True, "priority": 0},
            "Dungeon": {"enabled": True, "priority": 0},
        }
        (folder / "plugins.json").write_text(json.dumps({"plugins": entries}), encoding="utf-8")
        (folder / "config.json").write_text(json.dumps(plugin_settings or {}, ensure_ascii=False), encoding="utf-8")
        manager = PluginManager()
        manager.configure(str(folder), include_bundled=True)
        manager.load_plugins()
        Bridge().reset_bot()
        channel = RecordingChannel()
        channels.append(channel)
        return channel

    yield _load
    for channel in channels:
        channel.stop()
    PluginManager._reset_for_tests()
    config.plugin_config.clear()
    Bridge().reset_bot()


def ask(channel: RecordingChannel, content: str, **kwargs) -> list[tuple[Any, ReplyType, Any]]:
    """Send one message through the pipeline; return what was sent back for it."""
    before = len(channel.sent)
    channel.receive(make_msg(content, **kwargs))
    assert channel.wait_idle(10)
    return channel.sent[before:]


def texts(sent) -> list[Any]:
    return [content for _, _, content in sent]


def instance(name: str):
    return PluginManager().instances.get(name.upper())


# ----------------------------------------------------------------------------- loading


def test_bundled_plugins_load_with_their_priorities(load):
    load()
    classes = PluginManager().plugins
    expected = {"KEYWORD": 900, "BANWORDS": 100, "ROLE": 0, "DUNGEON": 0, "CUSTOMDIFYAPP": 0, "HELLO": -1, "FINISH": -999}
    for name, priority in expected.items():
        assert classes[name].priority == priority, name
    assert classes["CUSTOMDIFYAPP"].hidden
    for name in expected:
        assert isinstance(instance(name).get_help_text(), str)
        assert isinstance(instance(name).get_help_text(verbose=True), str)


def test_unconfigured_plugins_stay_off_with_a_log_line(load, logs):
    load()
    # No word list, no keywords, no Dify apps: loaded, but not listening.
    for name in ("BANWORDS", "CUSTOMDIFYAPP"):
        assert instance(name).handlers == {}, name
    assert "banwords.txt" in logs.text() and "stays off" in logs.text()


@pytest.mark.parametrize(
    "plugin_settings,name,expected_log",
    [
        ({"keyword": {"keyword": "not a mapping"}}, "KEYWORD", "Keyword] settings must look like"),
        ({"keyword": ["x"]}, "KEYWORD", "Keyword] settings must look like"),
        ({"banwords": {"action": "shout"}}, "BANWORDS", "action must be one of"),
        ({"hello": ["x"]}, "HELLO", "Hello] settings must be a JSON object"),
        ({"CustomDifyApp": {"app_name": "x"}}, "CUSTOMDIFYAPP", "must be a list of Dify apps"),
        ({"CustomDifyApp": [{"app_name": "no key"}]}, "CUSTOMDIFYAPP", "api_key is missing"),
    ],
)
def test_bad_settings_keep_a_plugin_off_and_the_daemon_running(load, logs, plugin_settings, name, expected_log):
    channel = load(plugin_settings)
    assert instance(name).handlers == {}
    assert expected_log in logs.text()
    assert texts(ask(channel, "still alive?")) == ["bot: still alive?"]


# ----------------------------------------------------------------------------- keyword


class FileServer:
    """Serves fixed bodies on loopback: {path: bytes}; anything else is 404."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = server.files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> "FileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # downloads go to ./tmp/
    with FileServer({"/docs/manual.pdf": b"%PDF-1.4 manual", "/big.zip": b"z" * (2 * 1024 * 1024)}) as server:
        yield server


def test_keyword_text_list_image_and_video(load):
    channel = load({"keyword": {"keyword": {
        "营业时间": "每天 9:00-18:00",
        "你好": ["甲", "乙", "丙"],
        "logo": "https://example.com/static/Logo.PNG?v=2",
        "宣传片": "https://example.com/media/intro.mp4",
        "网址": "https://example.com/about",
    }}})
    assert ask(channel, "营业时间") == [("alice", ReplyType.TEXT, "每天 9:00-18:00")]
    seen = {texts(ask(channel, "  你好 "))[0] for _ in range(12)}
    assert seen <= {"甲", "乙", "丙"} and len(seen) > 1
    assert ask(channel, "logo") == [("alice", ReplyType.IMAGE_URL, "https://example.com/static/Logo.PNG?v=2")]
    assert ask(channel, "宣传片") == [("alice", ReplyType.VIDEO_URL, "https://example.com/media/intro.mp4")]
    assert ask(channel, "网址") == [("alice", ReplyType.TEXT, "https://example.com/about")]
    assert CaptureBot.calls == []  # BREAK_PASS: the bot was never asked
    # Only whole messages match.
    assert texts(ask(channel, "营业时间是几点")) == ["bot: 营业时间是几点"]


def test_keyword_file_is_downloaded_to_a_unique_tmp_path(load, files, tmp_path):
    channel = load({"keyword": {"keyword": {"说明书": files.url("/docs/manual.pdf")}}})
    [(_, rtype, path)] = ask(channel, "说明书")
    [(_, rtype2, path2)] = ask(channel, "说明书")
    assert rtype == rtype2 == ReplyType.FILE
    assert path != path2 and os.path.basename(path) == os.path.basename(path2) == "manual.pdf"
    assert Path(path).read_bytes() == b"%PDF-1.4 manual"
    assert Path(path).resolve().is_relative_to((tmp_path / "tmp").resolve())


def test_keyword_failed_or_oversized_download_sends_the_link(load, files, tmp_path, logs):
    missing = files.url("/docs/gone.pdf")
    big = files.url("/big.zip")
    refused = f"http://127.0.0.1:{unused_port()}/x.docx"
    channel = load({"keyword": {"keyword": {"a": missing, "b": big, "c": refused}, "max_file_mb": 1}})
    assert ask(channel, "a") == [("alice", ReplyType.TEXT, missing)]
    assert ask(channel, "b") == [("alice", ReplyType.TEXT, big)]
    assert ask(channel, "c") == [("alice", ReplyType.TEXT, refused)]
    assert "HTTP 404" in logs.text() and "byte limit" in logs.text()
    leftovers = [p for p in (tmp_path / "tmp").rglob("*") if p.is_file()] if (tmp_path / "tmp").exists() else []
    assert leftovers == []


def test_keyword_download_that_trickles_ends_at_download_timeout(load, files, tmp_path):
    # Issue 11: one byte every 0.3 s passes every per-read timeout; the total deadline stops it.
    with DifyServer() as server:
        server.add_file("/slow.pdf", b"%PDF" + b"x" * 100, "application/pdf", byte_delay=0.3)
        slow = server.host_url + "/slow.pdf"
        channel = load({"keyword": {"keyword": {"s": slow}, "download_timeout": 1}})
        assert ask(channel, "s") == [("alice", ReplyType.TEXT, slow)]
    leftovers = [p for p in (tmp_path / "tmp").rglob("*") if p.is_file()] if (tmp_path / "tmp").exists() else []
    assert leftovers == []


# ----------------------------------------------------------------------------- banwords


@pytest.fixture
def words_file(tmp_path) -> Path:
    path = tmp_path / "words.txt"
    path.write_text("坏词\nBadWord\n\n  spam  \n坏词语\n", encoding="utf-8")
    return path


def banwords_settings(words_file: Path, **kwargs) -> dict:
    return {"banwords": {"words_file": str(words_file), **kwargs}}


def test_banwords_ignore_drops_the_message_silently(load, words_file):
    channel = load(banwords_settings(words_file, action="ignore"))
    assert ask(channel, "这里有个坏词") == []
    assert ask(channel, "画一个坏词") == []  # IMAGE_CREATE too
    assert ask(channel, "this is BADWORD") == []  # case is ignored
    assert CaptureBot.calls == []
    assert texts(ask(channel, "一句正常的话")) == ["bot: 一句正常的话"]


def test_banwords_replace_answers_with_the_masked_text(load, words_file):
    channel = load(banwords_settings(words_file, action="replace"))
    [(_, rtype, text)] = ask(channel, "说坏词语和spam")
    assert rtype == ReplyType.INFO
    assert text.startswith("[INFO]\n") and text.endswith("说***和****")
    assert CaptureBot.calls == []


def test_banwords_filters_the_bots_reply(load, words_file):
    channel = load(banwords_settings(words_file, reply_filter=True, reply_action="ignore"))
    CaptureBot.answers["q"] = "the answer has spam in it"
    assert ask(channel, "q") == []
    assert len(CaptureBot.calls) == 1  # the bot answered; the answer was dropped

    channel = load(banwords_settings(words_file, reply_filter=True, reply_action="replace"))
    CaptureBot.answers["q"] = "the answer has Spam and 坏词 in it"
    assert ask(channel, "q") == [("alice", ReplyType.TEXT, "the answer has **** and ** in it")]
    # Group replies keep their decoration.
    CaptureBot.answers["q"] = "spam"
    assert ask(channel, "@bot q", group=GROUP) == [("g-1", ReplyType.TEXT, "@Alice\n****")]

    channel = load(banwords_settings(words_file, reply_filter=False))
    CaptureBot.answers["q"] = "spam"
    assert texts(ask(channel, "q")) == ["spam"]


def test_banwords_missing_word_list_stays_off(load, tmp_path, logs):
    channel = load(banwords_settings(tmp_path / "nowhere.txt", action="ignore"))
    assert instance("BANWORDS").handlers == {}
    assert "nowhere.txt not found" in logs.text()
    assert texts(ask(channel, "坏词")) == ["bot: 坏词"]


def test_word_matcher_masks_overlapping_words(load):
    load()
    from plugins.banwords.word_matcher import WordMatcher

    matcher = WordMatcher(["he", "she", "hers", "his", ""])
    assert len(matcher) == 4
    assert sorted(matcher.finditer("ushers")) == [(1, 4), (2, 4), (2, 6)]
    assert matcher.mask("ushers!") == "u*****!"
    assert matcher.find_first("a HIS b") == "HIS"
    assert not matcher.contains_any("nothing at all")


# ----------------------------------------------------------------------------- hello


def join(channel, group=GROUP, name="Newbie", ctype=ContextType.JOIN_GROUP):
    return ask(channel, f'"{name}"加入了群聊', group=group, sender="new-id", sender_name=name, ctype=ctype)


def test_hello_fixed_welcome_per_group_then_global(load, settings):
    channel = load({"hello": {"group_welc_fixed_msg": {"测试群": "欢迎 {nickname}，请先看群公告"}}})
    assert join(channel) == [("g-1", ReplyType.TEXT, "@Newbie\n欢迎 Newbie，请先看群公告")]
    settings["group_welcome_msg"] = "欢迎新朋友"
    assert texts(join(channel, group=("g-2", "另一个群"))) == ["@Newbie\n欢迎新朋友"]
    assert CaptureBot.calls == []


def test_hello_generated_welcome_goes_to_the_bot(load):
    channel = load({"hello": {"group_welc_prompt": "请欢迎{nickname}，{不是变量}"}})
    [(receiver, rtype, text)] = join(channel)
    [(ctype, query, session_id)] = CaptureBot.calls
    assert (ctype, query) == (ContextType.TEXT, "请欢迎Newbie，{不是变量}")
    assert session_id == "new-id@@g-1"
    assert (receiver, rtype, text) == ("g-1", ReplyType.TEXT, "@Newbie\nbot: 请欢迎Newbie，{不是变量}")


def test_hello_default_prompts_are_not_swapped(load, settings):
    channel = load()  # built-in defaults
    join(channel)
    welcome = CaptureBot.calls[-1][1]
    assert "欢迎" in welcome and "Newbie" in welcome

    settings["group_chat_exit_group"] = True
    join(channel, ctype=ContextType.EXIT_GROUP)
    exit_prompt = CaptureBot.calls[-1][1]
    assert "离开" in exit_prompt and "Newbie" in exit_prompt and "介绍" not in exit_prompt

    ask(channel, "拍了拍我", group=GROUP, ctype=ContextType.PATPAT)
    pat_prompt = CaptureBot.calls[-1][1]
    assert "介绍" in pat_prompt and "#help" in pat_prompt and "离开" not in pat_prompt


def test_hello_exit_group(load, settings):
    channel = load()
    assert join(channel, ctype=ContextType.EXIT_GROUP) == []  # nothing configured: silence
    assert CaptureBot.calls == []
    settings["group_exit_msg"] = "{nickname} 离开了，有缘再见"
    assert texts(join(channel, ctype=ContextType.EXIT_GROUP)) == ["@Newbie\nNewbie 离开了，有缘再见"]
    settings["group_exit_msg"] = ""
    settings["group_chat_exit_group"] = True
    channel2 = load({"hello": {"group_exit_prompt": "说再见给 {nickname}"}})
    assert texts(join(channel2, ctype=ContextType.EXIT_GROUP)) == ["@Newbie\nbot: 说再见给 Newbie"]


def test_hello_demo_words(load):
    channel = load()
    assert ask(channel, "Hello") == [("alice", ReplyType.TEXT, "Hello, Alice")]
    assert texts(ask(channel, "@bot Hello", group=GROUP)) == ["@Alice\nHello, Alice from 测试群"]
    assert CaptureBot.calls == []
    # "Hi": the plugin's reply is replaced by the bot's answer (BREAK keeps the default logic).
    assert texts(ask(channel, "Hi")) == ["bot: Hi"]
    # "End": an image request for "The World".
    ask(channel, "End")
    assert CaptureBot.calls[-1][:2] == (ContextType.IMAGE_CREATE, "The World")


# ----------------------------------------------------------------------------- finish


def test_finish_answers_unknown_plugin_commands(load, settings):
    channel = load()
    [(_, rtype, text)] = ask(channel, "$nothing here")
    assert rtype == ReplyType.ERROR and text.startswith("[ERROR]\n") and "$nothing" in text and "#help" in text
    [(_, _, text)] = ask(channel, "$不存在的命令")
    assert "没有插件能处理" in text
    assert CaptureBot.calls == []
    assert texts(ask(channel, "a normal question")) == ["bot: a normal question"]
    settings["plugin_trigger_prefix"] = ""  # an empty prefix must not swallow everything
    assert texts(ask(channel, "hello there")) == ["bot: hello there"]


# ----------------------------------------------------------------------------- role


def role_info() -> dict:
    import plugins.role.role as role_module

    with open(os.path.join(os.path.dirname(role_module.__file__), "roles.json"), encoding="utf-8") as f:
        return {r["title"]: r for r in json.load(f)["roles"]}


def dify_chats(server: DifyServer) -> list[dict]:
    return [r["json"] for r in server.requests_to("/v1/chat-messages")]


def test_role_with_dify_sends_the_role_as_input_system_prompt(load, dify):
    channel = load()
    writer = role_info()["写作助理"]
    [(_, rtype, text)] = ask(channel, "$角色 写作助理")
    assert rtype == ReplyType.INFO and writer["descn"] in text
    assert dify_chats(dify) == []  # a command never reaches Dify

    assert texts(ask(channel, "今天天气很好")) == ['echo: 需要修改的文字：\n"今天天气很好"']
    first = dify_chats(dify)[-1]
    assert first["inputs"]["system_prompt"] == writer["descn"]
    assert "conversation_id" not in first
    ask(channel, "第二句")
    second = dify_chats(dify)[-1]
    assert second["inputs"]["system_prompt"] == writer["descn"] and second.get("conversation_id")

    # A new role starts a new Dify conversation with the new prompt (English with $role).
    [(_, _, text)] = ask(channel, "$role 写作")
    assert writer["description"] in text
    ask(channel, "third")
    third = dify_chats(dify)[-1]
    assert third["inputs"]["system_prompt"] == writer["description"] and "conversation_id" not in third

    ask(channel, "$设定扮演 你是一名海盗")
    ask(channel, "ahoy")
    pirate = dify_chats(dify)[-1]
    assert pirate["query"] == "ahoy" and pirate["inputs"]["system_prompt"] == "你是一名海盗"

    assert texts(ask(channel, "$停止扮演")) == ["[INFO]\n角色扮演已结束。"]
    ask(channel, "plain")
    plain = dify_chats(dify)[-1]
    assert plain["query"] == "plain" and "system_prompt" not in plain["inputs"] and "conversation_id" not in plain


@pytest.fixture
def openai(settings):
    with OpenAIServer() as server:
        settings["bot_type"] = "chatGPT"
        settings["model"] = "gpt-3.5-turbo"
        settings["open_ai_api_base"] = server.base_url
        settings["open_ai_api_key"] = "sk-test"
        settings["proxy"] = ""
        settings["character_desc"] = "You are the default bot."
        settings["conversation_max_tokens"] = 2000
        settings["request_timeout"] = 5
        settings["rate_limit_chatgpt"] = 0
        settings["use_azure_chatgpt"] = False
        settings["use_linkai"] = False
        settings["expires_in_seconds"] = 0
        yield server


def test_role_with_chatgpt_sets_the_system_message(load, openai):
    channel = load()
    cat = role_info()["小猫咪"]
    ask(channel, "$角色 猫咪")  # loose name match
    ask(channel, "你好")
    messages = openai.chat_requests()[-1].messages
    assert messages[0] == {"role": "system", "content": cat["descn"]}
    assert messages[-1] == {"role": "user", "content": '主人说："你好"'}
    ask(channel, "再说一句")
    assert len(openai.chat_requests()[-1].messages) == 4  # history kept under the role

    ask(channel, "$停止扮演")
    ask(channel, "plain")
    messages = openai.chat_requests()[-1].messages
    assert messages == [{"role": "system", "content": "You are the default bot."}, {"role": "user", "content": "plain"}]


def test_role_types_help_and_errors(load):
    channel = load()
    roles = role_info()
    [(_, rtype, text)] = ask(channel, "$角色类型 所有")
    assert rtype == ReplyType.INFO and all(title in text for title in roles)
    text = texts(ask(channel, "$角色类型 有趣"))[0]
    assert "小猫咪" in text and "Linux终端" in text and "写作助理" not in text
    assert "写作助理" in texts(ask(channel, "$角色类型 write"))[0]
    assert "没有“天文”这个角色类型" in texts(ask(channel, "$角色类型 天文"))[0]
    assert "角色类型有" in texts(ask(channel, "$角色类型"))[0]
    # The capture bot keeps no sessions: role commands say so instead of failing silently.
    [(_, rtype, text)] = ask(channel, "$角色 写作助理")
    assert rtype == ReplyType.ERROR and "不支持角色扮演" in text
    assert CaptureBot.calls == []


def test_role_help_and_unknown_role(load, openai):
    channel = load()
    assert "system_prompt" in texts(ask(channel, "$角色 帮助"))[0]
    [(_, rtype, text)] = ask(channel, "$角色 zzzzqqqq")
    assert rtype == ReplyType.ERROR and "zzzzqqqq" in text
    [(_, rtype, _)] = ask(channel, "$设定扮演")
    assert rtype == ReplyType.ERROR
    assert openai.chat_requests() == []


# ----------------------------------------------------------------------------- dungeon


def test_dungeon_with_chatgpt(load, openai):
    channel = load()
    assert texts(ask(channel, "$停止冒险")) == ["[INFO]\n现在没有进行中的冒险。"]
    ask(channel, "an earlier chat")
    [(_, rtype, text)] = ask(channel, "$开始冒险 你在沙漠里迷路了")
    assert rtype == ReplyType.INFO and "你在沙漠里迷路了" in text
    ask(channel, "向北走")
    messages = openai.chat_requests()[-1].messages
    assert len(messages) == 2  # the earlier chat was cleared
    assert "你在沙漠里迷路了" in messages[-1]["content"] and "向北走。" in messages[-1]["content"]
    ask(channel, "打开箱子!")
    messages = openai.chat_requests()[-1].messages
    assert len(messages) == 4
    assert "打开箱子!" in messages[-1]["content"] and "你在沙漠里迷路了" not in messages[-1]["content"]

    assert texts(ask(channel, "$停止冒险")) == ["[INFO]\n冒险结束！"]
    ask(channel, "plain question")
    assert openai.chat_requests()[-1].messages[1:] == [{"role": "user", "content": "plain question"}]


def test_dungeon_with_dify(load, dify):
    channel = load()
    ask(channel, "$开始冒险")  # the default story
    ask(channel, "look around")
    first = dify_chats(dify)[-1]
    assert "古堡" in first["query"] and "look around。" in first["query"]
    ask(channel, "run")
    second = dify_chats(dify)[-1]
    assert "古堡" not in second["query"] and second.get("conversation_id")
    ask(channel, "$停止冒险")
    ask(channel, "plain")
    last = dify_chats(dify)[-1]
    assert last["query"] == "plain" and "conversation_id" not in last


def test_dungeon_needs_a_bot_with_sessions(load):
    channel = load()
    [(_, rtype, text)] = ask(channel, "$开始冒险 x")
    assert rtype == ReplyType.ERROR and "不能讲冒险故事" in text


# ----------------------------------------------------------------------------- custom_dify_app


@pytest.mark.parametrize("single_chat_key", ["use_on_single_chat", "single_chat"])
def test_custom_dify_app_routes_groups_and_private_chats(load, dify, single_chat_key):
    with DifyServer(api_key="app-group") as group_app, DifyServer(api_key="app-private") as private_app:
        channel = load({"CustomDifyApp": [
            {"app_name": "售后", "app_type": "chatbot", "api_base": group_app.base_url, "api_key": "app-group",
             "group_name_keywords": ["售后", "客服"]},
            {"app_name": "later match", "api_base": dify.base_url, "api_key": "app-wrong",
             "group_name_keywords": ["售后"]},
            {"app_name": "私聊", "app_type": "chatbot", "api_base": private_app.base_url, "api_key": "app-private",
             single_chat_key: True},
        ]})
        assert texts(ask(channel, "@bot 退货怎么办", group=("g-9", "客户售后二群"))) == ["@Alice\necho: 退货怎么办"]
        [request] = group_app.requests_to("/v1/chat-messages")
        assert request["headers"]["authorization"] == "Bearer app-group"

        assert texts(ask(channel, "私聊问题")) == ["echo: 私聊问题"]
        [request] = private_app.requests_to("/v1/chat-messages")
        assert request["headers"]["authorization"] == "Bearer app-private"

        # No matching group: the global Dify settings apply.
        assert texts(ask(channel, "@bot 闲聊", group=("g-3", "闲聊群"))) == ["@Alice\necho: 闲聊"]
        [request] = dify.requests_to("/v1/chat-messages")
        assert request["headers"]["authorization"] == "Bearer app-test"
