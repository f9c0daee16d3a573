"""The booking bot as the engine's dialogue: `dialogue.factory: booking.bot:build_provider`.

`BookingProvider` owns the process-wide pieces (catalog, backend, store, templates,
the notification outbox's sender); `BookingDialogue` is one call: it runs the deterministic extractor (and YandexGPT only
when that did not understand the turn), feeds the state machine, and stores the call
record at the end.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Hashable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web

from booking.audit import AuditedBackend, TurnAudit
from booking.backends import BookingBackend
from booking.backends.factory import open_backend
from booking.catalog import Catalog
from booking.extract import Expecting, Extraction, extract
from booking.faq import FREE_QUESTION, FaqSettings, FreeQuestions, is_free_question
from booking.fixtures import fixture_bookings
from booking.heard import note_unheard, reread
from booking.llm import LlmExtractor, llm_summary, only_new_slots
from booking.machine import BookingMachine
from booking.metrics import OutboxDepth
from booking.models import Booking, CallRecord, NewBooking
from booking.notify.factory import build_sender
from booking.notify.message import Kind, Notification, OutboxStats
from booking.notify.notifier import Notifier
from booking.notify.sender import OutboxSender
from booking.notify.settings import NotifySettings
from booking.privacy import PrivacySettings
from booking.replies import Replies, load_templates
from booking.settings import BookingSettings
from booking.speculative import (
    NotSpeculable,
    decision_key,
    expects_more,
    needs_model,
    sandbox,
)
from booking.store.base import BookingStore, open_store
from booking.summary import template_summary, transcript_text
from voicebot.clock import Clock, RealClock
from voicebot.dialogue import (
    CallContext,
    Dialogue,
    DialogueAction,
    Notice,
    ReplyPart,
    Speculation,
    TranscriptLine,
)
from voicebot.providers.base import ChatMessage
from voicebot.redact import redact_url

log = logging.getLogger(__name__)

# Engine turn triggers that answer the caller: their latency is voice-to-voice.
ANSWERED_TRIGGERS = frozenset({"utterance", "text"})


class BookingProvider:
    """The booking domain for the engine: catalog, store, backend, replies, notifications.

    `notify`: the raw `notify:` section; `clock`: the engine's clock (a simulation's
    "now" reaches an in-process YCLIENTS emulator through it); `run_sender`: deliver
    the outbox from this process (default) or leave it to `voicebot notifications send`;
    `privacy`: the typed `privacy:` section (notice, retention terms).
    """

    def __init__(
        self,
        settings: BookingSettings,
        *,
        notify: Mapping[str, Any] | None = None,
        clock: Clock | None = None,
        run_sender: bool = True,
        privacy: PrivacySettings | None = None,
    ) -> None:
        self.settings = settings
        self.privacy = privacy or PrivacySettings()
        self._notify_section = dict(notify or {})
        # Process-level time (the daily retention purge); calls use their own clock.
        self.clock: Clock = clock or RealClock()
        self.section = dict(settings.section)
        self.config_catalog = settings.catalog
        self.store_url = settings.store
        # The store always keeps call records and the notification outbox; it also
        # keeps the bookings when `booking.backend` is `local`.
        self.store: BookingStore = open_store(self.store_url)
        self.backend: BookingBackend = open_backend(
            settings.section, self.config_catalog, self.store, clock=clock
        )
        self.replies = Replies(load_templates(settings.templates))
        self.use_llm = settings.use_llm
        self.llm_timeout_s = settings.llm_timeout_s
        self.max_silence_prompts = settings.max_silence_prompts
        self.notify_settings = NotifySettings.from_config(
            notify, os.environ, legacy_webhook_url=settings.webhook_url
        )
        crm_sms = int(getattr(getattr(self.backend, "settings", None), "notify_by_sms", 0) or 0)
        self.notifier = Notifier(
            self.notify_settings, lambda: self.catalog, crm_sends_sms=crm_sms > 0
        )
        self.sender: OutboxSender | None = None
        self._depth: OutboxDepth | None = None  # the queue-depth gauge's poller
        self.run_sender = run_sender
        self.faq = FaqSettings.from_section(settings.section.get("faq"))

    def public_info(self) -> dict[str, str]:
        """The salon's name, address and timezone, for the browser page."""
        return self.settings.public_info()

    def redacted(self) -> dict[str, Any]:
        """`booking:` and `notify:` as they may be logged (URLs without passwords or
        tokens; bot tokens and passwords come from the environment, never the file)."""
        out = self.settings.redacted()
        notify = dict(self._notify_section)
        hook = notify.get("webhook")
        if isinstance(hook, dict) and hook.get("url"):
            notify["webhook"] = {**hook, "url": redact_url(str(hook["url"]))}
        out["notify"] = notify
        return out

    @property
    def catalog(self) -> Catalog:
        """The backend's current catalog (YCLIENTS refreshes it in the background)."""
        return self.backend.catalog

    async def start(self) -> None:
        """Open the store and the backend, start the outbox sender, warm the parsers up."""
        await self.store.open()
        await self.backend.open()
        if self.notify_settings.any_active and self.run_sender:
            self.sender = build_sender(self.notify_settings, self.store.outbox, self.notifier)
            self.sender.start()
            self._depth = OutboxDepth.started(self.outbox_stats, self.sender.clock)
        self._warm_up()

    def notify(self, kind: Kind, booking: Booking | NewBooking) -> list[Notification]:
        """Outbox rows for an event (the machine's `Notify`); wakes the sender."""
        rows = self.notifier.rows(kind, booking)
        if rows:
            self.kick_sender()
        return rows

    async def outbox_stats(self) -> OutboxStats:
        """Queue depth and failures as the database sees them (every process's rows,
        also when the sender runs as a separate worker): for metrics."""
        return await self.store.outbox.stats(datetime.now(UTC))

    def kick_sender(self) -> None:
        """Rows were (or are about to be) committed: deliver now, not at the next poll."""
        if self.sender is not None:
            self.sender.kick()

    async def handoff(self, call_id: str, reason: str, slots: Mapping[str, Any]) -> None:
        """Tell the salon a call was handed to a person (outbox, own transaction)."""
        phone = slots.get("phone")
        rows = self.notifier.handoff_rows(call_id, reason, slots, str(phone) if phone else None)
        if not rows:
            return
        try:
            await self.store.outbox.enqueue(rows, None, datetime.now(UTC))
        except Exception:
            log.exception("could not enqueue the handoff notice for %s", call_id)
            return
        if self.sender is not None:
            self.sender.kick()

    def _warm_up(self) -> None:
        """Load the morphology dictionaries and phone metadata now, not on the first
        caller's turn (it cost ~100 ms there)."""
        sample = (
            "Хочу подстричься к Ивану завтра в 15:00, меня зовут Анна, телефон +7 916 123-45-67"
        )
        extract(sample, self.catalog, date(2026, 1, 1))

    def new_dialogue(self, ctx: CallContext) -> Dialogue:
        """The booking dialogue of one call."""
        return BookingDialogue(self, ctx)

    async def prepare(self, setup: Mapping[str, Any]) -> None:
        """Seed bookings from a dialogue file's `setup:` (tests, simulate)."""
        for booking in fixture_bookings(self.catalog, setup):
            await self.backend.create(booking)

    def extra_routes(self, app: web.Application) -> None:
        """The engine's hook for a domain's own pages: the salon's `/admin`, the
        `/calendar.ics` feed and the daily retention purge (booking/web)."""
        from booking.web import mount

        mount(app, self)

    async def aclose(self) -> None:
        """Drain and stop the outbox sender, close the backend and the store."""
        await OutboxDepth.stop_if(self._depth)
        if self.sender is not None:
            await self.sender.drain()
            await self.sender.stop()
        await self.backend.close()
        await self.store.close()


class BookingDialogue:
    """One call's booking conversation: understanding (parsers, then YandexGPT when needed),
    the state machine, the call record."""

    def __init__(self, provider: BookingProvider, ctx: CallContext) -> None:
        self.p = provider
        self.ctx = ctx
        self.started_at = ctx.clock.now()
        self.llm: LlmExtractor | None = None
        if ctx.llm is not None and provider.use_llm in {"auto", "always"}:
            self.llm = LlmExtractor(ctx.llm, provider.catalog, timeout_s=provider.llm_timeout_s)
        self.machine = BookingMachine(
            catalog=provider.catalog,
            backend=AuditedBackend(provider.backend),
            replies=provider.replies,
            clock=ctx.clock,
            understand=self._understand,
            call_id=ctx.session_id,
            caller_id=ctx.caller_id,
            max_silence_prompts=provider.max_silence_prompts,
            notify=provider.notify,
            on_booked=lambda _booking: provider.kick_sender(),
        )
        self.turn_log: list[dict[str, Any]] = []
        self.audit = TurnAudit(ctx.clock, lambda: self.machine.state.history, self.turn_log)
        # Voice-to-voice latency (ms) of each answered turn, and engine errors, as the
        # engine reported them through `on_event`: the salon page shows both.
        self.turn_latency_ms: list[float] = []
        self.errors: list[str] = []
        self._history: list[ChatMessage] = []
        self._readback_unheard = False  # the caller did not hear the read-back out
        self._lock = asyncio.Lock()
        self.faq = FreeQuestions(provider.catalog, provider.faq, ctx.llm, provider.use_llm)
        self._question: str | None = None  # a free question heard in this turn
        self.last_decision: Hashable | None = None  # of the last reply (speculation)

    @property
    def state(self) -> Any:
        """The state machine's state (slots, phase, outcome)."""
        return self.machine.state

    def _extract(self, text: str, expecting: Expecting) -> Extraction:
        """The deterministic parse of `text` in the call's current state."""
        st = self.machine.state
        return extract(
            text,
            self.p.catalog,
            self.machine.today(),
            expecting,
            now=self.machine.now(),
            current_service=st.slots.service,
            have_name=st.slots.name is not None,
        )

    async def _understand(self, text: str, expecting: Expecting) -> Extraction:
        st = self.machine.state
        det = self._extract(text, expecting)
        if is_free_question(text, det):
            # Not for the slot extractor: answered from the salon's facts (booking.faq).
            self._question = text
            ex = Extraction(intents=frozenset({FREE_QUESTION}))
            self.turn_log.append({"text": text, "extracted": ex.to_json(), "llm": False})
            self._history.append(ChatMessage("user", text))
            return ex
        used_llm = False
        ex = det
        # The coverage rule: words about when that the parser could not place go to the
        # model too (with `use_llm: auto`); its answer passes the same validators.
        need = self.p.use_llm == "always" or not det.resolved or bool(det.unplaced)
        if self.llm is not None and need:
            used_llm = True
            st.llm_turns += 1
            got = await self.llm.extract(text, self.machine.now(), st.last_prompt, self._history)
            if got is None:
                st.llm_failures += 1
            else:
                if det.unplaced and (got.date or got.time):
                    # The model placed what the parser could not: its date/time (already
                    # validated) replaces the fragment, and nothing is left unplaced.
                    det = replace(det, unplaced=(), date=got.date or det.date, time=got.time)
                    got = replace(got, date=None, time=None)
                if det.resolved:
                    got = only_new_slots(got, st.slots)
                ex = det.merged_with(got)
        self.turn_log.append(
            {
                "text": text,
                "expecting": expecting,
                "resolved": ex.resolved,
                "extracted": ex.to_json(),
                "llm": used_llm,
            }
        )
        self._history.append(ChatMessage("user", text))
        return ex

    async def _emit(self, parts: Sequence[ReplyPart]) -> AsyncIterator[ReplyPart]:
        said = " ".join(p for p in parts if isinstance(p, str))
        if said:
            self._history.append(ChatMessage("assistant", said))
        for part in parts:
            if isinstance(part, DialogueAction) and part.kind == "transfer":
                data = dict(part.data or {})
                reason = str(data.pop("reason", "transfer"))
                await self.p.handoff(self.ctx.session_id, reason, data)
        for part in parts:
            yield part

    def on_event(self, event: Mapping[str, Any]) -> None:
        """Engine events of this call (runtime forwards them): keeps the latency of each
        answer to the caller (voice or typed; not the greeting or a silence reprompt,
        which answer nothing) and the errors."""
        if event.get("type") == "turn" and event.get("trigger") in ANSWERED_TRIGGERS:
            total = (event.get("latency_ms") or {}).get("total")
            if isinstance(total, int | float):
                self.turn_latency_ms.append(round(float(total), 1))
        elif event.get("type") == "error":
            self.errors.append(str(event.get("code", "error")))

    async def greet(self) -> AsyncIterator[ReplyPart]:
        """The privacy notice and the greeting."""
        # 152-FZ: the caller hears that the call is recorded before anything else;
        # `Notice` makes the engine play it in full even when the caller speaks or types.
        if self.p.privacy.notice:
            yield Notice(self.p.privacy.notice)
        async with self._lock:
            mark = self.audit.mark()
            parts = await self.machine.greet()
            self.audit.record("greeting", None, mark, parts)
        async for part in self._emit(parts):
            yield part

    def on_unheard(self, said: str, heard: str) -> None:
        """Engine hook: only `heard` of `said` was played (see `booking.heard`)."""
        self._readback_unheard = note_unheard(self._history, self.machine.state, said, heard)

    async def reply(self, text: str) -> AsyncIterator[ReplyPart]:
        """The machine's answer to one caller utterance."""
        async with self._lock:
            self._question = None
            history_before = len(self.machine.state.history)
            mark = self.audit.mark()
            # A "да" to a read-back not heard out confirms nothing: it is read again.
            again = reread(self.machine.state, self._readback_unheard, text, self.turn_log)
            self._readback_unheard = False
            parts: Sequence[ReplyPart] = again or await self.machine.reply(text)
            self.audit.record("reply", text, mark, parts)
            question = self._question
            self.last_decision = (
                None if question else decision_key(self.machine, history_before, parts)
            )
        if question is not None:
            # The answer first, then the machine's parts: its current question again.
            said: list[str] = []
            async for delta in self.faq.answer(question, self.machine.now()):
                said.append(delta)
                yield delta
            if self.faq.last_handoff is not None:
                yield DialogueAction("question_for_admin", dict(self.faq.last_handoff))
            self._history.append(ChatMessage("assistant", "".join(said)))
        async for part in self._emit(parts):
            yield part

    async def speculate(self, text: str) -> Speculation | None:
        """The reply to `text` from a sandbox (nothing committed), or None when the turn
        would need YandexGPT, would book or cancel, or acts (engine speculation)."""
        if self._lock.locked():
            return None
        box = sandbox(self.machine, self._sandbox_understand)
        history_before = len(box.state.history)
        try:
            parts = await box.reply(text)
        except NotSpeculable:
            return None
        if any(isinstance(p, DialogueAction) for p in parts):
            return None
        return Speculation(decision_key(box, history_before, parts), tuple(parts))

    async def _sandbox_understand(self, text: str, expecting: Expecting) -> Extraction:
        det = self._extract(text, expecting)
        if is_free_question(text, det) or needs_model(det, self.p.use_llm, self.llm is not None):
            raise NotSpeculable("model")
        return det

    def expects_more(self, text: str) -> bool:
        """Whether `text` is visibly unfinished (half a phone number, «меня зовут…»):
        the engine then waits `engine.continuation_wait_ms` for the rest."""
        st = self.machine.state
        return expects_more(text, self.machine.expecting, getattr(st, "phone_buffer", ""))

    async def on_silence(self, count: int) -> AsyncIterator[ReplyPart]:
        """«Вы меня слышите?» up to the limit, then a goodbye and a hang-up."""
        async with self._lock:
            mark = self.audit.mark()
            parts = await self.machine.silence(count)
            self.audit.record("silence", None, mark, parts)
        async for part in self._emit(parts):
            yield part

    async def close(self, transcript: Sequence[TranscriptLine], reason: str) -> Mapping[str, Any]:
        """Store the call record (summary, transcript, extraction) and return the call's
        summary."""
        st = self.machine.state
        summary = None
        if self.ctx.llm is not None and self.p.use_llm != "never" and transcript:
            summary = await llm_summary(
                self.ctx.llm, transcript_text(transcript), str(st.slots.to_json())
            )
        summary = summary or template_summary(st, self.p.catalog)
        turns = st.turns
        stats = {
            "turns": turns,
            "free_questions_answered": self.faq.answered,
            "handoff_questions": len(self.faq.handoffs),
            "llm_turns": st.llm_turns,
            "llm_failures": st.llm_failures,
            "llm_share": round(st.llm_turns / turns, 3) if turns else 0.0,
            "phase": st.phase.value,
            "path": [t for _, t, _ in st.history],
        }
        stored_stats = {
            **stats,
            "channel": self.ctx.channel,
            "turn_latency_ms": list(self.turn_latency_ms),
            "errors": list(self.errors),
            "notes": list(st.proof.notes),
        }
        catalog = self.p.catalog
        result: dict[str, Any] = {
            "outcome": st.outcome,
            "reason": reason,
            "summary": summary,
            "slots": st.slots.to_json(),
            "bookings": [
                {
                    k: v
                    for k, v in st.booking.to_json(catalog.service(st.booking.service).name).items()
                    if k not in {"status", "created_at"}
                }
            ]
            if st.booking
            else [],
            "cancelled": [b.id for b in st.cancelled],
            "handoff": list(self.faq.handoffs),
            **stats,
        }
        record = CallRecord(
            call_id=self.ctx.session_id,
            started_at=self.started_at,
            ended_at=self.ctx.clock.now(),
            outcome=st.outcome,
            reason=reason,
            transcript=[{"role": t.role, "text": t.text, "at_ms": t.at_ms} for t in transcript],
            extracted={
                "slots": st.slots.to_json(),
                "turns": self.turn_log,
                "handoff": self.faq.handoffs,  # questions promised to the admin
                "audit": self.audit.entries,  # per-turn decisions, same retention as the record
            },
            summary=summary,
            booking_id=st.booking.id if st.booking else None,
            stats=stored_stats,
        )
        try:
            await self.p.store.save_call(record)
        except Exception:
            log.exception("could not store the call record %s", self.ctx.session_id)
        return result


def build_provider(domain: Mapping[str, Any], options: Mapping[str, Any]) -> BookingProvider:
    """The engine's entry point (config `dialogue.factory`); `options["store"]` is the
    command line's `--store`. Raises ValueError for a bad `booking:` or `privacy:`
    section."""
    settings = BookingSettings.parse(domain.get("booking"), store_override=options.get("store"))
    return BookingProvider(
        settings,
        notify=domain.get("notify"),
        clock=options.get("clock"),
        run_sender=bool(options.get("run_sender", True)),
        privacy=PrivacySettings.from_config(domain.get("privacy")),
    )


__all__ = ["BookingDialogue", "BookingProvider", "DialogueAction", "build_provider"]
