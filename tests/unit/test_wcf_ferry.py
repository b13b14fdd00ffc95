"""Starting WeChatFerry on this machine (no wcf_host): the `wcferry` package's own start-up
(`Wcf.__init__` in local mode, which calls `_sdk_init` to run `wcf.exe start <port>`, then dials
the port) with the adapted client of channel/wcf/ferry.py. The package's `wcf.exe` only exists on
Windows; here the service root is pointed at a stub `wcf.exe` (a script that exits with the code
a test chooses), and the service behind the port is the fake of tests/fakes/wcf. Without the
adaptation the package ends the process with os._exit(-1) / os._exit(-2)."""
from __future__ import annotations

import os
import stat
import sys

import pytest

from channel.channel_factory import ChannelError
from channel.wcf import ferry
from tests.fakes.wcf import WcfService, free_port_pair

pytestmark = pytest.mark.skipif(os.name == "nt", reason="the stub wcf.exe is a POSIX script")


def stub_root(folder, code: int) -> str:
    root = os.path.join(str(folder), "wcferry")
    os.makedirs(root, exist_ok=True)
    exe = os.path.join(root, "wcf.exe")
    with open(exe, "w") as f:
        f.write(f"#!{sys.executable}\nimport sys\nopen(sys.argv[0] + '.calls', 'a').write(' '.join(sys.argv[1:]) "
                f"+ '\\n')\nsys.exit({code} if sys.argv[1] == 'start' else 0)\n")
    os.chmod(exe, os.stat(exe).st_mode | stat.S_IEXEC)
    return root


def local_ferry(root: str, port: int):
    class Local(ferry.ferry_class(1.0)):
        def service_root(self) -> str:
            return root

    return Local("", port)


def calls(root: str) -> list[str]:
    with open(os.path.join(root, "wcf.exe.calls")) as f:
        return f.read().splitlines()


def test_a_failed_injection_raises_the_start_up_error_instead_of_ending_the_process(tmp_path):
    root, port = stub_root(tmp_path, 1), free_port_pair()
    with pytest.raises(ChannelError, match=rf"wcf\.exe start {port} exited with code 1.*PC WeChat must be running"):
        local_ferry(root, port)
    assert calls(root) == [f"start {port}"]


def test_a_service_that_never_listens_after_a_good_start_raises_instead_of_ending_the_process(tmp_path, monkeypatch):
    monkeypatch.setattr(ferry, "LOCAL_LISTEN_WAIT", 0.5)
    root, port = stub_root(tmp_path, 0), free_port_pair()
    with pytest.raises(ChannelError, match=rf"does not listen on 127\.0\.0\.1:{port}"):
        local_ferry(root, port)


def test_no_wcf_exe_raises_the_start_up_error(tmp_path):
    with pytest.raises(ChannelError, match="wcf.exe did not run"):
        local_ferry(str(tmp_path), free_port_pair())


@pytest.mark.parametrize("code", [0, 10])  # started; already injected
def test_a_started_service_is_connected_and_stopped_with_wcf_exe(tmp_path, code):
    service = WcfService(tmp_path / "wechat").start()
    root = stub_root(tmp_path, code)
    try:
        wcf = local_ferry(root, service.port)
        assert wcf.is_login() and wcf.get_self_wxid() == "wxid_bot"
        wcf.cleanup()
    finally:
        service.stop()
    assert calls(root) == [f"start {service.port}", "stop"]
