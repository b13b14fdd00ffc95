"""Godcmd through the real pipeline: RecordingChannel -> rules -> queue -> plugins
(the bundled godcmd folder, plugins.json and settings in a tmp folder) -> Bridge -> bot.

Every command is sent as an admin and as a plain user, in private and in a group."""
from __future__ import annotations

import json
import textwrap
import threading
from pathlib import Path

import pytest

import config
from bot.bot import Bot
from bot.session_manager import Session, SessionManager
from bridge.bridge import Bridge
from bridge.reply import Reply, ReplyType
from common import const
from common.log import is_debug, set_debug
from common.store import SQLiteStore
from common.user_data import UserDataBook
from plugins import Event, PluginManager
from tests.fakes.recording_channel import RecordingChannel, make_msg

ADMIN = "admin-1"
PASSWORD = "correct-horse-42"
GROUP = ("g-1", "Test Group")
# Bundled plugins other than godcmd: off in these tests (their own tests cover them).
OTHER_BUNDLED = ("Keyword", "Banwords", "Hello", "Finish", "Role", "Dungeon", "CustomDifyApp", "linkai", "tool", "BDunit")


# ----------------------------------------------------------------------------- a bot


class _CountingSession(Session):
    def discard_exceeding(self, max_tokens=None, cur_tokens=None):
        return 0


class SessionBot(Bot):
    """Keeps a history per session like the OpenAI-style bots; answers with the turn number.
    A query starting with "slow" waits at `gate`."""

    gate = threading.Event()
    started = threading.Event()
    calls: list = []

    def __init__(self):
        self.sessions = SessionManager(_CountingSession)

    def reply(self, query, context=None):
        session_id = context.get("session_id")
        SessionBot.calls.append((query, session_id))
        if query.startswith("slow"):
            SessionBot.started.set()
            SessionBot.gate.wait(5)
        session = self.sessions.session_query(query, session_id)
        turn = sum(1 for m in session.messages if m["role"] == "user")
        self.sessions.session_reply("ok", session_id)
        return Reply(ReplyType.TEXT, f"echo: {query} (turn {turn})")


GREETER = '''
import plugins
from plugins import *
from bridge.context import ContextType
from bridge.reply import Reply, ReplyType


@plugins.register(name="Greeter", desire_priority=10, desc="says pong", version="0.3", author="tests", namecn="问候")
class Greeter(Plugin):
    def __init__(self):
        super().__init__()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context

    def on_handle_context(self, e_context):
        if e_context["context"].content == "ping":
            e_context["reply"] = Reply(ReplyType.TEXT, "pong from greeter")
            e_context.action = EventAction.BREAK_PASS

    def get_help_text(self, verbose=False, **kwargs):
        return "Greeter 的详细说明" if verbose else "发送 ping 试试"
'''


def write_plugin(root: Path, folder: str, source: str) -> None:
    (root / folder).mkdir()
    module = folder.removeprefix("tp_")
    (root / folder / "__init__.py").write_text(f"from .{module} import *\n", encoding="utf-8")
    (root / folder / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")


# --------------------------------------------------------------------------- fixtures



class Env:
    def __init__(self, root: Path, settings):
        self.root = root
        self.settings = settings
        self.channel: RecordingChannel | None = None

    def start(self, godcmd_settings: dict | None = None, raw_settings: str | None = None) -> "Env":
        conf_path = self.root / "config.json"
        if raw_settings is not None:
            # A broken shared file: godcmd then reads its own (absent) file.
            conf_path.write_text(raw_settings, encoding="utf-8")
        else:
            entry = {"password": PASSWORD, "admin_users": [ADMIN]} if godcmd_settings is None else godcmd_settings
            conf_path.write_text(json.dumps({"Godcmd": entry}), encoding="utf-8")
        pm = PluginManager()
        pm.load_plugins()
        for name in list(pm.plugins):
            if name not in ("GODCMD", "GREETER"):
                pm.disable_plugin(name)
        self.channel = RecordingChannel()
        return self

    @property
    def godcmd(self):
        return PluginManager().instances["GODCMD"]

    def say(self, text: str, sender: str = "alice", group: bool = False) -> list[tuple]:
        """Send one message, wait until it is handled; what the platform got meanwhile."""
        channel = self.channel
        before = len(channel.sent)
        if group:
            msg = make_msg("@bot " + text, group=GROUP, sender=sender, sender_name=sender.title())
        else:
            msg = make_msg(text, sender=sender, sender_name=sender.title())
        channel.receive(msg)
        assert channel.wait_idle(10)
        return channel.sent[before:]

    def ask(self, text: str, sender: str = "alice", group: bool = False) -> tuple[ReplyType, str]:
        """Send one command; its single reply as (type, text without the [INFO]/[ERROR] mark)."""
        sent = self.say(text, sender, group)
        assert len(sent) == 1, sent
        _, rtype, content = sent[0]
        if rtype in (ReplyType.INFO, ReplyType.ERROR):
            mark = f"[{rtype.name}]\n"
            assert content.startswith(mark), content
            content = content[len(mark):]
        if group:
            content = content.removeprefix(f"@{sender.title()}\n")
        return rtype, content

    def admin(self, text: str) -> tuple[ReplyType, str]:
        return self.ask(text, sender=ADMIN)


@pytest.fixture
def env(tmp_path, settings, monkeypatch):
    """Plugins: the bundled folder (godcmd) plus a tmp folder holding plugins.json,
    the shared plugin settings and a test plugin."""
    root = tmp_path / "plugins_dir"
    root.mkdir()
    write_plugin(root, "tp_greeter", GREETER)
    (root / "plugins.json").write_text(
        json.dumps({"plugins": {name: {"enabled": False, "priority": 0} for name in OTHER_BUNDLED}}), encoding="utf-8"
    )
    settings["single_chat_prefix"] = [""]
    settings["group_name_white_list"] = ["ALL_GROUP"]
    settings["group_chat_prefix"] = ["@bot"]
    settings["bot_type"] = "tests.unit.test_godcmd:SessionBot"
    settings["expires_in_seconds"] = 0
    monkeypatch.setattr(config.conf().user_data_book, "_store", None)
    monkeypatch.setitem(config.global_config, "admin_users", [])
    debug_before = is_debug()
    SessionBot.calls = []
    SessionBot.gate.set()
    SessionBot.started.clear()
    Bridge.reset_instance()
    PluginManager._reset_for_tests()
    config.plugin_config.clear()
    PluginManager().configure(str(root), include_bundled=True)
    environment = Env(root, settings)
    yield environment
    SessionBot.gate.set()
    if environment.channel is not None:
        environment.channel.stop()
    PluginManager._reset_for_tests()
    config.plugin_config.clear()
    Bridge.reset_instance()
    set_debug(debug_before)


def bot_queries(session_id=None):
    return [q for q, sid in SessionBot.calls if session_id is None or sid == session_id]


# ------------------------------------------------------------------------ the plugin


def test_registration_is_the_originals(env):
    env.start()
    pm = PluginManager()
    godcmd = pm.plugins["GODCMD"]
    assert (godcmd.name, godcmd.priority, godcmd.hidden) == ("Godcmd", 999, True)
    assert list(env.godcmd.handlers) == [Event.ON_HANDLE_CONTEXT]


def test_settings_template_is_the_originals():
    template = Path(__file__).resolve().parents[2] / "plugins" / "godcmd" / "config.json.template"
    assert json.loads(template.read_text(encoding="utf-8")) == {"password": "", "admin_users": []}


def test_plain_messages_reach_the_bot(env):
    env.start()
    assert env.say("hello") == [("alice", ReplyType.TEXT, "echo: hello (turn 1)")]


# -------------------------------------------------------------------- admins and #auth


def test_temporary_password_when_none_is_set(env, logs):
    env.start({"password": "", "admin_users": []})
    temp = env.godcmd.temp_password
    assert len(temp) == 12 and temp.isalnum()
    assert any(temp in m for m in logs.messages), "the temporary password must be logged"
    assert env.ask("#stop") == (ReplyType.ERROR, "需要管理员权限才能执行该指令")
    rtype, text = env.ask(f"#auth {temp}")
    assert (rtype, text) == (ReplyType.INFO, "认证成功，请尽快设置口令")
    assert env.ask("#stop")[0] == ReplyType.INFO
    assert "alice" in config.global_config["admin_users"]


def test_no_temporary_password_when_one_is_set(env):
    env.start()
    assert env.godcmd.temp_password is None
    assert env.ask("#auth ")[0] == ReplyType.ERROR  # no argument


def test_auth_with_right_and_wrong_password(env):
    env.start()
    assert env.ask("#auth wrong") == (ReplyType.ERROR, "认证失败")
    assert env.ask("#resume")[0] == ReplyType.ERROR
    assert env.ask(f"#认证 {PASSWORD}") == (ReplyType.INFO, "认证成功")
    assert env.ask("#resume") == (ReplyType.INFO, "服务已恢复")
    assert env.ask(f"#auth {PASSWORD}") == (ReplyType.ERROR, "管理员账号无需认证")
    assert env.ask("#auth a b", sender="bob") == (ReplyType.ERROR, "请提供口令")
    # Others are not affected.
    assert env.ask("#resume", sender="bob")[0] == ReplyType.ERROR


def test_auth_is_refused_in_a_group(env):
    env.start()
    rtype, text = env.ask(f"#auth {PASSWORD}", sender="carol", group=True)
    assert (rtype, text) == (ReplyType.ERROR, "请勿在群聊中认证")
    assert "carol" not in config.global_config["admin_users"]
    assert GROUP[0] not in config.global_config["admin_users"]


def test_repeated_wrong_passwords_lock_the_user_out(env):
    env.start()
    for _ in range(5):
        assert env.ask("#auth nope") == (ReplyType.ERROR, "认证失败")
    rtype, text = env.ask(f"#auth {PASSWORD}")
    assert rtype == ReplyType.ERROR and "次数太多" in text
    assert env.ask(f"#auth {PASSWORD}", sender="bob")[0] == ReplyType.INFO  # only that user


def test_admins_from_settings_and_from_global_config(env):
    env.start()
    assert config.global_config["admin_users"] is env.godcmd.admin_users
    assert env.admin("#resume")[0] == ReplyType.INFO
    # Another plugin may add an admin to the shared list.
    config.global_config["admin_users"].append("dave")
    assert env.ask("#resume", sender="dave")[0] == ReplyType.INFO


def test_broken_settings_still_start_with_a_temporary_password(env):
    env.start(raw_settings="{ not json")
    assert env.godcmd.temp_password
    assert env.ask("#help")[0] == ReplyType.INFO


# ---------------------------------------------------------------- general behaviour


def test_empty_and_unknown_commands(env):
    env.start()
    assert env.ask("#") == (ReplyType.ERROR, "空指令，输入#help查看指令列表\n")
    assert env.ask("#nosuch arg") == (ReplyType.ERROR, "未知指令：nosuch\n查看指令列表请输入#help \n")
    assert env.ask("#nosuch", group=True)[0] == ReplyType.ERROR
    assert bot_queries() == []


def test_unknown_command_passes_when_plugins_use_the_same_prefix(env):
    env.settings["plugin_trigger_prefix"] = "#"
    env.start()
    assert env.say("#weather") == [("alice", ReplyType.TEXT, "echo: #weather (turn 1)")]
    assert env.ask("#id") == (ReplyType.INFO, "alice")  # known commands still belong to godcmd


def test_command_words_ignore_letter_case(env):
    env.start()
    assert env.ask("#ID") == (ReplyType.INFO, "alice")
    assert env.admin("#Resume")[0] == ReplyType.INFO


# ------------------------------------------------------------------------ user commands


USER_HELP = (
    "通用指令\n#help : 回复此帮助\n#help 插件名: 回复指定插件的详细帮助\n#model : 查看和设置全局模型\n"
    "#id : 获取用户id\n#reset : 重置会话\n\n可用插件\n问候:发送 ping 试试"
)
ADMIN_HELP = USER_HELP + (
    "\n\n管理员指令：\n#resume : 恢复服务\n#stop : 暂停服务\n#reconf : 重载配置(不包含插件配置)\n"
    "#resetall : 重置所有会话\n#scanp : 扫描插件目录是否有新插件\n#plist : 打印当前插件列表\n"
    "#setpri 插件名 优先级: 设置指定插件的优先级，越大越优先\n#reloadp 插件名: 重载指定插件配置\n"
    "#enablep 插件名: 启用指定插件\n#disablep 插件名: 禁用指定插件\n#installp 仓库地址或插件名: 安装指定插件\n"
    "#uninstallp 插件名: 卸载指定插件\n#updatep 插件名: 更新指定插件\n#debug : 开启机器调试日志\n"
)


def test_help_for_users_and_admins(env):
    # The original's layout and texts (hidden plugins and hidden commands left out).
    env.settings["channel_type"] = "wework"
    env.start()
    for command in ("#help", "#帮助"):
        assert env.ask(command) == (ReplyType.INFO, USER_HELP)
    assert env.admin("#help") == (ReplyType.INFO, ADMIN_HELP)
    assert env.ask("#help", group=True) == (ReplyType.INFO, USER_HELP)
    assert env.ask("#help", sender=ADMIN, group=True) == (ReplyType.INFO, USER_HELP)


def test_help_shows_id_on_wx_whose_ids_are_stable_now(env):
    # The original hid #id on `wx` because itchat's ids changed at each login; `wx` is now
    # Tencent's iLink bot, whose `<id>@im.wechat` ids stay, so #id (for admin_users) is shown.
    env.settings["channel_type"] = "wx"
    env.start()
    assert env.ask("#help") == (ReplyType.INFO, USER_HELP)


def test_help_of_one_plugin(env):
    env.start()
    assert env.ask("#help greeter") == (ReplyType.INFO, "Greeter 的详细说明")
    assert env.ask("#帮助 问候", group=True) == (ReplyType.INFO, "Greeter 的详细说明")
    assert env.ask("#help nosuch") == (ReplyType.ERROR, "插件不存在或未启用")
    PluginManager().disable_plugin("greeter")
    assert env.ask("#help greeter")[0] == ReplyType.ERROR
    assert "问候" not in env.ask("#help")[1]


def test_id_in_private_and_in_a_group(env):
    env.start()
    assert env.ask("#id") == (ReplyType.INFO, "alice")
    assert env.ask("#用户", sender="bob") == (ReplyType.INFO, "bob")
    assert env.ask("#id", group=True) == (ReplyType.INFO, f"群ID：{GROUP[0]}\n你的ID：alice")


def test_reset_clears_the_bot_session(env):
    env.start()
    assert env.say("one")[0][2] == "echo: one (turn 1)"
    assert env.say("two")[0][2] == "echo: two (turn 2)"
    assert env.ask("#reset") == (ReplyType.INFO, "会话已重置")
    assert env.say("three")[0][2] == "echo: three (turn 1)"
    assert env.say("four", sender="bob")[0][2] == "echo: four (turn 1)"
    assert env.ask("#重置会话") == (ReplyType.INFO, "会话已重置")
    assert env.say("five", sender="bob")[0][2] == "echo: five (turn 2)"  # only alice's session


def test_reset_aliases_from_clear_memory_commands(env):
    env.start()
    env.say("one")
    assert env.ask("#清除记忆")[0] == ReplyType.INFO  # the default clear_memory_commands
    assert env.say("two")[0][2] == "echo: two (turn 1)"
    env.settings["clear_memory_commands"] = ["#forget", "no-hash", "#"]
    assert env.ask("#forget")[0] == ReplyType.INFO
    assert env.ask("#清除记忆")[0] == ReplyType.ERROR  # no longer an alias


def test_reset_in_a_group_clears_only_that_members_session(env):
    env.start()
    env.say("one", group=True)
    env.say("one", sender="bob", group=True)
    assert env.ask("#reset", group=True)[0] == ReplyType.INFO
    assert env.say("two", group=True)[0][2].endswith("echo: two (turn 1)")
    assert env.say("two", sender="bob", group=True)[0][2].endswith("echo: two (turn 2)")


def test_reset_drops_queued_messages(env):
    env.start()
    SessionBot.gate.clear()
    channel = env.channel
    channel.receive(make_msg("slow one"))
    assert SessionBot.started.wait(5)
    channel.receive(make_msg("waiting 1"))
    channel.receive(make_msg("waiting 2"))
    channel.receive(make_msg("#reset"))  # jumps the queue, runs right after "slow one"
    SessionBot.gate.set()
    assert channel.wait_idle(10)
    contents = [c for _, _, c in channel.sent]
    assert contents == [
        "echo: slow one (turn 1)",
        "[INFO]\n会话已重置\n2 earlier messages still waiting were cancelled.",
    ]
    assert bot_queries() == ["slow one"]


def test_reset_keeps_the_question_sent_after_it(env):
    # "ask, #reset, ask again": only what was queued before the command is cancelled.
    env.start()
    SessionBot.gate.clear()
    channel = env.channel
    channel.receive(make_msg("slow one"))
    assert SessionBot.started.wait(5)
    channel.receive(make_msg("问题一"))
    channel.receive(make_msg("#reset"))
    channel.receive(make_msg("问题二"))
    channel.receive(make_msg("#重置会话"))
    channel.receive(make_msg("问题三"))
    SessionBot.gate.set()
    assert channel.wait_idle(10)
    assert [c for _, _, c in channel.sent] == [
        "echo: slow one (turn 1)",
        "[INFO]\n会话已重置\n此前还在排队的 1 条消息已取消。",
        # The second command also jumped ahead of 问题二, which it had been sent after.
        "[INFO]\n会话已重置\n此前还在排队的 1 条消息已取消。",
        "echo: 问题三 (turn 1)",
    ]
    assert bot_queries() == ["slow one", "问题三"]


def test_resetall_keeps_what_was_sent_after_it(env):
    env.start()
    SessionBot.gate.clear()
    channel = env.channel
    channel.receive(make_msg("slow one", sender=ADMIN))
    assert SessionBot.started.wait(5)
    channel.receive(make_msg("waiting", sender=ADMIN))
    channel.receive(make_msg("#resetall", sender=ADMIN))
    channel.receive(make_msg("after", sender=ADMIN))
    SessionBot.gate.set()
    assert channel.wait_idle(10)
    assert [c for _, _, c in channel.sent] == [
        "echo: slow one (turn 1)",
        "[INFO]\n重置所有会话成功\n1 earlier message still waiting was cancelled.",
        "echo: after (turn 1)",
    ]


def test_reset_with_a_bot_without_sessions(env):
    env.settings["bot_type"] = "tests.fakes.bots:EchoBot"
    env.start()
    rtype, text = env.ask("#reset")
    assert (rtype, text) == (ReplyType.ERROR, "当前对话机器人不支持重置会话")


def test_reset_with_a_bot_that_cannot_be_created(env):
    env.settings["bot_type"] = "no.such.module:Bot"
    env.start()
    assert env.ask("#reset")[0] == ReplyType.ERROR
    assert env.ask("#id")[0] == ReplyType.INFO  # other commands do not need the bot


def test_model_needs_an_admin(env):
    env.start()
    assert env.ask("#model") == (ReplyType.ERROR, "需要管理员权限执行")
    assert env.ask("#模型 gpt-4o") == (ReplyType.ERROR, "需要管理员权限执行")
    assert env.ask("#model gpt-4o", sender="bob", group=True) == (ReplyType.ERROR, "需要管理员权限执行")
    assert config.conf().get("model") != "gpt-4o"


def test_model_show_set_and_validate(env):
    env.settings["model"] = const.GPT35
    env.start()
    assert env.admin("#model") == (ReplyType.INFO, f"当前模型为: {const.GPT35}")
    old_bot = Bridge().get_bot("chat")
    rtype, text = env.admin("#model gpt-4o")
    assert rtype == ReplyType.INFO and text.startswith("模型设置为: gpt-4o") and "bot_type" in text
    assert config.conf().get("model") == "gpt-4o"
    assert Bridge().get_bot("chat") is not old_bot  # the Bridge was reset
    assert env.admin("#model gpt-4-turbo")[1].startswith(f"模型设置为: {const.GPT4_TURBO_PREVIEW}")
    rtype, text = env.admin("#model gpt-99")
    assert (rtype, text) == (ReplyType.ERROR, "模型名称不存在")
    assert env.admin("#model a b") == (ReplyType.ERROR, "用法：#model [模型名]")
    assert config.conf().get("model") == const.GPT4_TURBO_PREVIEW


# Names the original's const.MODEL_LIST holds (one of each family and both extra lists).
ORIGINAL_MODEL_NAMES = (
    "gpt-3.5-turbo-0125", "o1-mini", "gpt-4o-mini", "gpt-4o-2024-08-06", "gpt-4-32k", "gpt-4-0613",
    "glm-4-plus", "glm-4-flash", "minimax", "gemini-1.5-pro", "gemini-2.0-flash-exp",
    "claude-3-5-sonnet-latest", "claude-3-haiku-20240307", "claude-3.5-sonnet", "moonshot-v1-128k",
    "deepseek-reasoner", "modelscope", "Yi-34B-Chat", "Qwen2.5-72B-Instruct", "Qwen/QwQ-32B",
    "deepseek-ai/DeepSeek-R1",
)


def test_model_accepts_every_name_of_the_originals_list(env):
    env.start()
    for model in ORIGINAL_MODEL_NAMES:
        assert env.admin(f"#model {model}") == (ReplyType.INFO, f"模型设置为: {model}\n注意：配置了 bot_type=tests.unit.test_godcmd:SessionBot，回复仍由它决定")
        assert config.conf().get("model") == model


def test_model_constants_plugins_import():
    namespace: dict = {}
    exec("from common.const import *", namespace)
    assert namespace["GPT_4O_MINI"] == "gpt-4o-mini" and namespace["O1"] == "o1-preview"
    assert namespace["CLAUDE_35_SONNET"] == "claude-3-5-sonnet-latest" and namespace["GLM_4_AIRX"] == "glm-4-airx"
    assert const.GPT4_TURBO_PREVIEW == "gpt-4-turbo-preview"
    assert "Qwen/QwQ-32B" in namespace["MODELSCOPE_MODEL_LIST"] and "Yi-34B-Chat" in const.GITEE_AI_MODEL_LIST
    assert set(const.GITEE_AI_MODEL_LIST + const.MODELSCOPE_MODEL_LIST) <= set(const.MODEL_LIST)


def test_model_by_an_admin_member_of_a_group(env):
    env.start()
    rtype, text = env.ask("#model dify", sender=ADMIN, group=True)
    assert rtype == ReplyType.INFO and config.conf().get("model") == "dify"


def test_personal_key_and_model_are_durable(env, tmp_path, monkeypatch):
    store = SQLiteStore(str(tmp_path / "state.db"))
    book = UserDataBook()
    book.attach(store)
    monkeypatch.setattr(config.conf(), "user_data_book", book)
    try:
        env.settings["model"] = const.GPT35
        env.start()
        assert env.ask("#gpt_model") == (ReplyType.INFO, f"你的GPT模型为{const.GPT35}")
        assert env.ask("#set_gpt_model gpt-4o") == (ReplyType.INFO, "你的GPT模型已设置为gpt-4o")
        assert env.ask("#gpt_model") == (ReplyType.INFO, "你的GPT模型为gpt-4o")
        assert env.ask("#set_gpt_model") == (ReplyType.ERROR, "请提供一个GPT模型")
        key = "sk-abcdefghijklmnop"
        rtype, text = env.ask(f"#set_openai_api_key {key}")
        assert rtype == ReplyType.INFO and key not in text and text == "你的OpenAI私有api_key已设置为sk-*****nop"
        assert env.ask("#set_openai_api_key") == (ReplyType.ERROR, "请提供一个api_key")
        rtype, text = env.ask("#set_openai_api_key sk-group-key-123", group=True)
        assert rtype == ReplyType.ERROR and "私聊" in text
        book.flush()
        reopened = UserDataBook()
        reopened.attach(store)
        assert reopened.get("alice") == {"gpt_model": "gpt-4o", "openai_api_key": key}
        reopened.close()
        assert "openai_api_key" not in book.get(GROUP[0])
        assert env.ask("#reset_openai_api_key") == (ReplyType.INFO, "你的OpenAI私有api_key已清除")
        assert env.ask("#reset_openai_api_key") == (ReplyType.ERROR, "你没有设置私有api_key")
        assert env.ask("#reset_gpt_model") == (ReplyType.INFO, "你的GPT模型已重置")
        assert env.ask("#reset_gpt_model") == (ReplyType.ERROR, "你没有设置私有GPT模型")
        assert env.ask("#set_gpt_model glm-4", group=True)[0] == ReplyType.INFO  # the group's model
        book.flush()
        reopened = UserDataBook()
        reopened.attach(store)
        assert reopened.get("alice") == {}
        assert reopened.get(GROUP[0]) == {"gpt_model": "glm-4"}
        reopened.close()
    finally:
        book.close()
        store.close()


def test_personal_model_reaches_the_context(env):
    env.start()
    env.ask("#set_gpt_model gpt-4o")
    seen = []
    original = SessionBot.reply

    def spy(self, query, context=None):
        seen.append(context.get("gpt_model"))
        return original(self, query, context)

    SessionBot.reply = spy
    try:
        env.say("hello")
    finally:
        SessionBot.reply = original
    assert seen == ["gpt-4o"]


# ----------------------------------------------------------------------- admin commands

ADMIN_ALIASES = {
    "resume": ["#resume", "#恢复服务"],
    "stop": ["#stop", "#暂停服务"],
    "reconf": ["#reconf", "#重载配置"],
    "resetall": ["#resetall", "#重置所有会话"],
    "scanp": ["#scanp", "#扫描插件"],
    "plist": ["#plist", "#插件"],
    "setpri": ["#setpri greeter 5", "#设置插件优先级 greeter 5"],
    "reloadp": ["#reloadp greeter", "#重载插件 greeter"],
    "enablep": ["#enablep greeter", "#启用插件 greeter"],
    "disablep": ["#disablep greeter", "#禁用插件 greeter"],
    "installp": ["#installp https://example.com/a/b.git", "#安装插件 sdwebui"],
    "uninstallp": ["#uninstallp greeter", "#卸载插件 greeter"],
    "updatep": ["#updatep greeter", "#更新插件 greeter"],
    "debug": ["#debug", "#调试模式", "#DEBUG"],
}


def test_every_admin_command_is_refused_to_users_and_in_groups(env):
    env.start()
    from plugins.godcmd.godcmd import ADMIN_COMMANDS

    assert set(ADMIN_ALIASES) == set(ADMIN_COMMANDS)
    debug_before = is_debug()
    for commands in ADMIN_ALIASES.values():
        for command in commands:
            assert env.ask(command) == (ReplyType.ERROR, "需要管理员权限才能执行该指令"), command
            assert env.ask(command, group=True) == (ReplyType.ERROR, "群聊不可执行管理员指令"), command
            # An admin writing in a group is refused too.
            assert env.ask(command, sender=ADMIN, group=True) == (ReplyType.ERROR, "群聊不可执行管理员指令"), command
    # Nothing happened.
    assert env.godcmd.isrunning and is_debug() == debug_before
    assert PluginManager().plugins["GREETER"].enabled and PluginManager().plugins["GREETER"].priority == 10
    assert (env.root / "tp_greeter").is_dir()
    assert env.say("ping") == [("alice", ReplyType.TEXT, "pong from greeter")]


def test_stop_swallows_messages_until_resume(env):
    env.start()
    assert env.admin("#stop") == (ReplyType.INFO, "服务已暂停")
    assert env.say("anyone there?") == []
    assert env.say("ping") == []  # plugins are skipped too
    assert env.say("hello", group=True) == []
    assert env.ask("#id")[0] == ReplyType.INFO  # commands still work
    assert bot_queries() == []
    assert env.admin("#暂停服务")[0] == ReplyType.INFO
    assert env.admin("#resume") == (ReplyType.INFO, "服务已恢复")
    assert env.say("back?") == [("alice", ReplyType.TEXT, "echo: back? (turn 1)")]
    assert env.say("ping") == [("alice", ReplyType.TEXT, "pong from greeter")]


def test_stop_also_swallows_plugin_commands_with_the_same_prefix(env):
    env.settings["plugin_trigger_prefix"] = "#"
    env.start()
    env.admin("#stop")
    assert env.say("#weather") == []
    assert bot_queries() == []


def test_reconf_reloads_and_keeps_the_running_config_on_errors(env, tmp_path, monkeypatch):
    env.start()
    path = tmp_path / "config.json"
    monkeypatch.setattr(config, "_config_path", str(path))
    for key in list(__import__("os").environ):
        if key.lower() in ("model", "bot_type", "single_chat_prefix"):
            monkeypatch.delenv(key)
    good = {
        "model": "gpt-4o",
        "bot_type": "tests.unit.test_godcmd:SessionBot",
        "single_chat_prefix": [""],
        "group_name_white_list": ["ALL_GROUP"],
        "group_chat_prefix": ["@bot"],
    }
    path.write_text(json.dumps(good), encoding="utf-8")
    assert env.admin("#reconf") == (ReplyType.INFO, "配置已重载")
    assert config.conf().get("model") == "gpt-4o"

    path.write_text('{"model": "glm-4",', encoding="utf-8")
    rtype, text = env.admin("#重载配置")
    assert rtype == ReplyType.ERROR and "原来的配置" in text and "not valid JSON" in text
    assert config.conf().get("model") == "gpt-4o"

    path.write_text(json.dumps({**good, "modle": "glm-4"}), encoding="utf-8")
    rtype, text = env.admin("#reconf")
    assert rtype == ReplyType.ERROR and "modle" in text
    assert config.conf().get("model") == "gpt-4o"
    assert env.say("still here")[0][2] == "echo: still here (turn 1)"


def test_resetall_clears_every_session_and_queue(env):
    env.start()
    env.say("one")
    env.say("one", sender="bob")
    env.say("one", group=True)
    assert env.admin("#resetall") == (ReplyType.INFO, "重置所有会话成功")
    assert env.say("two")[0][2] == "echo: two (turn 1)"
    assert env.say("two", sender="bob")[0][2] == "echo: two (turn 1)"
    assert env.say("two", group=True)[0][2].endswith("echo: two (turn 1)")


def test_resetall_with_a_bot_without_sessions(env):
    env.settings["bot_type"] = "tests.fakes.bots:EchoBot"
    env.start()
    assert env.admin("#resetall")[0] == ReplyType.ERROR


def test_debug_toggles_the_log_level(env):
    env.start()
    set_debug(False)
    assert env.admin("#debug") == (ReplyType.INFO, "DEBUG模式已开启")
    assert is_debug()
    assert env.admin("#调试模式") == (ReplyType.INFO, "DEBUG模式已关闭")
    assert not is_debug()


def test_plugin_list_priority_enable_disable_reload(env):
    env.start()
    rtype, text = env.admin("#plist")
    assert rtype == ReplyType.INFO and text.startswith("插件列表：")
    assert "Godcmd_v1.0 999 - 已启用\n" in text and "Greeter_v0.3 10 - 已启用\n" in text

    assert env.admin("#setpri greeter 1000") == (ReplyType.INFO, "插件greeter优先级已设置为1000")
    saved = json.loads((env.root / "plugins.json").read_text(encoding="utf-8"))
    assert saved["plugins"]["Greeter"]["priority"] == 1000
    assert list(PluginManager().plugins)[0] == "GREETER"
    assert env.admin("#setpri greeter high") == (ReplyType.ERROR, "优先级必须是整数")
    assert env.admin("#setpri nosuch 1") == (ReplyType.ERROR, "插件不存在")
    assert env.admin("#setpri greeter") == (ReplyType.ERROR, "请提供插件名和优先级")

    assert env.admin("#disablep greeter") == (ReplyType.INFO, "插件已禁用")
    assert env.say("ping") == [("alice", ReplyType.TEXT, "echo: ping (turn 1)")]
    assert "Greeter_v0.3 1000 - 未启用" in env.admin("#plist")[1]
    assert env.admin("#disablep nosuch") == (ReplyType.ERROR, "插件不存在")
    assert env.admin("#disablep godcmd")[0] == ReplyType.ERROR
    assert PluginManager().plugins["GODCMD"].enabled

    assert env.admin("#enablep greeter") == (ReplyType.INFO, "插件已开启")
    assert env.say("ping") == [("alice", ReplyType.TEXT, "pong from greeter")]
    assert env.admin("#enablep nosuch") == (ReplyType.ERROR, "插件不存在")
    assert env.admin("#enablep") == (ReplyType.ERROR, "请提供插件名")

    before = PluginManager().instances["GREETER"]
    assert env.admin("#reloadp greeter") == (ReplyType.INFO, "插件配置已重载")
    assert PluginManager().instances["GREETER"] is not before
    assert env.admin("#reloadp nosuch") == (ReplyType.ERROR, "插件不存在")


def test_scanp_finds_a_new_plugin(env):
    env.start()
    assert env.admin("#scanp") == (ReplyType.INFO, "插件扫描完成, 未发现新插件")
    write_plugin(env.root, "tp_echoer", GREETER.replace("Greeter", "Echoer").replace('"ping"', '"pang"'))
    assert env.admin("#扫描插件") == (ReplyType.INFO, "插件扫描完成\n发现新插件：\nEchoer_v0.3")
    assert env.say("pang") == [("alice", ReplyType.TEXT, "pong from greeter")]
    # godcmd keeps its state (admins, pause) across scans.
    assert env.ask("#resume", sender=ADMIN)[0] == ReplyType.INFO


def test_install_update_uninstall_commands_check_their_arguments(env):
    env.start()
    assert env.admin("#installp")[0] == ReplyType.ERROR
    assert env.admin("#installp not a url")[0] == ReplyType.ERROR
    rtype, text = env.admin("#installp ftp://example.com/a/b.git")
    assert rtype == ReplyType.ERROR and text.startswith("安装失败")
    assert env.admin("#uninstallp") == (ReplyType.ERROR, "请提供插件名")
    assert env.admin("#updatep") == (ReplyType.ERROR, "请提供插件名")
    assert env.admin("#updatep godcmd") == (ReplyType.ERROR, "预置插件随主程序一起更新，不能单独更新")
    assert env.admin("#uninstallp godcmd")[0] == ReplyType.ERROR
    assert env.admin("#updatep greeter")[0] == ReplyType.ERROR  # not a git checkout
    assert env.admin("#uninstallp nosuch") == (ReplyType.ERROR, "插件不存在")
    assert sorted(p.name for p in env.root.iterdir()) == ["config.json", "plugins.json", "tp_greeter"]


# ------------------------------------------------------------------------ Dify, durably


def test_reset_starts_a_new_dify_conversation_durably(env, tmp_path, monkeypatch):
    from bot.dify.dify_bot import DifyBot
    from bot.dify.dify_client import DifyClient, close_clients
    from sandbox.dify_server import DifyServer

    monkeypatch.setattr(DifyClient, "backoff_base", 0.001)
    store = SQLiteStore(str(tmp_path / "state.db"))
    monkeypatch.setattr(config.conf().user_data_book, "_store", store)
    env.settings.update(
        bot_type="", model="dify", dify_api_key="app-test", dify_app_type="chatbot",
        dify_connect_timeout=2, dify_read_timeout=5,
    )
    try:
        with DifyServer(api_key="app-test", mode="chat") as dify:
            env.settings["dify_api_base"] = dify.base_url
            env.start()
            assert env.say("first question") == [("alice", ReplyType.TEXT, "echo: first question")]
            env.say("second question")
            chats = dify.requests_to("/v1/chat-messages")
            first_conversation = chats[1]["json"]["conversation_id"]
            assert "conversation_id" not in chats[0]["json"] and first_conversation

            assert env.ask("#reset") == (ReplyType.INFO, "会话已重置")
            # The store no longer knows the conversation: a new bot (a restart) starts afresh.
            assert DifyBot().sessions.get_session("alice").conversation_id == ""
            env.say("third question")
            chats = dify.requests_to("/v1/chat-messages")
            assert "conversation_id" not in chats[2]["json"]
            env.say("fourth question")
            second_conversation = dify.requests_to("/v1/chat-messages")[3]["json"]["conversation_id"]
            assert second_conversation and second_conversation != first_conversation
            assert [q for q, _ in dify.conversations[second_conversation]["turns"]] == ["third question", "fourth question"]

            assert env.admin("#resetall")[0] == ReplyType.INFO
            assert DifyBot().sessions.get_session("alice").conversation_id == ""
    finally:
        close_clients()
        store.close()
