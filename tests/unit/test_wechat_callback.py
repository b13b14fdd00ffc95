"""common/wechat_callback.py: the checks every WeChat-family callback passes before its content is used."""
from __future__ import annotations

import time

import pytest

from channel.wechatmp.reply_xml import text_reply
from common.wechat_callback import CallbackRefused, Envelope, check_clock, check_signature, parse_xml, sha1_signature
from tests.fakes.wechat_platform import hostile, random_aes_key
from tests.fakes.wechat_platform.crypto import Envelope as PlatformEnvelope


def test_a_matching_signature_passes_and_any_other_is_refused_with_403():
    good = sha1_signature("token", "1700000000", "nonce")
    check_signature(good, "token", "1700000000", "nonce")
    check_signature(good.upper(), "token", "1700000000", "nonce")  # hex case does not matter
    for forged in ("0" * 40, "", good[:-1], "签名" * 20, good + "\u00e9"):
        with pytest.raises(CallbackRefused) as refused:
            check_signature(forged, "token", "1700000000", "nonce")
        assert refused.value.status == 403


def test_timestamps_far_from_the_clock_are_refused_both_ways():
    now = 1_800_000_000
    check_clock(str(now - 299), now=now)
    check_clock(str(now + 299), now=now)
    for bad in (str(now - 301), str(now + 301), "soon", ""):
        with pytest.raises(CallbackRefused) as refused:
            check_clock(bad, now=now)
        assert refused.value.status == 403


@pytest.mark.parametrize("body", [
    hostile.entity_bomb("gh_x", "u"), hostile.external_entity("gh_x", "u"), hostile.NON_XML_BODY.decode(),
    hostile.TRUNCATED_XML, "<other>no xml root</other>", "<xml>just text</xml>",
], ids=["entity-bomb", "external-entity", "json", "truncated", "wrong-root", "no-fields"])
def test_hostile_or_broken_xml_is_refused_with_400(body):
    with pytest.raises(CallbackRefused) as refused:
        parse_xml(body)
    assert refused.value.status == 400


def test_xml_fields_are_read():
    fields = parse_xml("<xml><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[a ]]]]><![CDATA[> b]]></Content></xml>")
    assert fields == {"MsgType": "text", "Content": "a ]]> b"}


def test_the_envelope_opens_what_the_platform_sealed_and_refuses_another_receive_id():
    key = random_aes_key()
    platform = PlatformEnvelope("tok", key, "wxAPPID")
    encrypt = platform.encrypt("<xml><Content>hi</Content></xml>")
    timestamp, nonce = str(int(time.time())), "123"
    ours = Envelope("tok", key, "wxAPPID")
    assert ours.open(platform.msg_signature(timestamp, nonce, encrypt), timestamp, nonce, encrypt) == \
        "<xml><Content>hi</Content></xml>"
    other = platform.encrypt("<xml/>", "wxOTHER")
    with pytest.raises(CallbackRefused) as refused:
        ours.open(platform.msg_signature(timestamp, nonce, other), timestamp, nonce, other)
    assert refused.value.status == 403
    with pytest.raises(ValueError):
        Envelope("tok", key[:42], "wxAPPID")


def test_a_reply_never_carries_characters_xml_forbids():
    reply = text_reply("user", "gh_x", "\x1b[31mred\x1b[0m and a bell\x07 and ]]> end")
    fields = parse_xml(reply)
    assert fields["Content"] == "[31mred[0m and a bell and ]]> end"
