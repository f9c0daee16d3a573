"""The salon's page in real headless Chromium against a real `voicebot serve` (offline),
on a store where `voicebot simulate --store` just made a booking: log in with the token,
find the booking on its day and master, reveal the phone, cancel it (with the
confirmation), see it gone and STATUS:CANCELLED in the calendar feed with a higher
SEQUENCE, open the call's transcript, the Numbers charts; a wrong token gets 401 and no
data. Screenshots (desktop and a phone-sized window) go to artifacts/."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
ADMIN, CAL = "browser-admin-token", "browser-calendar-token"
TZ = ZoneInfo("Europe/Moscow")
CALLER = "Здравствуйте, хочу подстричься завтра в 15:00 к Ивану, меня зовут Анна, телефон +7 916 123-45-67"

if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("chromium and chromedriver are needed", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YANDEX_", "VOICEBOT_"))}
    return {**env, "VOICEBOT_ADMIN_TOKEN": ADMIN, "VOICEBOT_CALENDAR_TOKEN": CAL}


@pytest.fixture(scope="module")
def booked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`voicebot simulate --store S`: a call made today that books tomorrow 15:00."""
    work = tmp_path_factory.mktemp("admin_browser")
    now = datetime.now(TZ).replace(hour=10, minute=0, second=0, microsecond=0)
    dialogue = work / "call.yaml"
    dialogue.write_text(
        yaml.safe_dump(
            {"name": "admin_browser", "now": now.isoformat(), "caller": [CALLER, "Да, всё верно"]},
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    store = f"sqlite:///{work / 'salon.sqlite3'}"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "voicebot.cli",
            "simulate",
            "--dialogue",
            str(dialogue),
            "--speed",
            "4",
            "--store",
            store,
        ],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout
    booking_id = re.search(r'"id": "([0-9A-Z]{6})"', out).group(1)
    return {
        "work": work,
        "store": store,
        "id": booking_id,
        "day": now.date() + timedelta(days=1),
        "call_day": now.date(),
    }


@pytest.fixture(scope="module")
def server(booked: dict[str, Any]) -> Iterator[str]:
    log_path = booked["work"] / "serve.log"
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voicebot.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--audiosocket-port",
                "0",
                "--store",
                booked["store"],
            ],
            cwd=REPO,
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None and not url:
            if m := re.search(
                r"serving on (http://127\.0\.0\.1:\d+)/", log_path.read_text("utf-8")
            ):
                url = m.group(1)
            time.sleep(0.1)
        if not url:
            proc.kill()
            pytest.fail("voicebot serve did not start:\n" + log_path.read_text("utf-8"))
        try:
            yield url
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(log_path, ARTIFACTS / "admin-serve.log")


@pytest.fixture
def driver(booked: dict[str, Any]) -> Iterator[Any]:
    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={booked['work'] / 'profile'}",
        "--window-size=1100,1000",
    ):
        opts.add_argument(flag)
    d = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    yield d
    d.quit()


def wait(d: Any, what: str, cond: Any, timeout: float = 15) -> Any:
    return WebDriverWait(d, timeout, poll_frequency=0.1).until(cond, message=what)


def shot(d: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    d.save_screenshot(str(ARTIFACTS / name))


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def feed_event(server: str, booking_id: str) -> Any:
    from icalendar import Calendar

    status, body = fetch(f"{server}/calendar.ics?token={CAL}")
    assert status == 200
    events = {str(e["UID"]): e for e in Calendar.from_ical(body).walk("VEVENT")}
    return events[f"{booking_id}@voicebot.local"]


def test_wrong_token_gets_401_and_no_data(server: str, booked: dict[str, Any], driver: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        status, body = fetch(f"{server}/admin?date={booked['day']}", headers)
        assert status == 401 and "Анна".encode() not in body and booked["id"].encode() not in body
    status, body = fetch(f"{server}/calendar.ics?token=wrong")
    assert status == 401 and b"VEVENT" not in body
    driver.get(f"{server}/admin?date={booked['day']}")
    driver.find_element(By.NAME, "token").send_keys("not-the-token")
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait(driver, "error shown", lambda d: d.find_elements(By.ID, "error"))
    assert "Неверный токен" in driver.find_element(By.ID, "error").text
    assert "Анна" not in driver.page_source and not driver.get_cookie("vb_admin")
    shot(driver, "admin-wrong-token.png")


def test_owner_sees_and_cancels_the_simulated_booking(
    server: str, booked: dict[str, Any], driver: Any
) -> None:
    bid, day = booked["id"], booked["day"]
    before = feed_event(server, bid)
    assert str(before["STATUS"]) == "CONFIRMED"

    driver.get(f"{server}/admin")
    driver.find_element(By.NAME, "token").send_keys(ADMIN)
    driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
    wait(driver, "day view", lambda d: d.find_elements(By.ID, "schedule"))
    cookie = driver.get_cookie("vb_admin")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    driver.find_element(By.ID, "next-day").click()  # the booking is for tomorrow
    block_css = f'[data-master="Иван"][data-booking-id="{bid}"]'
    block = wait(driver, "booking block", lambda d: d.find_elements(By.CSS_SELECTOR, block_css))[0]
    assert "Анна" in block.text and "15:00" in block.text and "Стрижка" in block.text
    assert "+79161234567" not in driver.page_source  # masked until clicked
    shot(driver, "admin-day.png")
    driver.set_window_size(390, 844)  # a phone
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", block)
    shot(driver, "admin-day-phone.png")
    block.find_element(By.CSS_SELECTOR, "button.phone").click()
    wait(driver, "phone revealed", lambda d: "+79161234567" in block.text)

    block.find_element(By.CSS_SELECTOR, ".b-cancel").click()
    wait(driver, "confirmation", lambda d: d.find_elements(By.ID, "confirm-cancel"))
    shot(driver, "admin-cancel-confirm-phone.png")
    driver.find_element(By.ID, "confirm-yes").click()
    wait(driver, "back on the day", lambda d: f"date={day}" in d.current_url)
    assert not driver.find_elements(By.CSS_SELECTOR, block_css)
    assert "отменена" in driver.page_source
    after = feed_event(server, bid)
    assert str(after["STATUS"]) == "CANCELLED" and int(after["SEQUENCE"]) > int(before["SEQUENCE"])

    driver.get(f"{server}/admin/calls?date={booked['call_day']}")
    wait(driver, "calls", lambda d: d.find_elements(By.CSS_SELECTOR, ".call a"))[0].click()
    transcript = wait(driver, "transcript", lambda d: d.find_elements(By.ID, "transcript"))[0]
    assert "хочу подстричься завтра в 15:00" in transcript.text
    assert "+7 916 123-45-67" not in driver.page_source  # phones masked in the transcript
    assert "Разговор записывается" in transcript.text  # the notice, as played
    assert bid in driver.find_element(By.ID, "call-booking").text
    shot(driver, "admin-call-phone.png")
    driver.set_window_size(1100, 1000)
    driver.get(f"{server}/admin/numbers")
    wait(
        driver,
        "charts drawn",
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-charts-drawn"),
    )
    assert driver.find_element(By.ID, "kpi-calls").text == "1"
    shot(driver, "admin-numbers.png")
