"""The salon's page and calendar feed over HTTP: tokens, cookie, CSRF, masked phones,
the day view, cancel, booking by hand, calls, numbers and the iCalendar feed."""

from __future__ import annotations

import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from booking.web.auth import AdminAuth
from tests.admin_fixtures import ADMIN, CAL, PHONE, salon_app, seed, tomorrow_at

BEARER = {"Authorization": f"Bearer {ADMIN}"}
TZ = ZoneInfo("Europe/Moscow")


async def _login(client) -> str:
    r = await client.post(
        "/admin/login", data={"token": ADMIN, "next": "/admin"}, allow_redirects=False
    )
    assert r.status == 303
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    page = await (await client.get("/admin")).text()
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)


async def test_off_without_token_says_how_to_turn_it_on(tmp_path: Path) -> None:
    async with salon_app(tmp_path, env={}) as (client, provider):
        await seed(provider)
        r = await client.get("/admin")
        text = await r.text()
        assert r.status == 503 and "VOICEBOT_ADMIN_TOKEN" in text and "Анна" not in text
        assert (await client.get("/admin/api/day", headers=BEARER)).status == 503
        assert (await client.get("/calendar.ics?token=x")).status == 404


async def test_wrong_token_gets_401_and_no_data(tmp_path: Path) -> None:
    async with salon_app(tmp_path) as (client, provider):
        b = await seed(provider)
        day = b.start.date().isoformat()
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            for path in (
                f"/admin?date={day}",
                "/admin/calls",
                "/admin/calls/c1",
                f"/admin/api/bookings/{b.id}/phone",
                "/admin/numbers",
            ):
                r = await client.get(path, headers=headers)
                text = await r.text()
                assert r.status == 401, path
                assert "Анна" not in text and PHONE[2:] not in re.sub(r"\D", "", text)
        r = await client.post("/admin/login", data={"token": "wrong"})
        assert r.status == 401 and "Неверный токен" in await r.text()
        assert "Set-Cookie" not in r.headers
        client.session.cookie_jar.update_cookies({"vb_admin": "9999999999.deadbeef"})
        assert (await client.get("/admin")).status == 401  # a forged cookie
        r = await client.post(f"/admin/bookings/{b.id}/cancel", data={"csrf": "x"})
        assert r.status == 401 and (await provider.store.get(b.id)).status == "active"
        assert (await client.get("/calendar.ics")).status == 401
        assert (await client.get(f"/calendar.ics?token={ADMIN}")).status == 401


async def test_day_view_masks_phones_until_clicked_and_cancels_with_csrf(tmp_path: Path) -> None:
    async with salon_app(tmp_path) as (client, provider):
        b = await seed(provider)
        csrf = await _login(client)
        html = await (await client.get(f"/admin?date={b.start.date()}")).text()
        assert f'data-booking-id="{b.id}"' in html and "Анна" in html and "Стрижка" in html
        assert 'data-master="Иван"' in html
        assert PHONE not in html and "9161234567" not in re.sub(r"\D", "", html)
        r = await client.get(f"/admin/api/bookings/{b.id}/phone")
        assert (await r.json())["phone"] == PHONE
        # The confirmation step, then a POST without / with the CSRF token.
        r = await client.get(f"/admin/bookings/{b.id}", allow_redirects=False)
        assert r.headers["Location"] == f"/admin?date={b.start.date()}#b-{b.id}"
        confirm = await (await client.get(f"/admin/bookings/{b.id}/cancel")).text()
        assert "Да, отменить" in confirm
        r = await client.post(f"/admin/bookings/{b.id}/cancel", data={"csrf": "forged"})
        assert r.status == 403 and (await provider.store.get(b.id)).status == "active"
        r = await client.post(
            f"/admin/bookings/{b.id}/cancel", data={"csrf": csrf}, allow_redirects=False
        )
        assert r.status == 303
        after = await provider.store.get(b.id)
        assert after.status == "cancelled" and after.seq == b.seq + 1
        html = await (await client.get(f"/admin?date={b.start.date()}")).text()
        assert f'data-booking-id="{b.id}"' not in html


async def test_booking_by_hand_uses_the_bots_checks(tmp_path: Path) -> None:
    async with salon_app(tmp_path) as (client, provider):
        b = await seed(provider, hour=15, master="Иван")
        day = b.start.date().isoformat()
        form = {
            "date": day,
            "time": "15:00",
            "service": "haircut",
            "master": "Иван",
            "name": "Борис",
            "phone": "8 903 111-22-33",
        }
        r = await client.post(
            "/admin/bookings", data=form, headers={**BEARER, "Accept": "application/json"}
        )
        assert r.status == 409 and "занято" in (await r.json())["error"]
        r = await client.post(
            "/admin/bookings",
            data={**form, "time": "20:50"},
            headers={**BEARER, "Accept": "application/json"},
        )
        assert r.status == 409 and "не работает" in (await r.json())["error"]
        r = await client.post(
            "/admin/bookings",
            data={**form, "master": ""},
            headers={**BEARER, "Accept": "application/json"},
        )
        made = await r.json()
        assert r.status == 201 and made["master"] != "Иван" and made["phone"] == "+79031112233"
        day_json = await (await client.get(f"/admin/api/day?date={day}", headers=BEARER)).json()
        assert {x["id"] for x in day_json} == {b.id, made["id"]}
        # A cookie session must carry the CSRF token to create, too.
        csrf = await _login(client)
        r = await client.post("/admin/bookings", data={**form, "time": "16:00"})
        assert r.status == 403
        r = await client.post("/admin/bookings", data={**form, "time": "16:00", "csrf": csrf})
        page = await r.text()
        assert r.status == 200 and "Записано:" in page and "Борис" in page
        r = await client.post("/admin/bookings", data={**form, "time": "16:00", "csrf": csrf})
        assert "Это время занято." in await r.text()
        # Only fixed sentences reach the page from the query string.
        page = await (
            await client.get(f"/admin?date={day}&error=<b>x</b>&done=booked&id=<i>")
        ).text()
        assert "<b>x" not in page and "&lt;b&gt;" not in page and "Записано" not in page


async def test_calls_and_numbers(tmp_path: Path) -> None:
    async with salon_app(tmp_path) as (client, provider):
        b = await seed(provider)
        await _login(client)
        html = await (await client.get("/admin/calls")).text()
        assert 'data-call-id="c1"' in html and 'data-outcome="booked"' in html
        assert "420 · 610 мс" in html or "420 · 611 мс" in html
        detail = await (await client.get("/admin/calls/c1")).text()
        assert "Стрижка завтра, Анна" in detail and b.id in detail and "browser" in detail
        figures = await (
            await client.get("/admin/numbers?days=7", headers={"Accept": "application/json"})
        ).json()
        today = figures[-1]
        assert today["calls"] == 1 and today["booked"] == 1 and today["booking_rate"] == 1.0
        assert today["latency_median_ms"] in (515, 516) and today["latency_p95_ms"] > 590
        page = await (await client.get("/admin/numbers")).text()
        assert "/admin/static/chart.min.js" in page and 'id="figures"' in page
        js = await client.get("/admin/static/chart.min.js")
        assert js.status == 200 and "Chart.js" in (await js.text())[:200]


async def test_calendar_feed_uid_sequence_and_cancellation(tmp_path: Path) -> None:
    async with salon_app(tmp_path) as (client, provider):
        b = await seed(provider)
        other = await seed_other(provider)
        r = await client.get(f"/calendar.ics?token={CAL}")
        assert r.status == 200 and r.content_type == "text/calendar"
        cal = Calendar.from_ical(await r.read())
        assert [str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")] == ["Europe/Moscow"]
        events = {str(e["UID"]): e for e in cal.walk("VEVENT")}
        ev = events[f"{b.id}@voicebot.local"]
        assert ev["STATUS"] == "CONFIRMED" and int(ev["SEQUENCE"]) == 0
        assert ev.decoded("DTSTART") == b.start and PHONE not in (await r.text())
        etag = r.headers["ETag"]
        again = await client.get(f"/calendar.ics?token={CAL}", headers={"If-None-Match": etag})
        assert again.status == 304  # unchanged: calendar apps' polls cost nothing
        await provider.store.cancel(b.id)
        r2 = await client.get(f"/calendar.ics?token={CAL}", headers={"If-None-Match": etag})
        assert r2.status == 200 and r2.headers["ETag"] != etag
        cal2 = Calendar.from_ical(await r2.read())
        ev2 = {str(e["UID"]): e for e in cal2.walk("VEVENT")}[f"{b.id}@voicebot.local"]
        assert ev2["STATUS"] == "CANCELLED" and int(ev2["SEQUENCE"]) > int(ev["SEQUENCE"])
        per_master = Calendar.from_ical(
            await (await client.get(f"/calendar.ics?token={CAL}&master=Петр")).read()
        )
        assert [str(e["UID"]) for e in per_master.walk("VEVENT")] == [f"{other.id}@voicebot.local"]
        assert (await client.get(f"/calendar.ics?token={CAL}&master=Никто")).status == 404


async def seed_other(provider):
    from datetime import timedelta

    from booking.models import NewBooking

    start = tomorrow_at(provider, 11)
    return await provider.store.create(
        NewBooking("styling", "Петр", start, start + timedelta(minutes=20), "Олег", "+79160000000")
    )


def test_session_cookie_expires_and_dies_with_the_token() -> None:
    auth = AdminAuth("one")
    cookie = auth.new_session(now=1000.0)
    assert auth.session_ok(cookie, now=1001.0)
    assert not auth.session_ok(cookie, now=1000.0 + 13 * 3600)
    assert not AdminAuth("two").session_ok(cookie, now=1001.0)
    assert auth.csrf_ok(cookie, auth.csrf_for(cookie)) and not auth.csrf_ok(cookie, "x")


async def test_the_page_and_feed_show_yclients_bookings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `booking.backend: yclients` the day view, the cancel and the feed go through
    the YCLIENTS backend (on its local emulator, a test double)."""
    from datetime import datetime, timedelta

    from booking.models import NewBooking
    from tests.yclients_fixtures import FAST, config_catalog, start_emulator

    emu = await start_emulator(config_catalog(), datetime.now(TZ), rate_limit=FAST)
    monkeypatch.setenv("YCLIENTS_PARTNER_TOKEN", emu.partner_token)
    monkeypatch.setenv("YCLIENTS_USER_TOKEN", emu.user_token)
    overrides = {
        "backend": "yclients",
        "yclients": {"base_url": emu.url, "company_id": emu.company_id, "rate_per_s": FAST},
    }
    try:
        async with salon_app(tmp_path, booking_overrides=overrides) as (client, provider):
            start = tomorrow_at(provider, 12)
            b = await provider.backend.create(
                NewBooking("haircut", "Петр", start, start + timedelta(minutes=30), "Вера", PHONE)
            )
            assert provider.backend.kind == "yclients" and await provider.store.list_all() == []
            day = await (
                await client.get(f"/admin/api/day?date={start.date()}", headers=BEARER)
            ).json()
            assert [(x["id"], x["master"], x["name"]) for x in day] == [(b.id, "Петр", "Вера")]
            r = await client.post(
                f"/admin/bookings/{b.id}/cancel", headers={**BEARER, "Accept": "application/json"}
            )
            assert (await r.json())["cancelled"] is True
            assert [r for r in emu.company.records if not r.deleted] == []
            cal = Calendar.from_ical(await (await client.get(f"/calendar.ics?token={CAL}")).read())
            (ev,) = [e for e in cal.walk("VEVENT") if str(e["UID"]).startswith(f"{b.id}@")]
            assert ev["STATUS"] == "CANCELLED" and int(ev["SEQUENCE"]) >= 1
    finally:
        await emu.stop()


async def test_serve_runs_the_retention_purge_at_start_and_daily(tmp_path: Path) -> None:
    """The purge runs when the app starts and again every `purge_every_h` (virtual time)."""
    from datetime import datetime, timedelta

    from booking.models import CallRecord
    from booking.privacy.retention import PURGES_KEY
    from booking.store.base import open_store
    from voicebot.clock import VirtualClock

    now = datetime(2026, 11, 23, 10, tzinfo=TZ)
    clock = VirtualClock(now)
    store = open_store(f"sqlite:///{tmp_path}/s.sqlite3")
    await store.open()
    for cid, age in (("ancient", 400), ("aging", 89.5)):
        t = now - timedelta(days=age)
        await store.save_call(CallRecord(cid, t, t, "booked", "r", [], {}, "", None, {}))
    await store.close()
    async with salon_app(tmp_path, clock=clock) as (client, provider):
        purges = client.app[PURGES_KEY]
        while not purges:
            await clock.advance(0.01)
        assert purges[0].calls_deleted == ("ancient",)
        assert await provider.store.get_call("aging") is not None
        await clock.advance(24 * 3600, step=3600)
        while len(purges) < 2:
            await clock.advance(0.01)
        assert purges[1].calls_deleted == ("aging",)


async def test_a_refused_identity_check_shows_on_the_call_with_a_link_not_the_phone(
    tmp_path: Path,
) -> None:
    from datetime import datetime

    from booking.models import CallRecord

    async with salon_app(tmp_path) as (client, provider):
        b = await seed(provider)
        note = {
            "kind": "identity_not_proven",
            "phone": PHONE,
            "booking_ids": [b.id],
            "text": "Не подтвердил личность для записи на номер +*********67: перезвонить.",
        }
        now = datetime.now(TZ)
        await provider.store.save_call(
            CallRecord(
                "c2",
                now,
                now,
                "no_booking",
                "caller_hangup",
                [{"role": "caller", "text": "Отмените запись +7 916 123-45-67", "at_ms": 5}],
                {},
                "",
                None,
                {"channel": "voximplant", "notes": [note]},
            )
        )
        await _login(client)
        listing = await (await client.get("/admin/calls")).text()
        assert 'data-call-id="c2"' in listing and "заметка" in listing
        page = await (await client.get("/admin/calls/c2")).text()
        assert f'href="/admin/bookings/{b.id}"' in page and "перезвонить" in page
        assert "9161234567" not in re.sub(r"\D", "", page)
