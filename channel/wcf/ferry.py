"""The connection to the WeChatFerry service, through the `wcferry` package's `Wcf` client.

WeChatFerry runs inside PC WeChat on Windows (its spy, injected by `wcf.exe`) and serves an RPC:
nng Pair1 sockets over TCP, commands on `port`, received messages on `port + 1`. `Wcf()` without a
host starts that service on this machine (Windows only); `Wcf(host=..., port=...)` only connects,
which works from any system (the package is pure Python; on Linux only the service is missing).

`Wcf` is used as it is, except where its reactions do not fit a daemon, adapted here:

* a request that gets no answer (the service went away) made `Wcf` log and return an empty
  response, which reads as success for a send (status 0) and as "logged out" for is_login; any
  other socket error called `sys.exit`. Here both raise ServiceLost, so a send is retried and the
  channel can say what happened;
* requests are serialised: one Pair1 socket carries them, and the pipeline sends from several
  worker threads (`Wcf` is not thread-safe);
* a service that does not listen made `Wcf()` end the process (`os._exit(-2)`); it is probed
  first, so start-up can say which address it tried;
* starting the service here (no wcf_host, Windows): `Wcf._sdk_init` runs `wcf.exe start <port>`
  and ends the process with `os._exit(-1)` when that fails (PC WeChat not running, a WeChat
  version the spy does not support, no rights to inject), so the daemon vanished without a line.
  Here that raises the channel's start-up error, and the port is then probed until the service
  listens (else `Wcf` would `os._exit(-2)` on its dial);
* `chcp 65001` (a Windows console command) is only run on Windows;
* what `Wcf` logs (its "WCF" logger: a failed download, a timeout) goes to the project's log and
  run.log instead of Python's last-resort stderr output.
"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
from typing import Any

from channel.channel_factory import ChannelError
from common.log import logger

INSTALL_HINT = ("the `wcf` channel needs the wcferry package: pip install -r requirements-wcf.txt "
                "(it drives WeChatFerry, a hook of the Windows PC WeChat client)")


# Seconds the service started here has to listen on its port after wcf.exe reported success.
LOCAL_LISTEN_WAIT = 15.0
# wcf.exe's exit codes that mean the service runs: 0 started, 10 it was injected already.
_STARTED = (0, 10)


class ServiceLost(Exception):
    """The WeChatFerry service did not answer a request (it stopped, or WeChat quit)."""


class _ToProjectLog(logging.Handler):
    """Passes the records of wcferry's own logger on to the project's logger."""

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args = f"[wcf] wcferry: {record.getMessage()}", ()
        logger.handle(record)


def _route_wcferry_log() -> None:
    wcf_log = logging.getLogger("WCF")
    if not any(isinstance(h, _ToProjectLog) for h in wcf_log.handlers):
        wcf_log.addHandler(_ToProjectLog())
        wcf_log.setLevel(logging.INFO)
        wcf_log.propagate = False


def _import_wcferry() -> tuple[Any, Any, Any]:
    try:
        import pynng
        from wcferry import Wcf, wcf_pb2
    except ImportError as e:
        raise ChannelError(f"{INSTALL_HINT} ({e})") from None
    return Wcf, wcf_pb2, pynng


def listening(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start_local_service(root: str, port: int, debug: bool) -> None:
    """What `Wcf._sdk_init` does (run `wcf.exe start <port>` from the package folder, which
    injects the spy into PC WeChat), raising ChannelError instead of ending the process; then
    waits until the service listens on `port`."""
    exe = os.path.join(root, "wcf.exe")
    command = [exe, "start", str(port)] + (["debug"] if debug else [])
    try:
        code = subprocess.run(command, cwd=root).returncode
    except OSError as e:
        raise ChannelError(f"WeChatFerry could not be started here: {exe} did not run ({e}); reinstall wcferry "
                           f"(pip install -r requirements-wcf.txt) or set wcf_host to a running service") from None
    if code not in _STARTED:
        raise ChannelError(f"WeChatFerry could not be started in PC WeChat (wcf.exe start {port} exited with code "
                           f"{code}): PC WeChat must be running, be the version this wcferry supports, and the "
                           f"daemon may need to run as administrator; or set wcf_host to a service started by hand")
    deadline = time.monotonic() + LOCAL_LISTEN_WAIT
    while not listening("127.0.0.1", port, timeout=1.0):
        if time.monotonic() >= deadline:
            raise ChannelError(f"WeChatFerry was started in PC WeChat but does not listen on 127.0.0.1:{port} "
                               f"after {LOCAL_LISTEN_WAIT:g} s (wcf_port; another program on that port?)")
        time.sleep(0.2)


def ferry_class(rpc_timeout: float) -> type:
    """The `Wcf` subclass adapted as the module says."""
    Wcf, wcf_pb2, pynng = _import_wcferry()
    _route_wcferry_log()

    class Ferry(Wcf):
        def __init__(self, host: str, port: int) -> None:
            self._rpc_lock = threading.Lock()
            self._rpc_timeout_ms = max(100, int(rpc_timeout * 1000))
            super().__init__(host=host or None, port=port, debug=False, block=False)
            for sock in (self.cmd_socket, self.msg_socket):
                sock.send_timeout = sock.recv_timeout = self._rpc_timeout_ms

        def service_root(self) -> str:
            """The folder of wcf.exe (the package's)."""
            return self._wcf_root

        def _sdk_init(self, debug, port) -> None:
            start_local_service(self.service_root(), port, debug)

        def _sdk_destroy(self) -> int:
            root = self.service_root()
            return subprocess.run([os.path.join(root, "wcf.exe"), "stop"], cwd=root).returncode

        def _set_console_utf8(self) -> None:
            if os.name == "nt":
                super()._set_console_utf8()

        def _send_request(self, req):
            name = wcf_pb2.Functions.Name(req.func)
            with self._rpc_lock:
                try:
                    self.cmd_socket.send(req.SerializeToString())
                    data = self.cmd_socket.recv_msg().bytes
                except pynng.Timeout:
                    raise ServiceLost(f"no answer to {name} within {self._rpc_timeout_ms / 1000:g} s") from None
                except pynng.NNGException as e:
                    raise ServiceLost(f"{name}: {e}") from None
            rsp = wcf_pb2.Response()
            try:
                rsp.ParseFromString(data)
            except Exception as e:  # DecodeError: not the service at the other end
                raise ServiceLost(f"an answer to {name} that is not a WeChatFerry response ({e})") from None
            return rsp

        def cleanup(self) -> None:
            # Called at exit too (atexit, __del__): never raise, never wait long.
            if not getattr(self, "_is_running", False):
                return
            self._is_receiving_msg = False  # ends the package's receiving loop
            try:
                self._send_request(wcf_pb2.Request(func=wcf_pb2.FUNC_DISABLE_RECV_TXT))
            except Exception:
                pass
            for sock in (self.cmd_socket, self.msg_socket):
                try:
                    sock.close()
                except Exception:
                    pass
            if self._local_mode:
                try:
                    self._sdk_destroy()
                except Exception:
                    pass
            self._is_running = False

    return Ferry


def connect(host: str, port: int, rpc_timeout: float) -> Any:
    """A connected `Wcf` (a subclass adapted as the module says). With `host`, connects to the
    service there; without, starts it on this machine (Windows, PC WeChat installed).
    Raises ChannelError with what to do when that cannot work."""
    Ferry = ferry_class(rpc_timeout)
    if host:
        if not listening(host, port):
            raise ChannelError(f"no WeChatFerry service answers at {host}:{port} (wcf_host / wcf_port); start "
                               f"it on the Windows machine where PC WeChat runs, or clear wcf_host to start it here")
    elif os.name != "nt":
        raise ChannelError("the `wcf` channel starts WeChatFerry inside PC WeChat, which needs Windows; on this "
                           "system set wcf_host (and wcf_port) to a WeChatFerry service running elsewhere, or use "
                           "channel_type wx")
    try:
        return Ferry(host, port)
    except ChannelError:
        raise
    except Exception as e:
        raise ChannelError(f"cannot connect to WeChatFerry at {host or '127.0.0.1'}:{port}: {e}") from None
