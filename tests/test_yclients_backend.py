"""The YCLIENTS backend against the local emulator (a test double speaking the same
JSON, envelope, error codes, two-token auth and rate limit): full booking, taken slot,
dropped response, 429 backoff, time zones, error mapping, cancel by phone, catalog."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from booking.backends.base import BackendConfigError, BackendUnavailable, InvalidPhone
from booking.models import NewBooking, SlotTaken
from booking.notify.message import Notification
from booking.store.base import BookingStore
from booking.yclients import wire
from booking.yclients.backend import YclientsBackend
from booking.yclients.client import YclientsClient
from booking.yclients.emulator import YclientsEmulator
from booking.yclients.emulator_state import EmuRecord
from booking.yclients.settings import YclientsSettings
from tests.yclients_fixtures import (  # noqa: F401  (fixtures)
    FAST,
    NOW,
    backend_fixture,
    config_catalog,
    emulator_fixture,
    local_store_fixture,
    settings_for,
    start_emulator,
)
from voicebot.clock import RealClock

WANTED = datetime.fromisoformat("2026-11-24T15:00:00+03:00")


def nb(
    master: str = "Иван",
    start: datetime = WANTED,
    call_id: str = "call-1",
    phone: str = "+79161234567",
) -> NewBooking:
    return NewBooking(
        "haircut", master, start, start + timedelta(minutes=30), "Анна", phone, call_id
    )


async def test_full_booking_sends_the_real_shapes(
    backend: YclientsBackend, emulator: YclientsEmulator, local_store: BookingStore
) -> None:
    master, problem = await backend.check("haircut", WANTED, NOW, "Иван")
    assert (master, problem) == ("Иван", None)
    assert any("/book_check/" in c.path for c in emulator.calls)
    note = Notification("booked", "telegram", {"master": "Иван"})
    booking = await backend.create(nb(), notify=[note])
    calls = emulator.book_record_calls()
    assert len(calls) == 1
    body = calls[0].body
    assert body["phone"] == "79161234567" and body["fullname"] == "Анна"
    assert body["api_id"] == "call-1"
    assert body["appointments"] == [
        {"id": 1, "services": [1], "staff_id": 101, "datetime": "2026-11-24T15:00:00+03:00"}
    ]
    headers = calls[0].headers
    assert headers["Accept"] == "application/vnd.yclients.v2+json"
    assert (
        headers["Authorization"] == f"Bearer {emulator.partner_token}, User {emulator.user_token}"
    )
    # The notification row was enqueued right after YCLIENTS confirmed.
    rows = await local_store.outbox.list()
    assert [(r.booking_id, r.channel) for r in rows] == [(booking.id, "telegram")]
    # The same call again is the same record, not a second one.
    again = await backend.create(nb())
    assert again.id == booking.id and len(emulator.book_record_calls()) == 1
    # Bookings are in YCLIENTS, not in the local store.
    assert await local_store.list_all() == []
    got = await backend.get(booking.id)
    assert got is not None and (got.master, got.start, got.phone) == (
        "Иван",
        WANTED,
        "+79161234567",
    )


async def test_catalog_comes_from_yclients(
    emulator: YclientsEmulator, local_store: BookingStore, caplog: pytest.LogCaptureFixture
) -> None:
    c = emulator.company
    c.services[0].price_min = 1700
    c.staff[0].services[1] = 2700  # Иван's haircut takes 45 minutes in YCLIENTS
    c.staff[2].name = "Сергей Иванов"  # does not match «Сергей» by name...
    from booking.yclients.emulator_state import EmuService

    c.services.append(EmuService(99, "Окрашивание", 3000, 5000, 5400))
    c.staff[1].services[99] = 5400
    caplog.set_level(logging.WARNING)
    b = YclientsBackend(
        settings_for(emulator, staff_map={103: "Сергей"}), config_catalog(), local_store
    )
    await b.open()
    try:
        svc = b.catalog.service("haircut")
        assert (svc.price, svc.duration_min) == (1700, 45)
        assert [m.name for m in b.catalog.masters] == [
            "Иван",
            "Петр",
            "Сергей",
        ]  # ...staff_map does
        assert "Окрашивание" in caplog.text  # unmatched YCLIENTS service logged at start
    finally:
        await b.close()


async def test_taken_slot_gives_alternatives(
    backend: YclientsBackend, emulator: YclientsEmulator
) -> None:
    # A walk-in booked at the salon desk, behind the bot's back, after the bot's check.
    assert await backend.check("haircut", WANTED, NOW, "Иван") == ("Иван", None)
    emulator.company.records.append(
        EmuRecord(1, 101, [1], WANTED, 1800, "Олег", "79160000000", api_id="")
    )
    with pytest.raises(SlotTaken):
        await backend.create(nb())
    opts = await backend.nearest("haircut", WANTED, NOW, "Иван")
    assert opts[0].start == WANTED and opts[0].master == "Петр"  # same time, another master
    assert {o.master for o in opts[1:]} == {"Иван"} and all(o.start != WANTED for o in opts[1:])


async def test_book_check_refusal_means_taken(
    backend: YclientsBackend, emulator: YclientsEmulator
) -> None:
    emulator.fail_next("/book_check/", 422, 433, "Выбранное время уже занято")
    master, problem = await backend.check("haircut", WANTED, NOW, "Иван")
    assert (master, problem) == (None, "taken")


async def test_dropped_response_is_looked_up_not_booked_twice(
    backend: YclientsBackend, emulator: YclientsEmulator
) -> None:
    emulator.drop_record_responses = 1  # committed, but the answer never arrives
    booking = await backend.create(nb(call_id="call-drop"))
    records = [r for r in emulator.company.records if r.api_id == "call-drop"]
    assert len(records) == 1 and booking.id == str(records[0].id)
    assert len(emulator.book_record_calls()) == 1  # found by api_id, not re-sent
    assert any(c.path.startswith("/api/v1/records/") for c in emulator.calls)


async def test_5xx_before_commit_is_retried_once_after_lookup(
    backend: YclientsBackend, emulator: YclientsEmulator
) -> None:
    emulator.fail_next("/book_record/", 503, 0, "Service Unavailable")
    booking = await backend.create(nb(call_id="call-503"))
    assert len(emulator.book_record_calls()) == 2
    assert [r.id for r in emulator.company.records] == [int(booking.id)]


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        (422, 431, InvalidPhone),
        (422, 436, SlotTaken),
        (422, 432, BackendConfigError),
        (402, 0, BackendUnavailable),
        (500, 0, BackendUnavailable),
    ],
)
async def test_error_codes_map_to_the_dialogue(
    backend: YclientsBackend, emulator: YclientsEmulator, status: int, code: int, error: type
) -> None:
    emulator.fail_next("/book_record/", status, code, "emulated")
    if status >= 500:
        emulator.fail_next("/book_record/", status, code, "emulated")
    with pytest.raises(error):
        await backend.create(nb(call_id=f"call-{status}-{code}"))
    assert not [r for r in emulator.company.records if not r.deleted]


async def test_sms_confirmation_is_a_configuration_error_at_start(
    emulator: YclientsEmulator, local_store: BookingStore
) -> None:
    emulator.company.sms_confirm = True
    b = YclientsBackend(settings_for(emulator, form_id=1), config_catalog(), local_store)
    with pytest.raises(BackendConfigError, match="SMS"):
        await b.open()
    await b.close()


async def test_bad_tokens_fail_at_start(
    emulator: YclientsEmulator, local_store: BookingStore
) -> None:
    s = YclientsSettings(
        base_url=emulator.url, company_id=emulator.company_id, partner_token="wrong", user_token="x"
    )
    b = YclientsBackend(s, config_catalog(), local_store)
    with pytest.raises(BackendConfigError, match="tokens"):
        await b.open()
    await b.close()
    missing = YclientsSettings(base_url=emulator.url, company_id=emulator.company_id)
    with pytest.raises(BackendConfigError, match="YCLIENTS_PARTNER_TOKEN"):
        await YclientsBackend(missing, config_catalog(), local_store).open()


async def test_rate_limit_429_is_backed_off(emulator: YclientsEmulator) -> None:
    emulator.rate_limit = 5  # the real API's limit per IP
    # A client that ignores the 5/s budget meets the API's 429 and backs off.
    greedy = YclientsClient(settings_for(emulator, rate_per_s=100), RealClock())
    try:
        got = [await greedy.book_staff() for _ in range(8)]
    finally:
        await greedy.aclose()
    assert all(len(x) == 3 for x in got)
    assert emulator.throttled >= 1 and greedy.throttled == emulator.throttled
    # The default client keeps under the limit: no 429 at all.
    await asyncio.sleep(1.1)  # the API's window forgets the greedy client's requests
    emulator.throttled = 0
    polite = YclientsClient(settings_for(emulator, rate_per_s=5), RealClock())
    try:
        for _ in range(8):
            await polite.book_staff()
    finally:
        await polite.aclose()
    assert emulator.throttled == 0


async def test_free_times_are_cached_per_master_and_day(
    backend: YclientsBackend, emulator: YclientsEmulator
) -> None:
    before = len([c for c in emulator.calls if "/book_times/" in c.path])
    await backend.free_starts("haircut", WANTED.date(), NOW, "Иван")
    await backend.free_starts("haircut", WANTED.date(), NOW, "Иван")
    after = len([c for c in emulator.calls if "/book_times/" in c.path])
    assert after - before == 1


async def test_yekaterinburg_salon_books_in_its_own_time(local_store: BookingStore) -> None:
    catalog = config_catalog(timezone="Asia/Yekaterinburg")
    emu = await start_emulator(catalog, rate_limit=FAST)
    b = YclientsBackend(settings_for(emu), catalog, local_store)
    try:
        await b.open()
        start = datetime(2026, 11, 24, 15, 0, tzinfo=catalog.salon.tz)
        assert await b.check("haircut", start, NOW, "Иван") == ("Иван", None)
        await b.create(nb(start=start, call_id="ekb"))
        assert (
            emu.book_record_calls()[0].body["appointments"][0]["datetime"]
            == "2026-11-24T15:00:00+05:00"
        )
    finally:
        await b.close()
        await emu.stop()


async def test_wrong_config_time_zone_is_refused_at_start(local_store: BookingStore) -> None:
    emu = await start_emulator(config_catalog(), timezone="Asia/Yekaterinburg", rate_limit=FAST)
    b = YclientsBackend(settings_for(emu), config_catalog(), local_store)  # says Moscow
    try:
        with pytest.raises(BackendConfigError, match="timezone"):
            await b.open()
    finally:
        await b.close()
        await emu.stop()


async def test_cancel_by_phone(backend: YclientsBackend, emulator: YclientsEmulator) -> None:
    b1 = await backend.create(nb(call_id="c1"))
    await backend.create(nb(master="Петр", call_id="c2", phone="+79160000000"))
    found = await backend.find_by_phone("+79161234567", after=NOW)
    assert [b.id for b in found] == [b1.id]
    done = await backend.cancel(b1.id)
    assert done is not None and done.status == "cancelled"
    assert any(c.method == "DELETE" for c in emulator.calls)
    assert await backend.find_by_phone("+79161234567", after=NOW) == []
    assert await backend.cancel(b1.id) is None


def test_success_false_is_never_success() -> None:
    with pytest.raises(wire.YclientsError):
        wire.unwrap(200, {"success": False, "data": None, "meta": {"message": "nope"}})
    assert wire.error_code({"success": False, "meta": {"errors": {"code": 433}}}) == 433
    assert wire.parse_auth("Bearer p1, User u2") == ("p1", "u2")


async def test_unreachable_yclients_is_a_start_error(local_store: BookingStore) -> None:
    s = YclientsSettings(
        base_url="http://127.0.0.1:9/api/v1",
        company_id=1,
        partner_token="p",
        user_token="u",
        max_retries=0,
    )
    b = YclientsBackend(s, config_catalog(), local_store, http=httpx.AsyncClient(timeout=1))
    with pytest.raises(BackendConfigError, match="unreachable"):
        await b.open()
    await b.close()


async def test_rate_limiter_spaces_requests_on_the_injected_clock() -> None:
    from booking.yclients.client import RateLimiter
    from voicebot.clock import VirtualClock

    clock = VirtualClock()
    limiter = RateLimiter(clock, 5.0)
    stamps: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        stamps.append(clock.monotonic())

    tasks = [asyncio.ensure_future(one()) for _ in range(12)]
    await clock.advance(5.0, step=0.05)
    await asyncio.gather(*tasks)
    assert len(stamps) == 12
    for i in range(5, 12):
        assert stamps[i] - stamps[i - 5] >= 1.0  # never 6 in one second
    assert stamps[5] < 1.5 and stamps[10] < 2.5  # and not slower than needed


async def test_catalog_refresh_picks_up_new_prices(
    backend: YclientsBackend, emulator: YclientsEmulator
) -> None:
    assert backend.catalog.service("haircut").price == 1500
    emulator.company.services[0].price_min = 1800
    await backend.reload_catalog()
    assert backend.catalog.service("haircut").price == 1800


async def test_sms_code_demanded_at_booking_time_hands_off_without_a_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from booking.textsim import DIALOGUES_DIR, load_dialogue, run_dialogue

    emu = await start_emulator(config_catalog(), rate_limit=FAST)
    emu.company.sms_confirm = True  # switched on after the bot started: 432 at book_record
    monkeypatch.setenv("YCLIENTS_PARTNER_TOKEN", emu.partner_token)
    monkeypatch.setenv("YCLIENTS_USER_TOKEN", emu.user_token)
    try:
        run = await run_dialogue(
            load_dialogue(DIALOGUES_DIR / "01_all_slots_at_once.yaml"),
            f"sqlite:///{tmp_path}/c.sqlite3",
            booking_overrides={
                "backend": "yclients",
                "yclients": {"base_url": emu.url, "company_id": emu.company_id, "rate_per_s": FAST},
            },
        )
    finally:
        await emu.stop()
    assert run.summary["outcome"] == "transfer"
    assert emu.company.records == [] and len(emu.book_record_calls()) == 1
    assert not any("вы записаны" in line for line in run.bot_lines)


def test_altegio_flavor_headers() -> None:
    h = wire.headers("altegio", "p", "u")
    assert h["Accept"] == "application/vnd.api.v2+json"
    assert h["Authorization"] == "Bearer p, User u"
    s = YclientsSettings.from_config({"flavor": "altegio", "company_id": 7}, {})
    assert s.url == "https://api.alteg.io/api/v1"


async def test_refused_phone_is_asked_again_then_booked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from booking.textsim import run_dialogue

    emu = await start_emulator(config_catalog(), rate_limit=FAST)
    emu.fail_next("/book_record/", 422, 431, "Неверный формат телефона")
    monkeypatch.setenv("YCLIENTS_PARTNER_TOKEN", emu.partner_token)
    monkeypatch.setenv("YCLIENTS_USER_TOKEN", emu.user_token)
    spec = {
        "name": "bad-phone",
        "now": "2026-11-23T10:00:00+03:00",
        "caller": [
            "Хочу подстричься завтра в 15:00 к Ивану, меня зовут Анна, телефон +7 916 123-45-67",
            "Да",
            "+7 916 765-43-21",
            "Да",
        ],
    }
    try:
        run = await run_dialogue(
            spec,
            f"sqlite:///{tmp_path}/c.sqlite3",
            booking_overrides={
                "backend": "yclients",
                "yclients": {"base_url": emu.url, "company_id": emu.company_id, "rate_per_s": FAST},
            },
        )
    finally:
        await emu.stop()
    said = "\n".join(run.bot_lines)
    assert "номер телефона ещё раз" in said
    assert run.summary["outcome"] == "booked"
    assert [r.client_phone for r in emu.company.records] == ["79167654321"]


async def test_bookings_cli_reads_and_cancels_in_yclients(
    backend: YclientsBackend,
    emulator: YclientsEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse
    import json

    from booking.cli import run_cli
    from tests.yclients_fixtures import write_config

    booking = await backend.create(nb(call_id="cli"))
    cfg = write_config(tmp_path / "c.yaml", emulator)
    monkeypatch.setenv("YCLIENTS_PARTNER_TOKEN", emulator.partner_token)
    monkeypatch.setenv("YCLIENTS_USER_TOKEN", emulator.user_token)
    store = f"sqlite:///{tmp_path}/cli.sqlite3"
    ns = argparse.Namespace(
        bookings_command="list", date="2026-11-24", json=True, store=store, config=str(cfg)
    )
    assert await run_cli(ns) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(b["id"], b["master"]) for b in listed] == [(booking.id, "Иван")]
    ns = argparse.Namespace(bookings_command="cancel", id=booking.id, store=store, config=str(cfg))
    assert await run_cli(ns) == 0
    assert [r.deleted for r in emulator.company.records] == [True]


async def test_fully_booked_day_alternatives_fit_the_rate_budget(
    backend: YclientsBackend, emulator: YclientsEmulator
) -> None:
    day_start = WANTED.replace(hour=9)
    for staff in (101, 102, 103):  # every master busy all day on the 24th
        emulator.company.records.append(
            EmuRecord(staff, staff, [1], day_start, 12 * 3600, "Занято", "79160000000", "")
        )
    before = len(emulator.calls)
    master, problem = await backend.check("haircut", WANTED, NOW)
    assert (master, problem) == (None, "taken")
    opts = await backend.nearest("haircut", WANTED, NOW)
    assert opts and opts[0].start == WANTED + timedelta(days=1) and opts[0].master == "Иван"
    # 3 masters' times for the day + one merged list and one master for the next day:
    # within YCLIENTS' 5 requests per second, so the caller does not wait a second.
    assert len(emulator.calls) - before <= 5


async def test_calendar_listing_includes_cancelled_on_request(backend: YclientsBackend) -> None:
    b = await backend.create(nb(call_id="cal"))
    await backend.cancel(b.id)
    day = (WANTED.replace(hour=0), WANTED.replace(hour=23))
    assert await backend.list_between(*day) == []
    got = await backend.list_between(*day, include_cancelled=True)
    assert [(x.id, x.status) for x in got] == [(b.id, "cancelled")]


@pytest.mark.parametrize("status", [402, 503])
async def test_crm_down_mid_call_is_a_polite_handoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    from booking.bot import build_provider
    from voicebot.clock import VirtualClock
    from voicebot.config import load_config
    from voicebot.dialogue import CallContext, DialogueAction

    emu = await start_emulator(config_catalog(), rate_limit=FAST)
    monkeypatch.setenv("YCLIENTS_PARTNER_TOKEN", emu.partner_token)
    monkeypatch.setenv("YCLIENTS_USER_TOKEN", emu.user_token)
    domain = load_config(env={}).domain
    yc = {"base_url": emu.url, "company_id": emu.company_id, "rate_per_s": FAST}
    yc["max_retries"] = 0
    section = {**domain["booking"], "backend": "yclients", "yclients": yc}
    p = build_provider({**domain, "booking": section}, {"store": f"sqlite:///{tmp_path}/c.sqlite3"})
    await p.start()  # YCLIENTS answered at start...
    try:
        if status == 402:
            emu.licence_expired = True  # ...and the salon's licence ran out during the day
        else:
            for _ in range(10):
                emu.fail_next("/book_times/", status, 0, "Service Unavailable")
        d = p.new_dialogue(CallContext("down", VirtualClock(NOW)))
        [part async for part in d.greet()]
        parts = [part async for part in d.reply("Хочу подстричься завтра в 15:00 к Ивану")]
    finally:
        await p.aclose()
        await emu.stop()
    said = " ".join(x for x in parts if isinstance(x, str))
    assert "Соединяю с администратором" in said and "записаны" not in said
    kinds = [x.kind for x in parts if isinstance(x, DialogueAction)]
    assert kinds == ["transfer", "hangup"]
    assert emu.company.records == []


async def test_yekaterinburg_dialogue_books_15_00_local(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from booking.textsim import run_dialogue

    catalog = config_catalog(timezone="Asia/Yekaterinburg")
    now = datetime.fromisoformat("2026-11-23T10:00:00+05:00")
    emu = await start_emulator(catalog, now, rate_limit=FAST)
    monkeypatch.setenv("YCLIENTS_PARTNER_TOKEN", emu.partner_token)
    monkeypatch.setenv("YCLIENTS_USER_TOKEN", emu.user_token)
    salon = {**config_catalog_section()["salon"], "timezone": "Asia/Yekaterinburg"}
    spec = {
        "name": "ekb",
        "now": now.isoformat(),
        "caller": [
            "Хочу подстричься завтра в 15:00 к Ивану, меня зовут Анна, телефон +7 916 123-45-67",
            "Да",
        ],
    }
    try:
        run = await run_dialogue(
            spec,
            f"sqlite:///{tmp_path}/c.sqlite3",
            booking_overrides={
                "salon": salon,
                "backend": "yclients",
                "yclients": {
                    "base_url": emu.url,
                    "company_id": emu.company_id,
                    "rate_per_s": FAST,
                    "flavor": "altegio",  # the same API abroad, its own Accept header
                },
            },
        )
    finally:
        await emu.stop()
    assert run.summary["outcome"] == "booked"
    call = emu.book_record_calls()[0]
    assert call.body["appointments"][0]["datetime"] == "2026-11-24T15:00:00+05:00"
    assert call.headers["Accept"] == "application/vnd.api.v2+json"
    assert run.bookings[0]["start"] == "2026-11-24T15:00:00+05:00"


def config_catalog_section() -> dict:  # type: ignore[type-arg]
    from voicebot.config import load_config

    return dict(load_config(env={}).domain["booking"])
