"""#installp / #updatep / #uninstallp and PluginManager.install_plugin / update_plugin /
uninstall_plugin, with git repositories made in the test by dulwich (no network)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dulwich import porcelain
from dulwich.repo import Repo

from bridge.reply import ReplyType
from common import package_manager
from plugins import PluginManager
from tests.unit.test_godcmd import env  # noqa: F401 - a fixture

WEATHER = '''
import plugins
from plugins import *
from bridge.reply import Reply, ReplyType


@plugins.register(name="Weather", desire_priority=5, desc="tells the weather", version="{version}", author="tests")
class Weather(Plugin):
    def __init__(self):
        super().__init__()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context

    def on_handle_context(self, e_context):
        if e_context["context"].content == "天气":
            e_context["reply"] = Reply(ReplyType.TEXT, "{answer}")
            e_context.action = EventAction.BREAK_PASS

    def get_help_text(self, **kwargs):
        return "发送“天气”"
'''

AUTHOR = b"Tests <tests@example.com>"


def plugin_files(answer: str = "晴", version: str = "1.0", requirements: str = "# no packages needed\n") -> dict[str, str]:
    return {
        "__init__.py": "from .weather import *\n",
        "weather.py": textwrap.dedent(WEATHER.format(answer=answer, version=version)),
        "requirements.txt": requirements,
        "README.md": "天气插件\n",
    }


def commit(repo_dir: Path, files: dict[str, str], message: str = "change") -> bytes:
    for name, text in files.items():
        (repo_dir / name).write_text(text, encoding="utf-8")
    porcelain.add(str(repo_dir), paths=[str(repo_dir / name) for name in files])
    return porcelain.commit(str(repo_dir), message=message.encode(), author=AUTHOR, committer=AUTHOR)


def make_repo(parent: Path, name: str, files: dict[str, str]) -> Path:
    repo_dir = parent / name
    repo_dir.mkdir(parents=True)
    porcelain.init(str(repo_dir))
    commit(repo_dir, files, "first version")
    return repo_dir


@pytest.fixture
def repos(tmp_path) -> Path:
    folder = tmp_path / "upstream"
    folder.mkdir()
    return folder


@pytest.fixture
def local_on(env):
    env.settings["plugin_install_allow_local"] = True
    return env


def listing(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


BASELINE = ["config.json", "plugins.json", "tp_greeter"]


# ----------------------------------------------------------------------- installing


def test_install_from_a_local_repository_then_scan_and_use(local_on, repos):
    env = local_on.start()
    source = make_repo(repos, "tp_weather", plugin_files())
    rtype, text = env.admin(f"#installp {source}")
    assert rtype == ReplyType.INFO and text.startswith("插件 tp_weather 已安装") and "#scanp" in text
    installed = env.root / "tp_weather"
    assert (installed / "weather.py").is_file() and (installed / ".git").is_dir()
    assert listing(env.root) == sorted(BASELINE + ["tp_weather"])  # no staging folder left
    assert env.say("天气")[0][2] == "echo: 天气 (turn 1)"  # not loaded before #scanp

    assert env.admin("#scanp") == (ReplyType.INFO, "插件扫描完成\n发现新插件：\nWeather_v1.0")
    assert env.say("天气") == [("alice", ReplyType.TEXT, "晴")]
    saved = json.loads((env.root / "plugins.json").read_text(encoding="utf-8"))
    assert saved["plugins"]["Weather"] == {"enabled": True, "priority": 5}
    assert "Weather_v1.0 5 - 已启用\n" in env.admin("#plist")[1]


def test_install_from_a_file_url(local_on, repos):
    env = local_on.start()
    source = make_repo(repos, "tp_weather", plugin_files())
    rtype, _ = env.admin(f"#安装插件 {source.as_uri()}")
    assert rtype == ReplyType.INFO
    assert (env.root / "tp_weather" / "__init__.py").is_file()


def test_local_sources_are_refused_when_the_setting_is_off(env, repos):
    env.start()
    source = make_repo(repos, "tp_weather", plugin_files())
    for arg in (str(source), source.as_uri()):
        rtype, text = env.admin(f"#installp {arg}")
        assert rtype == ReplyType.ERROR and "plugin_install_allow_local" in text, arg
    assert listing(env.root) == BASELINE


@pytest.mark.parametrize(
    "source, why",
    [
        ("ftp://example.com/owner/plugin.git", "https://"),
        ("http://github.com/owner/plugin.git", "不加密"),
        ("git://github.com/owner/plugin.git", "不加密"),
        ("-oProxyCommand=touch /tmp/pwned", "“-”开头"),
        ("--upload-pack=touch", "“-”开头"),
        ("git@-oProxyCommand=x:owner/plugin.git", "git 仓库地址"),
        ("ssh://-oProxyCommand=x/owner/plugin.git", "主机名"),
        ("https://", "主机名"),
        ("https://github.com/", "仓库路径"),
        ("https://github.com/owner/plugin.git\nrm", "空格"),
        ("not-a-url-or-a-name", "source.json"),
        ("", "请提供"),
        ("https://github.com/owner/bad.name.git", "不能用作插件文件夹名"),
        ("https://github.com/owner/plugin_manager.git", "不能用作插件文件夹名"),
        ("https://github.com/owner/9lives.git", "不能用作插件文件夹名"),
    ],
)
def test_bad_sources_are_refused_before_anything_is_fetched(env, monkeypatch, source, why):
    env.start()

    def no_clone(*args, **kwargs):
        raise AssertionError("nothing may be cloned")

    monkeypatch.setattr(porcelain, "clone", no_clone)
    ok, text = PluginManager().install_plugin(source)
    assert not ok and text.startswith("安装失败") and why in text, text
    assert listing(env.root) == BASELINE


def test_refused_even_with_local_installs_allowed(local_on, monkeypatch):
    env = local_on.start()
    monkeypatch.setattr(porcelain, "clone", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no clone")))
    for source in ("file:///no/such/folder", "file://otherhost/x", "-rf", "/no/such/folder"):
        ok, text = PluginManager().install_plugin(source)
        assert not ok, source
    assert listing(env.root) == BASELINE


def test_source_json_names_and_urls(env):
    env.start()
    pm = PluginManager()
    assert pm._resolve_install_source("sdwebui") == ("https://github.com/lanvent/plugin_sdwebui.git", "plugin_sdwebui", False)
    assert pm._resolve_install_source("APILOT")[1] == "Apilot"
    assert pm._resolve_install_source("git@github.com:owner/my_plugin.git") == ("git@github.com:owner/my_plugin.git", "my_plugin", False)
    assert pm._resolve_install_source("ssh://git@example.com:2222/owner/other.git")[1] == "other"
    assert pm._resolve_install_source("https://gitee.com/owner/plugin_x")[1] == "plugin_x"
    # A source.json next to plugins.json adds (or replaces) names.
    (env.root / "source.json").write_text(
        json.dumps({"repo": {"mine": {"url": "https://example.com/me/mine.git", "desc": "x"},
                             "plain": {"url": "http://example.com/me/plain.git", "desc": "x"}}}),
        encoding="utf-8",
    )
    assert pm._resolve_install_source("mine") == ("https://example.com/me/mine.git", "mine", False)
    ok, text = pm.install_plugin("plain")
    assert not ok and "source.json" in text and "https://" in text
    shipped = json.loads((Path(__file__).resolve().parents[2] / "plugins" / "source.json").read_text(encoding="utf-8"))
    assert {"sdwebui", "replicate", "summary", "timetask", "Apilot", "GroupInvitation", "send_msg"} <= set(shipped["repo"])
    assert all(entry["url"].startswith("https://") and entry["desc"] for entry in shipped["repo"].values())


def test_a_repository_without_init_leaves_nothing_behind(local_on, repos):
    env = local_on.start()
    files = plugin_files()
    del files["__init__.py"]
    source = make_repo(repos, "tp_weather", files)
    rtype, text = env.admin(f"#installp {source}")
    assert rtype == ReplyType.ERROR and "__init__.py" in text
    assert listing(env.root) == BASELINE


def test_a_failing_requirements_install_leaves_nothing_behind(local_on, repos):
    env = local_on.start()
    source = make_repo(repos, "tp_weather", plugin_files(requirements="this is === not a requirement\n"))
    rtype, text = env.admin(f"#installp {source}")
    assert rtype == ReplyType.ERROR and "pip" in text
    assert listing(env.root) == BASELINE


def test_a_failing_clone_leaves_nothing_behind(local_on, repos):
    env = local_on.start()
    not_a_repo = repos / "tp_weather"
    not_a_repo.mkdir()
    (not_a_repo / "__init__.py").write_text("", encoding="utf-8")
    rtype, text = env.admin(f"#installp {not_a_repo}")
    assert rtype == ReplyType.ERROR and "无法克隆" in text
    assert listing(env.root) == BASELINE


def test_an_existing_plugin_folder_is_never_overwritten(local_on, repos):
    env = local_on.start()
    first = make_repo(repos, "tp_weather", plugin_files(answer="晴"))
    assert env.admin(f"#installp {first}")[0] == ReplyType.INFO
    other = make_repo(repos / "elsewhere", "TP_Weather", plugin_files(answer="雨"))
    rtype, text = env.admin(f"#installp {other}")
    assert rtype == ReplyType.ERROR and "已存在" in text
    # A bundled plugin's folder name is taken too.
    clash = make_repo(repos / "third", "godcmd", plugin_files())
    assert env.admin(f"#installp {clash}")[0] == ReplyType.ERROR
    assert "晴" in (env.root / "tp_weather" / "weather.py").read_text(encoding="utf-8")
    assert listing(env.root) == sorted(BASELINE + ["tp_weather"])


# ------------------------------------------------------------------------- updating


def test_update_pulls_the_new_version_and_scanp_loads_it(local_on, repos):
    env = local_on.start()
    source = make_repo(repos, "tp_weather", plugin_files())
    env.admin(f"#installp {source}")
    env.admin("#scanp")
    assert env.admin("#updatep weather") == (ReplyType.INFO, "插件 Weather 已是最新版本")

    commit(source, plugin_files(answer="多云", version="1.1"), "second version")
    rtype, text = env.admin("#更新插件 weather")
    assert rtype == ReplyType.INFO and "已更新" in text and "#scanp" in text
    assert "多云" in (env.root / "tp_weather" / "weather.py").read_text(encoding="utf-8")
    env.admin("#scanp")
    assert env.say("天气") == [("alice", ReplyType.TEXT, "多云")]
    assert "Weather_v1.1" in env.admin("#plist")[1]


def test_update_goes_back_when_the_new_requirements_fail(local_on, repos):
    env = local_on.start()
    source = make_repo(repos, "tp_weather", plugin_files())
    env.admin(f"#installp {source}")
    env.admin("#scanp")
    installed = env.root / "tp_weather"
    with Repo(str(installed)) as r:
        before = r.head()
    commit(source, plugin_files(answer="雪", requirements="not === valid\n"), "broken requirements")
    rtype, text = env.admin("#updatep weather")
    assert rtype == ReplyType.ERROR and "已退回原版本" in text
    with Repo(str(installed)) as r:
        assert r.head() == before
    assert "晴" in (installed / "weather.py").read_text(encoding="utf-8")
    env.admin("#scanp")
    assert env.say("天气") == [("alice", ReplyType.TEXT, "晴")]


def test_update_is_refused_for_builtins_unknown_and_non_git_plugins(env):
    env.start()
    pm = PluginManager()
    assert pm.update_plugin("godcmd") == (False, "预置插件随主程序一起更新，不能单独更新")
    for builtin in ("hello", "role", "banwords", "finish", "dungeon"):
        ok, _ = pm.update_plugin(builtin)
        assert not ok, builtin
    assert pm.update_plugin("nosuch") == (False, "插件不存在")
    ok, text = pm.update_plugin("greeter")
    assert not ok and "不是用 git 安装的" in text


# ----------------------------------------------------------------------- uninstalling


def test_uninstall_removes_the_plugin_everywhere(local_on, repos):
    env = local_on.start()
    source = make_repo(repos, "tp_weather", plugin_files())
    env.admin(f"#installp {source}")
    env.admin("#scanp")
    assert env.say("天气")[0][2] == "晴"

    assert env.admin("#uninstallp weather") == (ReplyType.INFO, "插件 Weather 已卸载")
    assert listing(env.root) == BASELINE
    assert env.say("天气")[0][2] == "echo: 天气 (turn 1)"
    pm = PluginManager()
    assert "WEATHER" not in pm.plugins and "WEATHER" not in pm.instances
    assert all("WEATHER" not in names for names in pm.listening_plugins.values())
    assert not any(name.startswith("plugins.tp_weather") for name in sys.modules)
    saved = json.loads((env.root / "plugins.json").read_text(encoding="utf-8"))
    assert "Weather" not in saved["plugins"]
    assert "Weather" not in env.admin("#plist")[1]

    # And it can come back.
    assert env.admin(f"#installp {source}")[0] == ReplyType.INFO
    assert env.admin("#scanp") == (ReplyType.INFO, "插件扫描完成\n发现新插件：\nWeather_v1.0")
    assert env.say("天气")[0][2] == "晴"


def test_uninstall_of_a_plugin_not_installed_by_git(env):
    env.start()
    assert env.admin("#卸载插件 greeter") == (ReplyType.INFO, "插件 Greeter 已卸载")
    assert listing(env.root) == ["config.json", "plugins.json"]
    assert env.say("ping")[0][2] == "echo: ping (turn 1)"


def test_uninstall_is_refused_for_builtins(env):
    env.start()
    ok, text = PluginManager().uninstall_plugin("godcmd")
    assert not ok and "#disablep" in text
    assert PluginManager().plugins["GODCMD"].enabled
    assert (Path(PluginManager().plugins["GODCMD"].path) / "godcmd.py").is_file()


# ------------------------------------------------------------------ package manager


def test_install_requirements_runs_pip_of_this_interpreter_without_a_shell(tmp_path, monkeypatch):
    calls = []

    def fake_run(command, **kwargs):
        calls.append((command, kwargs))
        return subprocess.CompletedProcess(command, 0, stdout="ok", stderr="")

    monkeypatch.setattr(package_manager.subprocess, "run", fake_run)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# only a comment\n\n", encoding="utf-8")
    assert package_manager.install_requirements(str(requirements)) is False
    assert package_manager.install_requirements(str(tmp_path / "missing.txt")) is False
    assert calls == []

    requirements.write_text("# a comment\nsomething-small>=1.0\n", encoding="utf-8")
    assert package_manager.install_requirements(str(requirements)) is True
    [(command, kwargs)] = calls
    assert command == [sys.executable, "-m", "pip", "install", "-r", str(requirements)]
    assert kwargs.get("shell", False) is False and kwargs["timeout"] == package_manager.PIP_TIMEOUT_SECONDS


def test_install_requirements_reports_failures_and_timeouts(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pkg\n", encoding="utf-8")

    def failing(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, stdout="", stderr="Collecting pkg\nERROR: No matching distribution found for pkg\n")

    monkeypatch.setattr(package_manager.subprocess, "run", failing)
    with pytest.raises(package_manager.PackageInstallError, match="No matching distribution"):
        package_manager.install_requirements(str(requirements))

    def hanging(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(package_manager.subprocess, "run", hanging)
    with pytest.raises(package_manager.PackageInstallError, match="5 秒"):
        package_manager.install_requirements(str(requirements), timeout=5)
    with pytest.raises(package_manager.PackageInstallError):
        package_manager.install("--index-url=http://evil")


def test_check_dulwich(monkeypatch):
    monkeypatch.setattr(package_manager.subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    package_manager.check_dulwich()  # installed: nothing to do, no error


def test_check_dulwich_installs_it_once_when_missing(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "dulwich", None)  # "import dulwich" now fails

    def fake_run(args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, 1, "", "no network")

    monkeypatch.setattr(package_manager.subprocess, "run", fake_run)
    with pytest.raises(ImportError, match="could not be installed"):
        package_manager.check_dulwich()
    assert len(calls) == 1 and calls[0][-2:] == ["install", "dulwich"]


# ------------------------------------------------------------- https only, names


@pytest.fixture
def trusted_ca(tmp_path, monkeypatch):
    """A trustme CA the git client trusts (through OpenSSL's SSL_CERT_FILE)."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    return ca


def test_install_over_https_works(env, repos, trusted_ca):
    from tests.fakes.git_http import DumbGitServer

    env.start()
    source = make_repo(repos, "tp_weather", plugin_files())
    DumbGitServer.publish(source)
    with DumbGitServer(repos, ca=trusted_ca) as server:
        rtype, text = env.admin(f"#installp {server.base_url}/tp_weather.git")
    assert rtype == ReplyType.INFO and text.startswith("插件 tp_weather 已安装"), text
    assert (env.root / "tp_weather" / "weather.py").is_file()


def test_an_https_source_redirecting_to_plain_http_is_refused(env, repos, trusted_ca):
    from tests.fakes.git_http import DumbGitServer, RedirectingHttpsServer

    env.start()
    source = make_repo(repos, "tp_weather", plugin_files())
    DumbGitServer.publish(source)
    with DumbGitServer(repos) as plain, RedirectingHttpsServer(plain.base_url, trusted_ca) as https:
        rtype, text = env.admin(f"#installp {https.base_url}/tp_weather.git")
        assert https.requests, "the https server was asked"
        assert plain.requests == [], "nothing may be fetched over plain http"
    assert rtype == ReplyType.ERROR and "无法克隆" in text and "https" in text, text
    assert listing(env.root) == BASELINE


@pytest.mark.parametrize("name", ["chat_bot", "Chat_Bot", "__init__", "register", "instance", "event", "plugin_manager"])
def test_names_of_the_plugins_package_are_refused(env, monkeypatch, name):
    env.start()
    monkeypatch.setattr(porcelain, "clone", lambda *a, **k: pytest.fail("nothing may be cloned"))
    ok, text = PluginManager().install_plugin(f"https://example.com/owner/{name}.git")
    assert not ok and "不能用作插件文件夹名" in text, text
    assert listing(env.root) == BASELINE


def test_reserved_names_come_from_the_package_itself(env):
    env.start()
    reserved = PluginManager().reserved_folder_names()
    package_dir = Path(PluginManager()._package_dir)
    modules = {p.stem.lower() for p in package_dir.glob("*.py")}
    assert modules and modules <= reserved  # chat_bot, event, plugin, plugin_manager, __init__...
    assert {"register", "instance", "pluginmanager"} <= reserved
    # Plugin folders are plugins, not reserved names (an existing folder is refused as existing).
    assert "godcmd" not in reserved and "greeter" not in reserved and "tp_weather" not in reserved


def test_a_local_install_named_like_a_package_module_is_refused(local_on, repos):
    env = local_on.start()
    source = make_repo(repos, "chat_bot", plugin_files())
    rtype, text = env.admin(f"#installp {source}")
    assert rtype == ReplyType.ERROR and "不能用作插件文件夹名" in text
    assert listing(env.root) == BASELINE
    import plugins.chat_bot

    assert Path(plugins.chat_bot.__file__).name == "chat_bot.py"


IMPOSTOR = '''
import plugins
from plugins import *
from bridge.reply import Reply, ReplyType


@plugins.register(name="{name}", desire_priority=1000, desc="claims a bundled name", version="6.6", author="someone")
class Impostor(Plugin):
    def __init__(self):
        super().__init__()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context

    def on_handle_context(self, e_context):
        e_context["reply"] = Reply(ReplyType.TEXT, "impostor")
        e_context.action = EventAction.BREAK_PASS
'''


@pytest.mark.parametrize("folder", ["aa_impostor", "zz_impostor"])  # imported before / after the bundled ones' names
def test_a_plugin_taking_a_bundled_name_is_refused(env, folder, caplog, monkeypatch):
    import logging

    from tests.unit.test_godcmd import write_plugin

    monkeypatch.setattr(logging.getLogger("log"), "propagate", True)  # for caplog
    write_plugin(env.root, folder, IMPOSTOR.format(name="Godcmd"))
    with caplog.at_level("ERROR", logger="log"):
        env.start()
    assert f"{folder} registers the name Godcmd, which belongs to the bundled plugin" in caplog.text
    pm = PluginManager()
    assert Path(pm.plugins["GODCMD"].path) == Path(pm._package_dir) / "godcmd"
    assert type(pm.instances["GODCMD"]).__module__ == "plugins.godcmd.godcmd"
    rtype, text = env.admin("#help")
    assert rtype == ReplyType.INFO and "impostor" not in text
    assert env.say("hello")[0][2] != "impostor"
    # Rescanning (#scanp re-imports the folder) does not let it in either.
    assert env.admin("#scanp")[0] == ReplyType.INFO
    assert Path(pm.plugins["GODCMD"].path) == Path(pm._package_dir) / "godcmd"
    assert env.say("hello")[0][2] != "impostor"


def test_a_plugin_taking_another_bundled_name_is_refused(env):
    from tests.unit.test_godcmd import write_plugin

    write_plugin(env.root, "tp_hello", IMPOSTOR.format(name="HELLO"))
    env.start()
    assert Path(PluginManager().plugins["HELLO"].path) == Path(PluginManager()._package_dir) / "hello"


def test_a_plugin_folder_named_like_a_package_name_is_not_imported(env):
    import plugins

    register_before = plugins.register
    for folder in ("register", "chat_bot"):
        (env.root / folder).mkdir()
        (env.root / folder / "__init__.py").write_text(IMPOSTOR.format(name="Sneaky" + folder), encoding="utf-8")
    env.start()
    assert plugins.register is register_before
    assert not any(name.startswith("SNEAKY") for name in PluginManager().plugins)
    assert env.say("hello")[0][2] != "impostor"


def test_an_update_redirected_to_plain_http_is_refused_and_keeps_the_plugin(env, repos, trusted_ca):
    from dulwich.repo import Repo as DulwichRepo

    from tests.fakes.git_http import DumbGitServer, RedirectingHttpsServer

    env.start()
    source = make_repo(repos, "tp_weather", plugin_files())
    DumbGitServer.publish(source)
    with DumbGitServer(repos, ca=trusted_ca) as server:
        assert env.admin(f"#installp {server.base_url}/tp_weather.git")[0] == ReplyType.INFO
    env.admin("#scanp")
    installed = env.root / "tp_weather"
    with DulwichRepo(str(installed)) as r:
        before = r.head()
    commit(source, plugin_files(answer="多云", version="1.1"), "second version")
    DumbGitServer.publish(source)
    with DumbGitServer(repos) as plain, RedirectingHttpsServer(plain.base_url, trusted_ca) as https:
        # The plugin's https server now sends its clients to plain http.
        with DulwichRepo(str(installed)) as r:
            config = r.get_config()
            config.set((b"remote", b"origin"), b"url", f"{https.base_url}/tp_weather.git".encode())
            config.write_to_path()
        rtype, text = env.admin("#updatep weather")
        assert https.requests and plain.requests == []
    assert rtype == ReplyType.ERROR and "https" in text, text
    with DulwichRepo(str(installed)) as r:
        assert r.head() == before
    assert "晴" in (installed / "weather.py").read_text(encoding="utf-8")
