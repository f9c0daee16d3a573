"""YandexGPT structured-output extraction, used only when the deterministic layer did
not understand a turn (or always, if configured). Whatever the model returns is validated
and normalized by the deterministic parsers; any failure yields None and the caller keeps
the deterministic result."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from booking.catalog import Catalog
from booking.extract import Extraction
from booking.extract.names import find_name
from booking.extract.phone import normalize_phone
from booking.extract.services import find_master
from booking.replies import PROMPTS_DIR, WEEKDAYS_ACC
from booking.state import Slots
from voicebot.providers.base import ChatMessage, GenerationOptions, LanguageModel, ProviderError

log = logging.getLogger(__name__)

SCHEMA_FILE = PROMPTS_DIR / "booking_extract_schema.json"
SYSTEM_FILE = PROMPTS_DIR / "booking_system.txt"
INTENTS = {
    "price",
    "hours",
    "address",
    "services",
    "human",
    "goodbye",
    "restart",
    "cancel_booking",
    "free_times",
}
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)


def load_schema(path: Path = SCHEMA_FILE) -> dict[str, Any]:
    """The JSON schema the extraction answer must follow."""
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def system_prompt(catalog: Catalog, now: datetime, last_prompt: str, template: str) -> str:
    """The extraction prompt for `catalog` at `now`, after the bot's `last_prompt`."""
    h = catalog.salon.hours
    return template.format(
        salon=catalog.salon.name,
        address=catalog.salon.address,
        today=now.date().isoformat(),
        weekday=WEEKDAYS_ACC[now.weekday()].split()[-1],
        now=now.strftime("%H:%M"),
        timezone=catalog.salon.timezone,
        services="; ".join(
            f"{s.id} — {s.name}, {s.duration_min} мин, {s.price} руб." for s in catalog.services
        ),
        masters=", ".join(m.name for m in catalog.masters),
        open=h.open.strftime("%H:%M"),
        close=h.close.strftime("%H:%M"),
        last_prompt=last_prompt,
    )


def parse_json(text: str) -> dict[str, Any] | None:
    """The model's answer as a JSON object (code fences stripped), or None."""
    try:
        data = json.loads(_FENCE.sub("", text.strip()))
    except (json.JSONDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def validate(data: dict[str, Any], catalog: Catalog, today: date) -> Extraction:
    """Keep only values the deterministic layer accepts, in its normalized form."""

    def s(key: str) -> str | None:
        v = data.get(key)
        return v.strip() if isinstance(v, str) and v.strip() else None

    service = s("service")
    if service not in {x.id for x in catalog.services}:
        service = None
    master_raw = s("master")
    master = find_master(master_raw, catalog) if master_raw else None
    d: date | None = None
    if (raw := s("date")) is not None:
        try:
            d = date.fromisoformat(raw)
        except ValueError:
            d = None
        if d is not None and not (today <= d <= date.fromordinal(today.toordinal() + 90)):
            d = None
    t: time | None = None
    if (raw := s("time")) is not None and re.fullmatch(r"\d{1,2}:\d{2}", raw):
        hh, mm = (int(x) for x in raw.split(":"))
        t = time(hh, mm) if hh < 24 and mm < 60 else None
    part = s("part_of_day")
    name_raw = s("name")
    name = None
    if name_raw and re.fullmatch(r"[А-ЯЁа-яё-]{2,30}", name_raw):
        found = find_name(name_raw, expecting=True)
        name = found[0] if found else None
    answer = s("answer")
    intent = s("intent")
    return Extraction(
        service=service,
        master=master,
        master_any=data.get("any_master") is True,
        date=d,
        time=t,
        part_of_day=part if part in {"morning", "afternoon", "evening"} and t is None else None,
        name=name,
        phone=normalize_phone(s("phone")),
        answer=answer if answer in {"yes", "no"} else None,  # type: ignore[arg-type]
        intents=frozenset({intent}) if intent in INTENTS else frozenset(),
    )


class LlmExtractor:
    """Slots from YandexGPT when the parsers understood nothing, bounded by a timeout (the
    deterministic result then stands)."""

    def __init__(
        self,
        llm: LanguageModel,
        catalog: Catalog,
        *,
        timeout_s: float = 1.5,
        system_template: str | None = None,
        schema: dict[str, Any] | None = None,
    ) -> None:
        self.llm = llm
        self.catalog = catalog
        self.timeout_s = timeout_s
        self.template = system_template or SYSTEM_FILE.read_text(encoding="utf-8")
        self.schema = schema or load_schema()

    async def extract(
        self, text: str, now: datetime, last_prompt: str, history: list[ChatMessage]
    ) -> Extraction | None:
        """The model's reading of `text`, validated; None on any failure or timeout."""
        messages = [
            ChatMessage("system", system_prompt(self.catalog, now, last_prompt, self.template)),
            *history[-6:],
            ChatMessage("user", text),
        ]
        options = GenerationOptions(
            temperature=0.0, max_tokens=200, json_schema=self.schema, timeout_s=self.timeout_s
        )
        try:
            completion = await asyncio.wait_for(
                self.llm.complete(messages, options), timeout=self.timeout_s
            )
        except (ProviderError, TimeoutError) as e:
            log.warning("LLM extraction failed, using deterministic result: %r", e)
            return None
        except Exception:  # a broken client must never break the call
            log.exception("LLM extraction crashed; using deterministic result")
            return None
        data = parse_json(completion.text)
        if data is None:
            log.warning("LLM extraction returned malformed JSON; using deterministic result")
            return None
        return validate(data, self.catalog, now.date())


async def llm_summary(
    llm: LanguageModel, transcript: str, facts: str, *, timeout_s: float = 3.0
) -> str | None:
    """A short call summary by the model, or None (the template is used then)."""
    prompt = (PROMPTS_DIR / "booking_summary.txt").read_text(encoding="utf-8")
    messages = [
        ChatMessage("system", prompt),
        ChatMessage("user", f"Факты: {facts}\n\nРазговор:\n{transcript}"),
    ]
    try:
        c = await asyncio.wait_for(
            llm.complete(
                messages, GenerationOptions(temperature=0.2, max_tokens=200, timeout_s=timeout_s)
            ),
            timeout=timeout_s,
        )
    except (ProviderError, TimeoutError) as e:
        log.warning("LLM summary failed: %r", e)
        return None
    except Exception:
        log.exception("LLM summary crashed")
        return None
    text = c.text.strip()
    return text or None


def only_new_slots(got: Extraction, slots: Slots) -> Extraction:
    """When the parser understood the turn, the model may only fill slots still empty:
    it must not overwrite what the caller already settled (hallucination guard)."""
    return Extraction(
        service=got.service if slots.service is None else None,
        master=got.master if slots.master_request is None else None,
        date=got.date if slots.date is None else None,
        time=got.time if slots.time is None else None,
        name=got.name if slots.name is None else None,
        phone=got.phone if slots.phone is None else None,
    )
