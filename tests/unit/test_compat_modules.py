"""Modules third-party plugins written for the original import: common.utils helpers,
voice.audio_convert, channel.wework.run, lib.itchat, translate, bot.openai, bot.linkai and
ChatChannel's class attributes. Each is used the way plugins use it, against real files, a
real subprocess or local fake servers."""
from __future__ import annotations

import io
import subprocess
import sys
import wave

import pytest
from PIL import Image

from bridge.context import Context, ContextType
from bridge.reply import ReplyType
from tests.e2e.daemon import ROOT, app_env
from tests.fakes.audio import make_mp3, make_wav
from tests.fakes.baidu_translate_server import BaiduTranslateServer
from tests.fakes.openai_server import OpenAIServer

# ------------------------------------------------------------------ common.utils

# Every public function of the original's common/utils.py.
ORIGINAL_UTILS = [
    "fsize", "compress_imgfile", "split_string_by_utf8_length", "get_path_suffix", "convert_webp_to_png",
    "print_green", "print_yellow", "print_red", "parse_markdown_text", "remove_markdown_symbol",
]


def noisy_png(size: int = 400) -> io.BytesIO:
    image = Image.effect_noise((size, size), 100).convert("RGB")
    out = io.BytesIO()
    image.save(out, "PNG")
    out.seek(0)
    return out


def test_common_utils_has_every_public_name_of_the_original():
    import common.utils as utils

    missing = [name for name in ORIGINAL_UTILS if not callable(getattr(utils, name, None))]
    assert missing == []


def test_compress_imgfile_returns_a_jpeg_within_the_limit():
    from common.utils import compress_imgfile, fsize

    big = noisy_png()
    limit = fsize(big) // 4
    small = compress_imgfile(big, limit)
    assert small is not big and fsize(small) <= limit
    assert small.read(3) == b"\xff\xd8\xff"  # JPEG
    # Already small enough: the same object back, untouched.
    tiny = noisy_png(8)
    assert compress_imgfile(tiny, 10**6) is tiny
    # A limit no quality can meet: the picture is scaled down until it fits.
    shrunk = compress_imgfile(noisy_png(), 3000)
    assert fsize(shrunk) <= 3000 and Image.open(shrunk).width < 400


def test_convert_webp_to_png():
    from common.utils import convert_webp_to_png

    webp = io.BytesIO()
    Image.new("RGB", (10, 6), (10, 200, 30)).save(webp, "WEBP")
    webp.seek(5)  # a plugin may hand over a file that was already read from
    png = convert_webp_to_png(webp)
    assert png.read(8) == b"\x89PNG\r\n\x1a\n"
    png.seek(0)
    assert Image.open(png).size == (10, 6)
    with pytest.raises(Exception):
        convert_webp_to_png(io.BytesIO(b"not an image"))


def test_print_colours(capsys):
    from common.utils import print_green, print_red, print_yellow

    print_red("r")
    print_green("g")
    print_yellow("y")
    assert capsys.readouterr().out == "\033[31mr\033[0m\n\033[32mg\033[0m\n\033[33my\033[0m\n"


def test_parse_markdown_text_has_the_originals_shape():
    from common.utils import parse_markdown_text

    text = "看这张图 ![chart](/files/chart.png)\n还有报告 [report](https://example.org/report.docx)\n完"
    assert parse_markdown_text(text) == [
        {"type": "text", "content": "看这张图"},
        {"type": "image", "content": "/files/chart.png"},
        {"type": "text", "content": "还有报告"},
        {"type": "file", "content": "https://example.org/report.docx"},
        {"type": "text", "content": "完"},
    ]
    assert parse_markdown_text("") == []


# ------------------------------------------------------------- voice.audio_convert


def test_mp3_to_silk_makes_a_wechat_voice(tmp_path):
    from voice.audio_convert import get_silk_duration, mp3_to_silk, sil_to_wav

    mp3 = make_mp3(str(tmp_path / "answer.mp3"), frames=100)  # 100 x 1152 samples at 44.1 kHz
    silk = str(tmp_path / "answer.silk")
    duration = mp3_to_silk(mp3, silk)
    expected = 100 * 1152 * 1000 // 44100
    assert abs(duration - expected) <= 40
    with open(silk, "rb") as f:
        assert f.read(10) == b"\x02#!SILK_V3"  # WeChat's variant
    assert abs(get_silk_duration(silk) - expected) <= 40
    wav = str(tmp_path / "back.wav")
    sil_to_wav(silk, wav)
    with wave.open(wav) as w:
        assert w.getframerate() == 24000 and abs(w.getnframes() / 24 - expected) <= 40


def test_mp3_to_silk_refuses_what_it_cannot_decode(tmp_path):
    from voice.audio_convert import UnsupportedAudioFormat, mp3_to_silk

    bogus = tmp_path / "x.mp3"
    bogus.write_bytes(b"\x00" * 100)
    with pytest.raises(UnsupportedAudioFormat):
        mp3_to_silk(str(bogus), str(tmp_path / "x.silk"))
    assert not (tmp_path / "x.silk").exists()


def test_split_audio(tmp_path):
    from voice.audio_convert import split_audio

    wav = make_wav(str(tmp_path / "long.wav"), seconds=2.5)
    length, files = split_audio(wav, 1000)
    assert length == 2500
    assert [f.rsplit("long", 1)[1] for f in files] == ["_1.wav", "_2.wav", "_3.wav"]
    frames = []
    for path in files:
        with wave.open(path) as w:
            frames.append(w.getnframes() * 1000 // w.getframerate())
    assert frames == [1000, 1000, 500]
    # Short enough: the file itself.
    assert split_audio(wav) == (2500, [wav])
    mp3 = make_mp3(str(tmp_path / "talk.mp3"), frames=100)
    length, files = split_audio(mp3, 1000)
    assert abs(length - 2612) <= 40 and len(files) == 3 and files[0].endswith("talk_1.wav")
    with pytest.raises(ValueError):
        split_audio(wav, 0)


# ------------------------------------------------------------------- wework.run


def test_wework_run_imports_without_ntwork_and_says_what_it_needs(tmp_path):
    script = (
        "from channel.wework.run import wework, WeworkUnavailable\n"
        "print('bool', bool(wework))\n"
        "try:\n"
        "    wework.send_text('R:1', 'hi')\n"
        "except WeworkUnavailable as e:\n"
        "    print('error', e)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), env=app_env({"PYTHONPATH": ROOT}),
                          capture_output=True, text=True, encoding="utf-8", timeout=60)
    assert done.returncode == 0, done.stderr
    assert "bool False" in done.stdout
    assert "error channel.wework.run.wework needs ntwork, which is not installed" in done.stdout
    assert "channel_type 'wework'" in done.stdout


def test_wework_run_needs_the_wework_channel(ntwork, settings):
    from channel.wework.run import WeworkUnavailable, wework

    settings["channel_type"] = "terminal"
    assert not wework
    with pytest.raises(WeworkUnavailable, match="channel_type 'wework' \\(now 'terminal'\\)"):
        wework.get_rooms()


# -------------------------------------------------------------------- lib.itchat

# The functions the original's lib/itchat/__init__.py exposed.
ITCHAT_FUNCTIONS = [
    "login", "get_QRuuid", "get_QR", "check_login", "web_init", "show_mobile_login", "start_receiving", "get_msg",
    "logout", "update_chatroom", "update_friend", "get_contact", "get_friends", "get_chatrooms", "get_mps",
    "set_alias", "set_pinned", "accept_friend", "get_head_img", "create_chatroom", "set_chatroom_name",
    "delete_member_from_chatroom", "add_member_into_chatroom", "send_raw_msg", "send_msg", "upload_file",
    "send_file", "send_image", "send_video", "send", "revoke", "dump_login_status", "load_login_status",
    "auto_login", "configured_reply", "msg_register", "run", "search_friends", "search_chatrooms", "search_mps",
    "set_logging",
]


def test_lib_itchat_imports_and_says_which_channel_it_needs(settings):
    from lib import itchat

    content: dict = {}
    exec("from lib.itchat.content import *", content)  # the plugins' way
    settings["channel_type"] = "terminal"
    assert [name for name in ITCHAT_FUNCTIONS if not callable(getattr(itchat, name, None))] == []
    names = ("TEXT", "PICTURE", "VOICE", "RECORDING", "SHARING", "ATTACHMENT", "INCOME_MSG")
    assert [content[n] for n in names[:-1]] == ["Text", "Picture", "Recording", "Recording", "Sharing", "Attachment"]
    assert len(content["INCOME_MSG"]) == 12
    assert itchat.instance.alive is False and itchat.instanceList == [itchat.instance]
    with pytest.raises(itchat.ItchatUnavailable) as info:
        itchat.send("hi", toUserName="filehelper")
    assert str(info.value) == (
        "lib.itchat.send needs the personal WeChat channel (channel_type 'wx', itchat), "
        "which this program does not have yet; the channel now is 'terminal'"
    )
    with pytest.raises(itchat.ItchatUnavailable, match="search_chatrooms"):
        itchat.search_chatrooms(name="群")
    with pytest.raises(AttributeError, match="instance.storageClass needs the personal WeChat channel"):
        itchat.instance.storageClass.userName  # noqa: B018
    settings["channel_type"] = "wework"
    with pytest.raises(itchat.ItchatUnavailable, match="for WeCom use channel.wework.run.wework"):
        itchat.send_image("a.png", toUserName="x")


# --------------------------------------------------------------------- translate


@pytest.fixture
def baidu(settings):
    with BaiduTranslateServer() as server:
        settings["baidu_translate_app_id"] = server.appid
        settings["baidu_translate_app_key"] = server.key
        yield server


def test_baidu_translator_signs_and_maps_languages(baidu):
    from translate.baidu.baidu_translate import BaiduTranslator
    from translate.factory import create_translator
    from translate.translator import Translator

    translator = BaiduTranslator(api_base=baidu.base_url)
    assert isinstance(translator, Translator)
    assert translator.translate("你好\n世界", to_lang="ja") == "jp:你好\njp:世界"
    assert baidu.requests[-1]["from"] == "auto" and baidu.requests[-1]["to"] == "jp"
    assert translator.translate("hello", from_lang="en", to_lang="zh") == "zh:hello"
    assert type(create_translator("baidu")) is BaiduTranslator


def test_baidu_translator_errors(baidu, settings, monkeypatch):
    from translate.baidu import baidu_translate
    from translate.factory import create_translator
    from translate.translator import TranslateError

    monkeypatch.setattr(baidu_translate, "RETRY_PAUSE_SECONDS", 0.001)
    translator = baidu_translate.BaiduTranslator(api_base=baidu.base_url)
    baidu.push_error("52001")
    assert translator.translate("hi", to_lang="zh") == "zh:hi"  # retried
    for _ in range(3):
        baidu.push_error("54003")
    with pytest.raises(TranslateError, match="54003: too many requests"):
        translator.translate("hi")
    settings["baidu_translate_app_key"] = "wrong"
    with pytest.raises(TranslateError, match="54001: signature error: check baidu_translate_app_key"):
        baidu_translate.BaiduTranslator(api_base=baidu.base_url).translate("hi")
    with pytest.raises(TranslateError, match="request failed"):
        baidu_translate.BaiduTranslator(api_base="http://127.0.0.1:9").translate("hi")
    settings["baidu_translate_app_id"] = ""
    with pytest.raises(TranslateError, match="baidu_translate_app_id and baidu_translate_app_key"):
        create_translator("baidu")
    with pytest.raises(RuntimeError, match="unknown translator 'nope'"):
        create_translator("nope")


# ------------------------------------------------------------ bot.openai, bot.linkai


@pytest.fixture
def openai_settings(settings):
    with OpenAIServer(api_keys={"sk-test", "Link_test"}) as server:
        settings.update(
            open_ai_api_base=server.base_url, open_ai_api_key="sk-test", proxy="", request_timeout=5,
            rate_limit_chatgpt=0, rate_limit_dalle=0, use_azure_chatgpt=False, model="gpt-4o-mini",
            text_to_image="dall-e-2", image_create_size="256x256",
            linkai_api_base=server.root_url, linkai_api_key="Link_test", linkai_app_code="app-42",
        )
        yield server


def test_open_ai_image_mixin_for_third_party_bots(openai_settings):
    from bot.bot import Bot
    from bot.openai.open_ai_image import OpenAIImage

    class PluginBot(Bot, OpenAIImage):  # how third-party bots use it
        def reply(self, query, context=None):
            raise NotImplementedError

    ok, url = PluginBot().create_img("a cat", 0)
    assert ok is True and url.startswith(openai_settings.root_url + "/images/")
    request = openai_settings.image_requests()[-1]
    assert request.json["prompt"] == "a cat" and request.headers["authorization"] == "Bearer sk-test"
    openai_settings.push_error(500)
    openai_settings.push_error(500)
    openai_settings.push_error(500)
    bot = PluginBot()
    bot._image_bot().retry_wait = 0.001
    ok, message = bot.create_img("a dog", 0)
    assert ok is False and isinstance(message, str) and message


def test_openai_modules_at_the_originals_paths(openai_settings):
    from bot.bot_factory import create_bot
    from bot.openai.open_ai_bot import OpenAIBot
    from bot.openai.open_ai_session import OpenAISession

    bot = create_bot("openAI")
    assert isinstance(bot, OpenAIBot)
    reply = bot.reply("hello", Context(ContextType.TEXT, "hello", {"session_id": "s1"}))
    assert reply.type == ReplyType.TEXT and reply.content.startswith("echo: hello")
    session = OpenAISession("s", system_prompt="be brief")
    session.add_query("hi")
    assert session.model == "text-davinci-003" and str(session) == "be brief\nQ: hi\nA: "


def test_linkai_bot_speaks_to_linkai(openai_settings):
    from bot.linkai.link_ai_bot import LinkAIBot

    bot = LinkAIBot()
    reply = bot.reply("你好", Context(ContextType.TEXT, "你好", {"session_id": "s1"}))
    assert reply.type == ReplyType.TEXT and reply.content.startswith("echo: 你好")
    request = openai_settings.chat_requests()[-1]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer Link_test"
    assert request.json["app_code"] == "app-42"
    # A plugin may name another LinkAI app for one question.
    bot.reply("hi", Context(ContextType.TEXT, "hi", {"session_id": "s2", "app_code": "other"}))
    assert openai_settings.chat_requests()[-1].json["app_code"] == "other"
    ok, url = bot.create_img("a cat")
    assert ok and openai_settings.image_requests()[-1].path == "/v1/images/generations"
    assert openai_settings.image_requests()[-1].headers["authorization"] == "Bearer Link_test"


# ------------------------------------------------------------------- ChatChannel


def test_chat_channel_has_the_originals_class_attributes():
    from channel.chat_channel import ChatChannel

    assert ChatChannel.futures == {} and ChatChannel.sessions == {}
    with ChatChannel.lock:  # plugins take it around reads of sessions/futures
        pass
    assert ChatChannel.name is None and ChatChannel.user_id is None
    assert isinstance(ChatChannel.NOT_SUPPORT_REPLYTYPE, list)
