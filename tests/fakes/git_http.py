"""Git repositories served over HTTP on 127.0.0.1, for plugin-install tests (no network).

`DumbGitServer` serves a folder of repositories as static files over plain http (git's
"dumb" protocol, which dulwich can clone). `RedirectingHttpsServer` answers every request
over https (a trustme certificate) with a redirect to another base URL.
"""
from __future__ import annotations

import functools
import http.server
import ssl
import threading
from pathlib import Path

from dulwich.repo import Repo
from dulwich.server import update_server_info


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def _tls(ca) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


class _Server:
    def __init__(self, handler, ca=None) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if ca is not None:
            self.httpd.socket = _tls(ca).wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if ca is not None else "http"
        self.requests: list[str] = []
        self.httpd.requests = self.requests
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class DumbGitServer(_Server):
    """http://127.0.0.1:<port>/<name>.git/ serves the repository <folder>/<name> (https
    with a certificate of the trustme CA `ca`)."""

    def __init__(self, folder: Path, ca=None) -> None:
        class Handler(_Quiet):
            def do_GET(self):
                self.server.requests.append(self.path)
                super().do_GET()

            def translate_path(self, path):
                # /<name>.git/... -> <folder>/<name>/.git/...
                head, sep, rest = path.lstrip("/").partition(".git/")
                return super().translate_path(f"/{head}/.git/{rest}" if sep else path)

        super().__init__(functools.partial(Handler, directory=str(folder)), ca)
        self.base_url = f"{self.scheme}://127.0.0.1:{self.port}"

    @staticmethod
    def publish(repo_dir: Path) -> None:
        """Write the index files the dumb protocol needs (git update-server-info)."""
        with Repo(str(repo_dir)) as repo:
            update_server_info(repo)


class RedirectingHttpsServer(_Server):
    """https://localhost:<port>/<path> answers 301 to <target>/<path> (query kept)."""

    def __init__(self, target: str, ca) -> None:
        class Handler(_Quiet):
            def do_GET(self):
                self.server.requests.append(self.path)
                self.send_response(301)
                self.send_header("Location", target + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET

        super().__init__(Handler, ca)
        self.base_url = f"https://127.0.0.1:{self.port}"
