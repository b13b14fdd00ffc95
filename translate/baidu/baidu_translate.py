"""Baidu's general text translation API (百度翻译开放平台, 通用文本翻译).

POST ``{api_base}/api/trans/vip/translate`` (form-encoded) with ``q``, ``from``, ``to``,
``appid``, ``salt`` and ``sign = md5(appid + q + salt + key)``. The answer is
``{"from", "to", "trans_result": [{"src", "dst"}, ...]}`` (one item per line of ``q``) or
``{"error_code", "error_msg"}``. Settings: ``baidu_translate_app_id``, ``baidu_translate_app_key``.

Differences from the original: https (it used plain http, so the signed query and the text
travelled in clear), a timeout, ISO 639-1 codes mapped to Baidu's own (ja -> jp, ko -> kor,
fr -> fra ...; the original passed them through), bounded retries with a pause on Baidu's
"retry" codes (the original retried 52001/52002 at once, in a tight loop), and errors that name
the code and what it means.
"""
from __future__ import annotations

import hashlib
import random
import time

import requests

from common.log import logger
from config import conf
from translate.translator import TranslateError, Translator

DEFAULT_API_BASE = "https://fanyi-api.baidu.com"
PATH = "/api/trans/vip/translate"
TIMEOUT_SECONDS = 15
RETRIES = 2
RETRY_PAUSE_SECONDS = 1.0
# 52001 timeout, 52002 system error, 54003 too many requests: Baidu says to try again.
_RETRY_CODES = {"52001", "52002", "54003"}
_ERRORS = {
    "52003": "unauthorised user: check baidu_translate_app_id",
    "54000": "a required parameter is empty",
    "54001": "signature error: check baidu_translate_app_key",
    "54003": "too many requests",
    "54004": "the account balance is used up",
    "54005": "long texts sent too often",
    "58000": "client IP not allowed",
    "58001": "target language not supported",
    "58002": "the service is turned off for this app",
    "90107": "the app is not verified",
}
# ISO 639-1 -> Baidu's code where they differ.
_BAIDU_CODES = {
    "ja": "jp", "ko": "kor", "fr": "fra", "es": "spa", "ar": "ara", "vi": "vie", "bg": "bul",
    "et": "est", "da": "dan", "fi": "fin", "ro": "rom", "sl": "slo", "sv": "swe",
    "zh-tw": "cht", "zh-hant": "cht", "zh-cn": "zh", "zh-hans": "zh",
}


def baidu_language(code: str) -> str:
    """Baidu's code for an ISO 639-1 language code ("" -> "auto")."""
    if not code:
        return "auto"
    return _BAIDU_CODES.get(code.lower(), code.lower())


class BaiduTranslator(Translator):
    def __init__(self, api_base: str | None = None) -> None:
        super().__init__()
        self.url = (api_base or DEFAULT_API_BASE).rstrip("/") + PATH
        self.appid = str(conf().get("baidu_translate_app_id") or "")
        self.appkey = str(conf().get("baidu_translate_app_key") or "")
        if not self.appid or not self.appkey:
            raise TranslateError("baidu translate needs baidu_translate_app_id and baidu_translate_app_key in config.json")
        self.http = requests.Session()

    @staticmethod
    def make_md5(s: str, encoding: str = "utf-8") -> str:
        return hashlib.md5(s.encode(encoding)).hexdigest()

    def translate(self, query: str, from_lang: str = "", to_lang: str = "en") -> str:
        if not query:
            return ""
        salt = str(random.randint(32768, 65536))
        form = {
            "q": query,
            "from": baidu_language(from_lang),
            "to": baidu_language(to_lang) if to_lang else "en",
            "appid": self.appid,
            "salt": salt,
            "sign": self.make_md5(self.appid + query + salt + self.appkey),
        }
        for attempt in range(RETRIES + 1):
            result = self._post(form)
            code = str(result.get("error_code", "52000"))
            if code == "52000":
                break
            if code in _RETRY_CODES and attempt < RETRIES:
                logger.warning(f"[BaiduTranslate] error {code}, retrying")
                time.sleep(RETRY_PAUSE_SECONDS * (attempt + 1))
                continue
            meaning = _ERRORS.get(code, result.get("error_msg") or "unknown error")
            raise TranslateError(f"baidu translate error {code}: {meaning}")
        items = result.get("trans_result")
        if not isinstance(items, list) or not all(isinstance(i, dict) and "dst" in i for i in items):
            raise TranslateError("baidu translate answered without trans_result")
        return "\n".join(str(item["dst"]) for item in items)

    def _post(self, form: dict) -> dict:
        try:
            resp = self.http.post(self.url, data=form, timeout=TIMEOUT_SECONDS)
            resp.raise_for_status()
            result = resp.json()
        except requests.RequestException as e:
            raise TranslateError(f"baidu translate request failed: {e}") from None
        except ValueError:
            raise TranslateError("baidu translate answered something that is not JSON") from None
        if not isinstance(result, dict):
            raise TranslateError("baidu translate answered something that is not a JSON object")
        return result
