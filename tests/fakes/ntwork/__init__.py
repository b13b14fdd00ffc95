"""ntwork 0.1.3 (PC WeCom hook) for Linux tests.

Import-compatible with the real package: same modules, names and values. What sits behind the
native `wcprobe` module is the in-memory WeCom client of `ntwork.simulator`, which only tests import
directly.

At the top level: WeWork, wcprobe, conf, __version__, every notify_type id, every exception, and the
three module functions below. send_type ids are intentionally not lifted to this level.
"""
from . import conf
from .const.notify_type import *  # noqa: F401,F403
from .exception import *  # noqa: F401,F403
from .core.wework import WeWork
from .wc import wcprobe

__version__ = conf.VERSION


def set_wework_exe_path(wework_exe_path=None, wework_version=None):
    """Choose the WeCom executable and/or version. Read once, when the first WeWork() builds the
    manager, so later calls have no effect on it."""
    conf.DEFAULT_WEWORK_EXE_PATH = wework_exe_path
    conf.DEFAULT_WEWORK_VERSION = wework_version
    from .simulator import SIM
    SIM.record("set_wework_exe_path", None,
               {"wework_exe_path": wework_exe_path, "wework_version": wework_version}, None)


def get_install_wework_version():
    return wcprobe.get_install_wework_version()


def exit_():
    """Unhook every client (the simulator closes them at once). Returns None, whatever wcprobe says."""
    wcprobe.exit()


def _report_import():
    # Simulator addition: tell the simulator which log levels the loggers picked up at import.
    from .simulator import SIM
    from .utils.logger import LEVELS_SEEN
    SIM.note_import(dict(LEVELS_SEEN))


_report_import()
del _report_import
