"""The chat page in headless Chromium against `python app.py` (web channel + Dify simulator)."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from urllib.parse import quote

import pytest

from tests.e2e.daemon import free_port, web_daemon

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

if not os.path.exists(CHROMIUM) or not os.path.exists(CHROMEDRIVER):
    pytest.skip(f"browser tests need {CHROMIUM} and {CHROMEDRIVER} (Debian: apt-get install chromium chromium-driver)",
                allow_module_level=True)

os.environ["SE_OFFLINE"] = "true"  # selenium must never download a browser or driver

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    with web_daemon(tmp_path_factory.mktemp("webui"), dify_stream_reply=True) as (daemon, server, port, base, health):
        yield server, base


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=420,860"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def bot_texts(driver) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".msg.bot:not(.typing)")]


def user_texts(driver) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".msg.user")]


def open_chat(driver, base: str, user: str) -> None:
    driver.get(f"{base}/chat?user={user}")
    WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "open"
    )


def ask(driver, text: str) -> None:
    box = driver.find_element(By.ID, "input")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def test_markdown_is_rendered_with_highlighted_code(web, browser):
    server, base = web
    answer = ("# Capitals\n\n**Paris** is on the `Seine`.\n\n- one\n- two\n\n> quoted\n\n"
              "| city | river |\n|---|---|\n| Paris | Seine |\n\n```python\ndef f():\n    return 1\n```\n\n"
              "See [the map](https://example.org/map).")
    server.push_answer(answer, chunk_size=5, chunk_delay=0.01)
    open_chat(browser, base, "walker")
    ask(browser, "capital of France?")
    WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.bot:not(.streaming) pre code"))
    assert user_texts(browser) == ["capital of France?"]
    assert len(bot_texts(browser)) == 1  # one bubble for the whole answer
    bubble = browser.find_element(By.CSS_SELECTOR, ".msg.bot")
    assert bubble.find_element(By.CSS_SELECTOR, "h1").text == "Capitals"
    assert bubble.find_element(By.CSS_SELECTOR, "strong").text == "Paris"
    assert bubble.find_element(By.CSS_SELECTOR, "p code").text == "Seine"
    assert [li.text for li in bubble.find_elements(By.CSS_SELECTOR, "ul li")] == ["one", "two"]
    assert bubble.find_element(By.CSS_SELECTOR, "blockquote").text == "quoted"
    assert [td.text for td in bubble.find_elements(By.CSS_SELECTOR, "table td")] == ["Paris", "Seine"]
    code = bubble.find_element(By.CSS_SELECTOR, "pre code")
    assert "hljs" in code.get_attribute("class")
    assert code.find_elements(By.CSS_SELECTOR, "span.hljs-keyword")  # highlight.js marked up `def`
    link = bubble.find_element(By.CSS_SELECTOR, "a")
    assert link.get_attribute("href") == "https://example.org/map"
    assert link.get_attribute("rel") == "noopener noreferrer"


def test_streamed_answer_grows_in_one_bubble_after_a_typing_indicator(web, browser):
    server, base = web
    server.push_events([
        1.0,  # the bot "thinks": the typing indicator shows meanwhile
        {"event": "message", "answer": "Hello, "},
        1.0,
        {"event": "message", "answer": "world"},
        1.0,
        {"event": "message", "answer": "! Bye."},
        {"event": "message_end", "metadata": {}},
    ])
    open_chat(browser, base, "streamer")
    ask(browser, "stream please")
    WebDriverWait(browser, 5).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.typing"))
    assert bot_texts(browser) == []  # the indicator only
    WebDriverWait(browser, 5).until(lambda d: "Hello," in " ".join(bot_texts(d)))
    assert browser.find_elements(By.CSS_SELECTOR, ".msg.typing") == []
    assert browser.find_elements(By.CSS_SELECTOR, ".msg.bot.streaming")
    WebDriverWait(browser, 5).until(lambda d: "Hello, world" in " ".join(bot_texts(d)))
    WebDriverWait(browser, 5).until(lambda d: not d.find_elements(By.CSS_SELECTOR, ".msg.bot.streaming"))
    assert bot_texts(browser) == ["Hello, world! Bye."]


def test_the_conversation_survives_a_reload(web, browser):
    server, base = web
    open_chat(browser, base, "reloader")
    ask(browser, "first question")
    WebDriverWait(browser, 15).until(lambda d: "echo: first question" in bot_texts(d))
    browser.refresh()
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "open"
    )
    WebDriverWait(browser, 10).until(lambda d: bot_texts(d) == ["echo: first question"])
    assert user_texts(browser) == ["first question"]
    ask(browser, "second question")
    WebDriverWait(browser, 15).until(lambda d: "echo: second question" in bot_texts(d))
    time.sleep(0.3)
    assert bot_texts(browser) == ["echo: first question", "echo: second question"]


def test_any_text_user_id_works_and_stays_text(web, browser):
    server, base = web
    user = '<img src=x onerror="window.__pwned=9">张三@例子.com'
    driver = browser
    driver.get(f"{base}/chat?user={quote(user, safe='')}")
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "open")
    assert driver.execute_script("return window.chatUserId()") == user
    assert driver.find_element(By.ID, "who").text == user
    ask(driver, "hi <b>there</b>")
    WebDriverWait(driver, 15).until(lambda d: "echo: hi there" in bot_texts(d) or "echo: hi <b>there</b>" in bot_texts(d))
    assert user_texts(driver) == ["hi <b>there</b>"]  # the user's own text is text
    assert driver.find_elements(By.CSS_SELECTOR, ".msg.user b, #who img") == []
    assert driver.execute_script("return window.__pwned === undefined")


def test_two_windows_with_different_users_stay_apart(web, browser):
    server, base = web
    open_chat(browser, base, "left")
    first = browser.current_window_handle
    browser.switch_to.new_window("window")
    second = browser.current_window_handle
    open_chat(browser, base, "right")
    ask(browser, "question from right")
    WebDriverWait(browser, 15).until(lambda d: "echo: question from right" in bot_texts(d))
    browser.switch_to.window(first)
    ask(browser, "question from left")
    WebDriverWait(browser, 15).until(lambda d: "echo: question from left" in bot_texts(d))
    time.sleep(0.3)
    assert user_texts(browser) == ["question from left"]
    assert bot_texts(browser) == ["echo: question from left"]
    browser.switch_to.window(second)
    assert user_texts(browser) == ["question from right"]
    assert bot_texts(browser) == ["echo: question from right"]
    browser.close()
    browser.switch_to.window(first)


def test_hostile_answer_is_sanitized(web, browser):
    server, base = web
    hostile = ('<script>window.__pwned = 1</script> and <img src=x onerror="window.__pwned=2"> '
               'and [click](javascript:window.__pwned=3) and ![pic](javascript:alert(1)) '
               'and <a href="javascript:window.__pwned=4">raw</a>')
    server.push_answer(hostile, chunk_size=7)
    open_chat(browser, base, "mallory")
    ask(browser, "say something nasty")
    WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".msg.bot:not(.typing):not(.streaming)"))
    time.sleep(0.5)
    for link in browser.find_elements(By.CSS_SELECTOR, ".msg.bot a"):
        link.click()  # even clicking runs nothing
    text = bot_texts(browser)[-1]
    assert "<script>window.__pwned = 1</script>" in text  # raw HTML is shown as the text it is
    assert '<img src=x onerror="window.__pwned=2">' in text
    assert browser.execute_script("return window.__pwned === undefined")
    assert browser.find_elements(By.CSS_SELECTOR, ".msg.bot script, .msg.bot [onerror]") == []
    for node in browser.find_elements(By.CSS_SELECTOR, ".msg.bot a, .msg.bot img"):
        assert "javascript" not in (node.get_attribute("href") or "") + (node.get_attribute("src") or "")


def test_new_chat_shows_the_new_users_answers(web, browser):
    # Event ids count from 1 for every user: the new user's first answers must not be taken
    # for ones the page already showed.
    server, base = web
    open_chat(browser, base, "before-new-chat")
    ask(browser, "first question")
    WebDriverWait(browser, 15).until(lambda d: "echo: first question" in bot_texts(d))
    old_user = browser.execute_script("return window.chatUserId()")
    browser.find_element(By.ID, "new-chat").click()
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "open"
    )
    assert browser.execute_script("return window.chatUserId()") != old_user
    assert bot_texts(browser) == []
    ask(browser, "second question")
    WebDriverWait(browser, 15).until(lambda d: "echo: second question" in bot_texts(d))
    assert user_texts(browser) == ["second question"]
    assert bot_texts(browser) == ["echo: second question"]


def test_a_double_click_on_new_chat_opens_one_stream(web, browser):
    # Two connect() calls in flight at once used to open two streams: every answer twice.
    server, base = web
    open_chat(browser, base, "double-click")
    browser.execute_script("var b = document.getElementById('new-chat'); b.click(); b.click();")
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "open"
    )
    ask(browser, "one")
    WebDriverWait(browser, 15).until(lambda d: "echo: one" in bot_texts(d))
    ask(browser, "two")  # by its answer, a second copy of the first would have arrived too
    WebDriverWait(browser, 15).until(lambda d: "echo: two" in bot_texts(d))
    assert bot_texts(browser) == ["echo: one", "echo: two"]


def test_a_password_in_any_script_is_accepted_by_the_page(tmp_path, browser):
    # fetch() cannot send a header holding "口"; the page sends the password's UTF-8 bytes.
    password = "口令-pässwörd"
    with web_daemon(tmp_path, web_password=password) as (daemon, server, port, base, health):
        browser.get(f"{base}/chat?user=locked")
        WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "password").is_displayed())
        field = browser.find_element(By.ID, "password")
        field.send_keys(password)
        field.send_keys(Keys.ENTER)
        WebDriverWait(browser, 10).until(
            lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == "open"
        )
        ask(browser, "behind a password")
        WebDriverWait(browser, 15).until(lambda d: "echo: behind a password" in bot_texts(d))


def wait_state(driver, state: str, timeout: float = 20) -> None:
    WebDriverWait(driver, timeout).until(lambda d: d.find_element(By.ID, "status").get_attribute("data-state") == state)


@pytest.mark.skipif(os.name == "nt", reason="kill -9")
def test_an_open_page_across_kills_and_a_restored_backup_shows_each_answer_once(browser, tmp_path):
    port = free_port()
    with web_daemon(tmp_path, port=port) as (daemon, server, port, base, health):
        open_chat(browser, base, "phoenix")
        ask(browser, "one")
        WebDriverWait(browser, 15).until(lambda d: bot_texts(d) == ["echo: one"])
        daemon.kill()
    wait_state(browser, "connecting")
    backup = tmp_path / "backup"
    shutil.copytree(tmp_path / "data", backup)
    # The page stays open; its stream reconnects by itself, naming the last event it showed.
    with web_daemon(tmp_path, port=port) as (daemon, server, port, base, health):
        wait_state(browser, "open")
        ask(browser, "two")
        WebDriverWait(browser, 15).until(lambda d: "echo: two" in bot_texts(d))
        ask(browser, "three")
        WebDriverWait(browser, 15).until(lambda d: "echo: three" in bot_texts(d))
        daemon.kill()
    wait_state(browser, "connecting")
    # The state store goes back to the backup: it numbers the next answers with ids the page
    # has shown already, and the page's last id is ahead of it, so everything kept is sent again.
    shutil.rmtree(tmp_path / "data")
    shutil.copytree(backup, tmp_path / "data")
    with web_daemon(tmp_path, port=port) as (daemon, server, port, base, health):
        wait_state(browser, "open")
        ask(browser, "four")
        WebDriverWait(browser, 15).until(lambda d: "echo: four" in bot_texts(d))
        time.sleep(0.5)  # room for a repeat to show up
        assert bot_texts(browser) == ["echo: one", "echo: two", "echo: three", "echo: four"]
        assert user_texts(browser) == ["one", "two", "three", "four"]
