"""Free questions during a booking call («А парковка у вас есть?»).

A question the deterministic layer has no answer for (no slot, no known intent) goes to
YandexGPT, grounded on the salon's facts from config (`booking.faq.facts` plus the
catalog: address, hours, services and prices, masters). The answer is streamed through
the same plumbing as the voice chat (`voicebot.chat.answer`); the booking machine then
repeats its current question. With `use_llm: never`, without a model, when the model
fails or says the facts do not cover the question, the bot promises to pass the
question to the admin and the call record gets a handoff note.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from booking.catalog import Catalog
from booking.extract import Extraction
from booking.replies import PROMPTS_DIR
from voicebot.chat.answer import AnswerOutcome, stream_answer
from voicebot.providers.base import ChatMessage, GenerationOptions, LanguageModel

PROMPT_FILE = PROMPTS_DIR / "booking_faq.txt"
FREE_QUESTION = "free_question"  # the intent the dialogue adds for the machine
UNKNOWN = "[НЕТ ДАННЫХ]"  # what the model says when the facts do not answer
HANDOFF = "Точно не подскажу, передам ваш вопрос администратору — вам перезвонят."

# Without a question mark (STT punctuation is not guaranteed): an interrogative at the
# start (after «а»/«скажите»), or the particle «ли». «где-то», «как-то» are not questions.
_QUESTION_START = re.compile(
    r"^(?:а\s+|скажите,?\s+|подскажите,?\s+)?(?:где|как|какой|какая|какое|какие|сколько|"
    r"когда|почему|зачем|что|чем|можно|есть|бывает|принимаете|работаете|делаете|у вас)"
    r"(?![-\w])",
    re.IGNORECASE,
)
_PARTICLE = re.compile(r"\sли(?![-\w])", re.IGNORECASE)
_HAVE = re.compile(r"у\s+вас\s+(?:есть|можно)|\sесть\s*$", re.IGNORECASE)  # «А X у вас есть»


def looks_like_question(text: str) -> bool:
    """A question mark, an interrogative opening, «ли», or «у вас есть»; two words at least."""
    text = text.strip()
    if len(text.split()) < 2:
        return False
    if text.endswith("?"):
        return True
    return bool(_QUESTION_START.search(text) or _PARTICLE.search(text) or _HAVE.search(text))


def is_free_question(text: str, ex: Extraction) -> bool:
    """A question the parsers found nothing in: no slot, intent or choice. A bare
    yes/no that came from «можно…?» counts when the line is a real question."""
    if ex.has_slots or ex.intents or ex.choice is not None or ex.master_any:
        return False
    if ex.part_of_day is not None or ex.service_unknown is not None:
        return False
    if getattr(ex, "unplaced", None):  # words about when the parser could not place
        return False
    if ex.answer is not None and not (text.rstrip().endswith("?") and len(text.split()) > 2):
        return False
    return looks_like_question(text)


@dataclass(frozen=True)
class FaqSettings:
    """`booking.faq`: grounding facts and the answer's limits."""

    facts: tuple[str, ...] = ()
    timeout_s: float = 4.0  # the whole answer; past it the caller hears the handoff
    max_tokens: int = 120

    @classmethod
    def from_section(cls, raw: Mapping[str, Any] | None) -> FaqSettings:
        """Parse `booking.faq`; raises ValueError on an unknown key."""
        raw = dict(raw or {})
        unknown = set(raw) - {"facts", "timeout_s", "max_tokens"}
        if unknown:
            raise ValueError(f"config: unknown setting booking.faq.{sorted(unknown)[0]}")
        return cls(
            facts=tuple(str(f) for f in raw.get("facts") or ()),
            timeout_s=float(raw.get("timeout_s", cls.timeout_s)),
            max_tokens=int(raw.get("max_tokens", cls.max_tokens)),
        )


class FreeQuestions:
    """Answers free questions for one call."""

    def __init__(
        self, catalog: Catalog, settings: FaqSettings, llm: LanguageModel | None, use_llm: str
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.llm = llm if use_llm != "never" else None
        self.use_llm = use_llm
        self.handoffs: list[dict[str, str]] = []
        self.last_handoff: dict[str, str] | None = None  # of the latest answer() only
        self.answered = 0

    def system_prompt(self) -> str:
        """The prompt that grounds answers in the salon's facts: address, hours, services,
        masters, prices."""
        c = self.catalog
        h = c.salon.hours
        return (
            PROMPT_FILE.read_text(encoding="utf-8")
            .format(
                salon=c.salon.name,
                address=c.salon.address,
                open=h.open.strftime("%H:%M"),
                close=h.close.strftime("%H:%M"),
                services="; ".join(
                    f"{s.name} — {s.price} руб., {s.duration_min} мин" for s in c.services
                ),
                masters=", ".join(m.name for m in c.masters),
                facts="\n".join(self.settings.facts),
                unknown=UNKNOWN,
            )
            .strip()
        )

    async def answer(self, question: str, now: datetime) -> AsyncIterator[str]:
        """The spoken answer, streamed; or the handoff line (and a note) when the model
        is off, fails before a word, or has no facts for it."""
        self.last_handoff = None
        if self.llm is None:
            yield self._handoff(
                question, now, "use_llm_never" if self.use_llm == "never" else "no_model"
            )
            return
        messages = [ChatMessage("system", self.system_prompt()), ChatMessage("user", question)]
        options = GenerationOptions(
            temperature=0.2, max_tokens=self.settings.max_tokens, timeout_s=self.settings.timeout_s
        )
        outcome = AnswerOutcome()
        held = ""  # the start is held back until it cannot be the UNKNOWN marker
        released = False
        async for delta in stream_answer(self.llm, messages, options, fallback="", outcome=outcome):
            if released:
                yield delta
                continue
            held += delta
            if len(held.lstrip()) < len(UNKNOWN) and UNKNOWN.startswith(held.lstrip()):
                continue
            if held.lstrip().startswith(UNKNOWN):
                break
            released = True
            yield held
        if outcome.failed and not released:
            yield self._handoff(question, now, outcome.error or "error")
        elif not released:
            yield self._handoff(question, now, "unknown")
        else:
            self.answered += 1
            if outcome.text.rstrip()[-1:] not in (".", "!", "?", "…"):
                yield "."  # the repeated question must not run on from the answer

    def _handoff(self, question: str, now: datetime, reason: str) -> str:
        self.last_handoff = {"question": question, "reason": reason, "at": now.isoformat()}
        self.handoffs.append(self.last_handoff)
        return HANDOFF
