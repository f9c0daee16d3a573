"""The demo page in real headless Chromium against a real `voicebot serve` (offline).

By voice: Chromium's fake microphone plays a WAV of synthesized Russian speech while the
emulator's transcript script holds that speech's text; the page must capture, resample
and stream it, show the caller's transcript and the bot's reply, and really play the
reply (the page's playout counter, body[data-played-ms], grows only as its playback
worklet renders audio). By text: a whole haircut booking typed into the text box.
Modes: the page's «Режим» selector switches between the booking bot and the chat
(the emulator's YandexGPT offline), mid-call included. Screenshots go to artifacts/.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SPOKEN = "Хочу подстричься завтра в 15:00"
BOOKING_BY_TEXT = [
    "Здравствуйте, хочу подстричься завтра в 15:00",
    "Меня зовут Анна, телефон +7 916 123-45-67",
    "Да",
]

if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("chromium and chromedriver are needed", allow_module_level=True)
if not shutil.which("espeak-ng"):
    pytest.skip("espeak-ng is needed for the fake microphone", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser_e2e")


@pytest.fixture(scope="module")
def speech_wav(workdir: Path) -> Path:
    """Silence, the phrase, silence: Chromium loops the file as the microphone."""
    from voicebot.emulator.espeak import EspeakSynthesizer, pcm_to_wav

    rate = 16000
    pcm = asyncio.run(EspeakSynthesizer().synthesize(SPOKEN, sample_rate=rate))
    silence = b"\x00\x00" * rate
    path = workdir / "caller.wav"
    path.write_bytes(pcm_to_wav(silence * 5 + pcm + silence * 2, rate))
    return path


class Serve:
    """A `voicebot serve` subprocess, offline, with the spoken phrase as its script."""

    def __init__(self, workdir: Path, port: int = 0, name: str = "serve") -> None:
        script = workdir / "script.txt"
        # The fake microphone loops; every pass is an utterance (some fall under the
        # greeting and are dropped by the echo gate), so the script repeats the phrase.
        script.write_text((SPOKEN + "\n") * 20, encoding="utf-8")
        # The repo's config, with the bot speaking twice as fast: the tests wait for its
        # audio to really play in the page, and that takes real time.
        cfg = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
        cfg["yandex"]["tts"]["speed"] = 2.0
        config = workdir / "config.yaml"
        config.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("YANDEX_", "VOICEBOT_"))}
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "voicebot.cli", "serve"),
                *("--host", "127.0.0.1", "--port", str(port), "--audiosocket-port", "0"),
                *("--config", str(config), "--emulator-stt-script", str(script)),
                *("--store", f"sqlite:///{workdir / 'bookings.sqlite3'}"),
            ],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.url = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            text = self.log_path.read_text("utf-8")
            if m := re.search(r"serving on (http://127\.0\.0\.1:(\d+)/)", text):
                self.url, self.port = m.group(1), int(m.group(2))
                return
            time.sleep(0.1)
        self.proc.kill()
        pytest.fail("voicebot serve did not start:\n" + self.log_path.read_text("utf-8"))

    def stop(self) -> int | None:
        """SIGINT, as a person stopping it would; returns the exit status."""
        self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = None
        self._log.close()
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(self.log_path, ARTIFACTS / f"browser-e2e-{self.log_path.name}")
        return rc


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[str]:
    serve = Serve(workdir)
    try:
        yield serve.url
    finally:
        assert serve.stop() == 0, "voicebot serve did not shut down cleanly"


@pytest.fixture
def browser(workdir: Path) -> Iterator[Callable[..., Any]]:
    drivers: list[Any] = []

    def launch(fake_audio: Path | None = None) -> Any:
        opts = Options()
        opts.binary_location = CHROMIUM
        profile = workdir / f"profile{len(drivers)}"
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--autoplay-policy=no-user-gesture-required",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            "--window-size=1100,1000",
        ):
            opts.add_argument(flag)
        if fake_audio is not None:
            opts.add_argument(f"--use-file-for-fake-audio-capture={fake_audio}")
        driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
        drivers.append(driver)
        return driver

    yield launch
    for d in drivers:
        d.quit()


def wait(driver: Any, timeout: float, what: str, condition: Callable[[Any], Any]) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, message=what)


def messages(driver: Any) -> list[dict[str, str]]:
    return driver.execute_script(
        """return [...document.querySelectorAll('#messages .msg')].map(li => ({
             role: li.dataset.role, partial: li.dataset.partial || '',
             final: li.dataset.final || '', source: li.dataset.source || '',
             text: li.querySelector('.bubble').textContent}))"""
    )


def answered(driver: Any, said: str) -> bool:
    """A final bot reply follows the caller's (final) message `said`."""
    msgs = messages(driver)
    for i, m in enumerate(msgs):
        if m["role"] == "user" and m["partial"] != "true" and m["text"] == said:
            return any(b["role"] == "bot" and b["final"] == "true" for b in msgs[i + 1 :])
    return False


def played_ms(driver: Any) -> float:
    return float(driver.find_element(By.TAG_NAME, "body").get_attribute("data-played-ms") or 0)


def open_page(driver: Any, url: str) -> None:
    driver.get(url)
    wait(
        driver,
        15,
        "page loaded",
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"),
    )
    banner = driver.find_element(By.ID, "offline-banner")
    assert banner.is_displayed() and "Yandex Cloud" in banner.text  # offline, and says why


def screenshot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / name))


def test_talk_by_voice(server: str, speech_wav: Path, browser: Callable[..., Any]) -> None:
    driver = browser(fake_audio=speech_wav)
    open_page(driver, server)
    mic = driver.find_element(By.ID, "mic")
    assert mic.get_attribute("data-state") == "idle" and mic.is_enabled()
    mic.click()
    wait(driver, 15, "mic recording", lambda d: mic.get_attribute("data-state") == "recording")

    try:
        wait(driver, 45, "caller transcript and bot reply", lambda d: answered(d, SPOKEN))
        wait(driver, 15, "reply played", lambda d: played_ms(d) > 0)
    finally:
        screenshot(driver, "browser-voice.png")
    # The typed path was not used: the transcript came from the microphone.
    assert not [m for m in messages(driver) if m["source"] == "text"]
    assert played_ms(driver) > 500  # the greeting at least, at 1x in the worklet
    mic.click()
    wait(driver, 5, "mic idle", lambda d: mic.get_attribute("data-state") == "idle")


def test_book_a_haircut_by_typing(server: str, browser: Callable[..., Any]) -> None:
    driver = browser()
    open_page(driver, server)
    box = driver.find_element(By.CSS_SELECTOR, "form input[name=text]")
    for n, phrase in enumerate(BOOKING_BY_TEXT, start=1):
        box.send_keys(phrase)
        box.submit()
        # greeting + one final reply per phrase
        wait(
            driver,
            20,
            f"reply to {phrase!r}",
            lambda d, n=n: (
                sum(m["role"] == "bot" and m["final"] == "true" for m in messages(d)) > n
            ),
        )
    try:
        card = wait(
            driver, 20, "booking card", lambda d: d.find_elements(By.CSS_SELECTOR, ".booking-card")
        )[0]
        text = card.text
        assert "Анна" in text and "Стрижка" in text and "15:00" in text
        assert "9161234567" in re.sub(r"\D", "", text)
        user = [m for m in messages(driver) if m["role"] == "user"]
        assert [m["text"] for m in user] == BOOKING_BY_TEXT  # each shown once, solid
        assert all(m["partial"] != "true" for m in user)
        wait(driver, 20, "reply audio played", lambda d: played_ms(d) > 1000)
        # The bot says goodbye and hangs up once its audio has played (acks drive that).
        wait(
            driver,
            30,
            "call ended",
            lambda d: "Разговор завершён" in d.find_element(By.ID, "messages").text,
        )
    finally:
        screenshot(driver, "browser-booking.png")


def test_page_reconnects_after_a_server_restart(workdir: Path, browser: Callable[..., Any]) -> None:
    first = Serve(workdir, name="restart-1")
    second = None
    try:
        driver = browser()
        open_page(driver, first.url)
        box = driver.find_element(By.CSS_SELECTOR, "form input[name=text]")
        box.send_keys(BOOKING_BY_TEXT[0])
        box.submit()
        wait(driver, 20, "first reply", lambda d: len([m for m in messages(d) if m["final"]]) >= 2)
        session = driver.find_element(By.TAG_NAME, "body").get_attribute("data-session-id")
        assert first.stop() == 0  # graceful: ends the call with close 1001

        error = driver.find_element(By.ID, "error")
        wait(driver, 10, "error shown", lambda d: error.is_displayed() and error.text)
        assert "Сервер" in error.text or "Связь" in error.text  # in words, not a code
        second = Serve(workdir, port=first.port, name="restart-2")
        wait(
            driver,
            30,
            "reconnected to a new call",
            lambda d: (
                d.find_element(By.TAG_NAME, "body").get_attribute("data-session-id")
                not in (None, "", session)
                and "Связь восстановлена" in d.find_element(By.ID, "messages").text
            ),
        )
        assert not error.is_displayed()
        box.send_keys("Хочу на укладку")
        box.submit()
        wait(driver, 20, "the new call answers", lambda d: answered(d, "Хочу на укладку"))
    finally:
        if first.proc.poll() is None:
            first.stop()
        if second is not None:
            assert second.stop() == 0


def test_phone_sized_page_fits_the_screen(server: str, browser: Callable[..., Any]) -> None:
    """At 390x844 (a common phone) nothing of the header or composer is pushed off-screen.

    It used to be: the mode selector ran past the right edge, and once a call started the
    «Завершить» button did too, so the page scrolled sideways.
    """
    driver = browser()
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": False},
    )
    open_page(driver, server)
    box = driver.find_element(By.CSS_SELECTOR, "form input[name=text]")
    box.send_keys(BOOKING_BY_TEXT[0])
    box.submit()
    wait(
        driver, 20, "hang-up button shown", lambda d: d.find_element(By.ID, "hangup").is_displayed()
    )
    try:
        overflow = driver.execute_script(
            """const w = document.documentElement.clientWidth;
               const out = [...document.querySelectorAll(
                 '.topbar *, .composer > *, .banner, #welcome, #messages')]
                 .filter(e => e.getClientRects().length)
                 .filter(e => e.getBoundingClientRect().right > w + 0.5)
                 .map(e => (e.id || e.className || e.tagName) + ':' +
                           Math.round(e.getBoundingClientRect().right));
               return {w, inner: window.innerWidth,
                       scroll: document.documentElement.scrollWidth, out};"""
        )
    finally:
        screenshot(driver, "browser-phone.png")
    assert overflow["inner"] == 390
    assert overflow["out"] == [] and overflow["scroll"] <= overflow["w"], overflow


CHAT_LINE = "Расскажи что-нибудь интересное"
BOOKING_GREETING = "Я помогу записаться"  # prompts/booking_templates.yaml


def bot_finals(driver: Any) -> list[str]:
    return [m["text"] for m in messages(driver) if m["role"] == "bot" and m["final"] == "true"]


def finals_after(driver: Any, n: int) -> list[str]:
    """The final bot messages after the page's first `n` messages."""
    return [m["text"] for m in messages(driver)[n:] if m["role"] == "bot" and m["final"] == "true"]


def test_switch_between_booking_and_chat(server: str, browser: Callable[..., Any]) -> None:
    """The page offers the modes /api/info announces; a call in «chat» talks to the
    emulator's GPT (and the banner says its answers are the emulator's); switching back
    mid-call ends that call, and the very next line goes to a new booking call."""
    with urllib.request.urlopen(server + "api/info", timeout=5) as res:
        info = json.load(res)
    driver = browser()
    open_page(driver, server)
    assert driver.find_element(By.ID, "mode-control").is_displayed()
    select = Select(driver.find_element(By.ID, "mode"))
    assert [o.get_attribute("value") for o in select.options] == info["modes"]
    assert info["modes"] == ["booking", "chat"]  # config.yaml's dialogue.modes
    assert select.first_selected_option.get_attribute("value") == info["default_mode"]
    assert info["default_mode"] == "booking" and info["llm"] == "emulator"
    llm_note = driver.find_element(By.ID, "offline-llm")
    assert llm_note.is_displayed() and "заготовленные ответы эмулятора" in llm_note.text

    box = driver.find_element(By.CSS_SELECTOR, "form input[name=text]")
    try:
        select.select_by_value("chat")
        box.send_keys(CHAT_LINE)
        box.submit()
        wait(driver, 20, "the chat answers", lambda d: answered(d, CHAT_LINE))
        finals = bot_finals(driver)
        # The emulator GPT's answer (its default echoes the caller's words): the call ran
        # the chat dialogue, not the booking bot. (The chat's greeting, cut by the typed
        # line before any of it played, is rightly not in the transcript.)
        assert finals[-1] == f"Эхо: {CHAT_LINE}", finals
        assert not any(BOOKING_GREETING in t for t in finals), finals
        chat_session = driver.find_element(By.TAG_NAME, "body").get_attribute("data-session-id")
        chat_reply = len(messages(driver))

        # Back to booking while the chat call is still up, and a line typed in the same
        # moment: it must start a booking call, not go to the chat call being ended.
        driver.execute_script(
            """const mode = document.getElementById('mode');
               mode.value = 'booking';
               mode.dispatchEvent(new Event('change'));
               const form = document.getElementById('text-form');
               form.elements.text.value = arguments[0];
               form.requestSubmit();""",
            BOOKING_BY_TEXT[0],
        )
        # The new call's greeting, then its answer to the line (both final).
        wait(driver, 20, "the booking bot answers", lambda d: len(finals_after(d, chat_reply)) >= 2)
    finally:
        screenshot(driver, "browser-modes.png")
    greeting, reply = finals_after(driver, chat_reply)[:2]
    assert BOOKING_GREETING in greeting and not reply.startswith("Эхо"), (greeting, reply)
    assert "стрижк" in reply.lower(), reply  # the booking bot understood the haircut
    body = driver.find_element(By.TAG_NAME, "body")
    assert body.get_attribute("data-session-id") not in (None, "", chat_session)
    assert body.get_attribute("data-mode") == "booking"
    notes = driver.find_element(By.ID, "messages").text
    assert "Режим «Запись в салон»" in notes
