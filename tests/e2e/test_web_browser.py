"""The chat page in headless Chromium against `python app.py` (web channel + Dify simulator)."""
from __future__ import annotations

import os
import shutil
import tempfile
import time

import pytest

from tests.e2e.daemon import web_daemon

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
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".msg.bot")]


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


def test_typed_question_gets_the_streamed_answer(web, browser):
    server, base = web
    server.push_answer("**Paris** is the capital.\n\nIt is on the `Seine`.\n\nSee [the map](https://example.org/map).",
                       chunk_size=5, chunk_delay=0.01)
    open_chat(browser, base, "walker")
    ask(browser, "capital of France?")
    WebDriverWait(browser, 15).until(lambda d: len(bot_texts(d)) >= 3)
    assert user_texts(browser) == ["capital of France?"]
    assert bot_texts(browser)[:3] == ["Paris is the capital.", "It is on the Seine.", "See the map."]
    assert browser.find_element(By.CSS_SELECTOR, ".msg.bot strong").text == "Paris"
    assert browser.find_element(By.CSS_SELECTOR, ".msg.bot code").text == "Seine"
    link = browser.find_element(By.CSS_SELECTOR, ".msg.bot a")
    assert link.get_attribute("href") == "https://example.org/map"


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


def test_hostile_answer_is_shown_as_text(web, browser):
    server, base = web
    hostile = ('<script>window.__pwned = 1</script> and <img src=x onerror="window.__pwned=2"> '
               'and [click](javascript:window.__pwned=3) and ![pic](javascript:alert(1))')
    server.push_answer(hostile, chunk_size=7)
    open_chat(browser, base, "mallory")
    ask(browser, "say something nasty")
    WebDriverWait(browser, 15).until(lambda d: len(bot_texts(d)) >= 1)
    time.sleep(0.5)
    assert bot_texts(browser)[-1] == hostile
    assert browser.execute_script("return window.__pwned === undefined")
    assert browser.find_elements(By.CSS_SELECTOR, ".msg.bot script, .msg.bot img, .msg.bot a") == []


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
