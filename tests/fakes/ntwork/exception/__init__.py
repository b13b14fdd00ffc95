"""Errors raised by the package. They carry no arguments; the class alone says what went wrong."""

__all__ = ["WeWorkVersionNotMatchError", "WeWorkBindError", "WeWorkNotLoginError"]


class WeWorkVersionNotMatchError(Exception):
    """No injection helper exists for the installed WeCom version (raised by the first WeWork())."""


class WeWorkBindError(Exception):
    """A READY notification named a pid that no unbound WeWork instance has opened."""


class WeWorkNotLoginError(Exception):
    """A request was made before MT_USER_LOGIN_MSG arrived (or after logout / quit)."""
