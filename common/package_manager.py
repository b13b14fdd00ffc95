"""Installing Python packages for plugins (``#installp`` / ``#updatep``).

pip always runs in a child process of the same interpreter
(``[sys.executable, "-m", "pip", ...]``), never in-process: pip's own logging
setup and its ``sys.exit`` calls then cannot disturb the daemon, and a pip that
hangs on the network is stopped by a timeout.
"""
from __future__ import annotations

import os
import subprocess
import sys

from common.log import logger

# A plugin's requirements rarely take long; a stuck index or proxy must not hold a
# worker thread forever.
PIP_TIMEOUT_SECONDS = 900

# How much of pip's output an error message quotes.
_TAIL_LINES = 3


class PackageInstallError(Exception):
    """pip could not install what was asked; the message says why, in one or two lines."""


def _pip_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", *args]


def _pip_env() -> dict[str, str]:
    env = dict(os.environ)
    # No "a new pip is available" check: it is network traffic and noise in the message.
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env


def _tail(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    # pip puts the reason on the lines starting with ERROR; fall back to the last lines.
    errors = [line for line in lines if line.startswith("ERROR")]
    return "\n".join((errors or lines)[-_TAIL_LINES:])


def _run_pip(args: list[str], timeout: float) -> None:
    command = _pip_command(*args)
    logger.info(f"[package] running: {' '.join(command)}")
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            env=_pip_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise PackageInstallError(f"pip 在 {int(timeout)} 秒内没有完成") from e
    except OSError as e:
        raise PackageInstallError(f"无法运行 pip：{e}") from e
    if result.returncode != 0:
        detail = _tail(result.stderr) or _tail(result.stdout) or f"exit code {result.returncode}"
        logger.error(f"[package] pip failed ({result.returncode}):\n{result.stderr or result.stdout}")
        raise PackageInstallError(f"pip 安装依赖失败：{detail}")
    logger.debug(f"[package] pip output:\n{result.stdout}")


def requirement_lines(path: str) -> list[str]:
    """The lines of a requirements file that ask for something (not blank, not comments)."""
    with open(path, "r", encoding="utf-8-sig") as f:
        lines = [line.strip() for line in f]
    return [line for line in lines if line and not line.startswith("#")]


def install(package: str, timeout: float = PIP_TIMEOUT_SECONDS) -> None:
    """``pip install <package>``; raises PackageInstallError."""
    if not package or package.startswith("-"):
        raise PackageInstallError(f"不是有效的包名：{package!r}")
    _run_pip(["install", package], timeout)


def install_requirements(path: str, timeout: float = PIP_TIMEOUT_SECONDS) -> bool:
    """``pip install -r <path>``. Returns False when the file asks for nothing (pip is
    not run at all), True after a successful install; raises PackageInstallError.

    Unlike the original, ``--upgrade`` is not passed: a plugin listing ``requests``
    must not upgrade the daemon's own ``requests`` when the installed one already
    satisfies it.
    """
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        return False
    if not requirement_lines(path):
        logger.info(f"[package] {path} lists no package, nothing to install")
        return False
    _run_pip(["install", "-r", path], timeout)
    return True


def check_dulwich() -> None:
    """Make sure dulwich (the git client used to install plugins) can be imported.

    It is in requirements.txt; like the original, an installation that lacks it gets
    one ``pip install dulwich`` attempt. Raises ImportError when it stays missing.
    """
    try:
        import dulwich  # noqa: F401

        return
    except ImportError:
        logger.warning("[package] dulwich is missing, trying to install it")
    try:
        install("dulwich")
    except PackageInstallError as e:
        raise ImportError(f"dulwich is not installed and could not be installed: {e}") from e
    import importlib

    importlib.invalidate_caches()
    try:
        import dulwich  # noqa: F401,F811
    except ImportError as e:
        raise ImportError("dulwich was installed but cannot be imported; restart the program") from e
