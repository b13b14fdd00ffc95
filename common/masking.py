"""Which names hold secrets, and how a secret is shown in logs."""
from __future__ import annotations

import re
from typing import Any

SECRET_WORDS = ("key", "secret", "token", "password")
# A proxy setting is a URL whose password part is the secret; the rest (host, port)
# is what a reader of the log needs to see.
URL_WORDS = ("proxy",)

MASK = "*" * 5

# user:password@ after a scheme (http://, socks5h:// ...); the password is what is hidden.
_URL_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)(?P<password>[^\s/]+)@")
# The same without a scheme, for values known to be proxies ("user:pass@host:port").
_BARE_USERINFO = re.compile(r"^(?P<head>[^\s:/@]*:)(?P<password>[^\s/]+)@")


def is_secret_key(name: Any) -> bool:
    lowered = str(name).lower()
    return any(word in lowered for word in SECRET_WORDS)


def is_url_key(name: Any) -> bool:
    lowered = str(name).lower()
    return any(word in lowered for word in URL_WORDS)


def mask_secret(value: str, name: Any = "") -> str:
    """First and last 3 characters only (enough to tell two keys apart); a short secret,
    and a password of any length (chosen by a person, so its ends give much of it away),
    is hidden whole."""
    if len(value) <= 8 or "password" in str(name).lower():
        return MASK
    return value[:3] + MASK + value[-3:]


def mask_urls(text: str) -> str:
    """`text` with the password of every URL in it (scheme://user:password@host) hidden."""
    return _URL_USERINFO.sub(lambda m: m.group("head") + MASK + "@", text)


def mask_value(name: Any, value: Any) -> Any:
    """`value` as it may be logged under the setting (or field) `name`: a secret masked,
    the password of a URL hidden, anything else as it is."""
    if not isinstance(value, str) or not value:
        return value
    if is_secret_key(name):
        return mask_secret(value, name)
    if is_url_key(name):
        value = _BARE_USERINFO.sub(lambda m: m.group("head") + MASK + "@", value)
    return mask_urls(value)


# Commands whose argument is a secret: godcmd's password and the per-user API key. Their
# text is logged at DEBUG like any message, and must not carry the secret into run.log.
_SECRET_COMMAND = re.compile(r"^(?P<head>\s*#\s*(?:auth|认证|set_openai_api_key)\s+)\S.*$", re.IGNORECASE | re.DOTALL)


def mask_command(text: Any) -> Any:
    """A message text with the argument of a secret-carrying `#` command hidden."""
    if not isinstance(text, str):
        return text
    return _SECRET_COMMAND.sub(lambda m: m.group("head") + MASK, text)
