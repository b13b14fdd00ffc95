"""Which names hold secrets, and how a secret is shown in logs."""
from __future__ import annotations

from typing import Any

SECRET_WORDS = ("key", "secret", "token", "password")


def is_secret_key(name: Any) -> bool:
    lowered = str(name).lower()
    return any(word in lowered for word in SECRET_WORDS)


def mask_secret(value: str) -> str:
    """First and last 3 characters only; a short secret is hidden whole."""
    if len(value) <= 8:
        return "*" * 5
    return value[:3] + "*" * 5 + value[-3:]


def mask_value(name: Any, value: Any) -> Any:
    """`value` masked when `name` names a secret and it is a non-empty string."""
    if is_secret_key(name) and isinstance(value, str) and value:
        return mask_secret(value)
    return value
