"""Fake of the native module `ntwork.wc.wcprobe`, with the real signatures. Everything is answered by
the in-memory WeCom client of `ntwork.simulator`."""
from ntwork.simulator import SIM


def open(smart=True) -> int:  # noqa: A001 - the native name
    """Start (smart=False) or attach to (smart=True) WeCom; returns its pid, 0 on failure."""
    return SIM.wire_open(smart)


def attach(pid) -> bool:
    return SIM.wire_attach(pid)


def detach(pid) -> bool:
    return SIM.wire_detach(pid)


def exit() -> bool:  # noqa: A001 - the native name
    return SIM.wire_exit()


def send(client_id, data) -> bool:
    return SIM.wire_send(client_id, data)


def init_env(helper_path, exe_path='') -> bool:
    return True


def init_callback(accept_cb, recv_cb, close_cb) -> bool:
    SIM.set_callbacks(accept_cb, recv_cb, close_cb)
    return True


def get_install_wework_version() -> str:
    return SIM.installed_version()
