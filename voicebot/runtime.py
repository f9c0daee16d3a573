"""Process-wide wiring: providers, the dialogue domain and (offline) the emulator.

One `Runtime` per server process holds the shared gRPC channels and HTTP clients; every
call gets a cheap `CallSession` from `new_session`. With no Yandex credentials the
built-in emulator — a local test double speaking the real protocols — is started
in-process and the same production clients talk to it.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from voicebot.clock import Clock, RealClock
from voicebot.config import Config
from voicebot.dialogue import CallContext, Dialogue, DialogueProvider, load_provider, mode_name
from voicebot.emulator.scripts import script_metadata
from voicebot.engine.metering import MeteredLanguageModel
from voicebot.engine.session import CallSession
from voicebot.ops import metrics
from voicebot.ops.busy import BusyDialogue
from voicebot.ops.health import Readiness
from voicebot.ops.limits import Admission
from voicebot.ops.logs import bind_call
from voicebot.providers.base import (
    LanguageModel,
    RecognitionOptions,
    SpeechRecognizer,
    SpeechSynthesizer,
    SynthesisOptions,
)
from voicebot.providers.failover import FailoverRecognizer
from voicebot.providers.tts_cache import CachingSynthesizer
from voicebot.providers.yandex.auth import ApiKeyAuth, YandexAuth
from voicebot.transports.audiosocket_register import CallRegistry
from voicebot.transports.base import CallTransport
from voicebot.transports.host import LiveCall

if TYPE_CHECKING:
    from voicebot.emulator.main import Emulator

log = logging.getLogger(__name__)


class Runtime:
    """The process's call host (`transports.host.CallHost`): providers, dialogue
    domain, live calls, the AudioSocket call registry and per-turn metrics."""

    def __init__(
        self,
        cfg: Config,
        *,
        recognizer: SpeechRecognizer,
        synthesizer: SpeechSynthesizer,
        llm: LanguageModel | None,
        dialogues: DialogueProvider,
        clock: Clock,
        offline: bool,
        emulator: Emulator | None = None,
        closers: list[Any] | None = None,
        modes: Mapping[str, DialogueProvider] | None = None,
    ) -> None:
        self.cfg = cfg
        self.recognizer = recognizer
        self.synthesizer = synthesizer
        self.llm = llm
        self.dialogues = dialogues
        # The dialogues a browser caller may pick (`dialogue.modes`), the default first.
        self.default_mode = mode_name(cfg.dialogue.factory)
        self.modes: dict[str, DialogueProvider] = dict(modes or {self.default_mode: dialogues})
        self.clock = clock
        self.offline = offline
        # A caller's transcript script reaches the emulator only when this is on:
        # offline, or a test/bench server with `emulator.client_scripts`.
        self.emulator_hooks = offline or cfg.emulator.client_scripts
        self.emulator = emulator
        self._closers = closers or []
        self.sessions: dict[str, CallSession] = {}
        # Caller id / DID posted by the Asterisk dialplan, waiting for their call.
        self.audiosocket_registry = CallRegistry()
        # Per-turn latency records of recent calls, for /metrics and `voicebot bench`.
        self.turn_metrics: deque[dict[str, Any]] = deque(maxlen=20_000)
        self.speculation_totals: dict[str, int] = {}  # summed over finished calls
        self._channels: dict[str, str] = {}  # session id -> channel, for the active-calls gauge
        s = cfg.server
        # Readiness (/readyz, drain, back-pressure) and the per-channel capacity rules.
        self.readiness = Readiness(s.overload, self.clock.monotonic)
        self.admission = Admission(s.max_sessions, dict(s.channel_limits), s.telephony_reserve)
        self._unlisten = metrics.on_provider_error(self.readiness.on_provider_error)

    @classmethod
    async def create(
        cls,
        cfg: Config,
        *,
        stt_script: str | None = None,
        store: str | None = None,
        stt_provider: str | None = None,
        clock: Clock | None = None,
        force_emulator: bool = False,
        dialogue_options: Mapping[str, Any] | None = None,
    ) -> Runtime:
        """Build the process's providers, dialogue domains and (offline) the emulator.

        Raises what the failing step raised, after closing whatever had started."""
        closers: list[Any] = []
        try:
            return await cls._assemble(
                cfg,
                closers,
                stt_script=stt_script,
                store=store,
                stt_provider=stt_provider,
                clock=clock or RealClock(),
                force_emulator=force_emulator,
                dialogue_options=dialogue_options,
            )
        except BaseException:
            # A later step failed (an unknown dialogue factory, a bad store URL): what
            # already started (the in-process emulator, clients) is closed, not leaked.
            await _close_all(closers)
            raise

    @classmethod
    async def _assemble(
        cls,
        cfg: Config,
        closers: list[Any],
        *,
        stt_script: str | None,
        store: str | None,
        stt_provider: str | None,
        clock: Clock,
        force_emulator: bool,
        dialogue_options: Mapping[str, Any] | None,
    ) -> Runtime:
        """`create`'s steps; everything started is added to `closers` at once."""
        from voicebot.providers.yandex.gpt import YandexGPT
        from voicebot.providers.yandex.stt import YandexSTT
        from voicebot.providers.yandex.tts import YandexTTS

        y = cfg.yandex
        emulator = None
        offline = force_emulator or not y.has_credentials
        if offline:
            from voicebot.emulator.main import Emulator

            emu_settings = cfg.emulator
            if stt_script:
                emu_settings = replace(emu_settings, stt_script=stt_script)
            api_key = secrets.token_urlsafe(24)
            emulator = Emulator(emu_settings, api_key=api_key)
            closers.append(emulator)
            await emulator.start()
            auth: YandexAuth = ApiKeyAuth(api_key)
            stt_ep, tts_ep, llm_url, tls = (
                emulator.stt_endpoint,
                emulator.tts_endpoint,
                emulator.http_url,
                False,
            )
            log.warning(
                "No Yandex Cloud credentials: running OFFLINE on the built-in emulator "
                "(a local test double; it does not recognize speech — utterance texts come "
                "from its transcript script)."
            )
        else:
            from voicebot.providers.yandex.factory import make_auth

            auth = make_auth(y)
            ep = y.endpoints
            stt_ep, tts_ep, llm_url, tls = ep.stt, ep.tts, ep.llm_url, ep.tls
        closers.insert(0, auth)
        yandex_stt = YandexSTT(stt_ep, auth, tls=tls)
        closers.insert(0, yandex_stt)
        recognizer = _select_recognizer(stt_provider, cfg, yandex_stt, emulator, closers)
        tts: SpeechSynthesizer = YandexTTS(tts_ep, auth, tls=tls)
        closers.insert(0, tts)
        if y.tts.cache_mb > 0:
            tts = CachingSynthesizer(tts, int(y.tts.cache_mb * 1024 * 1024))
            closers.insert(0, tts)
        # Offline the same client talks to the emulator's completion endpoint; only
        # dialogues that ask for it (`offline_llm`) get it there.
        folder = y.folder_id or ("b1gemulator" if offline else "")
        llm: LanguageModel | None = YandexGPT(llm_url, auth, folder_id=folder, settings=y.gpt)
        closers.insert(0, llm)
        options = {"store": store, "clock": clock, "gpt": y.gpt, **(dialogue_options or {})}
        default = mode_name(cfg.dialogue.factory)
        modes: dict[str, DialogueProvider] = {}
        for name in [default, *(mode_name(m) for m in cfg.dialogue.modes)]:
            if name in modes:
                continue
            provider = load_provider(name, cfg.domain, options)
            await provider.start()
            closers.insert(0, provider)
            modes[name] = provider
        dialogues = modes[default]
        return cls(
            cfg,
            recognizer=recognizer,
            synthesizer=tts,
            llm=llm,
            dialogues=dialogues,
            clock=clock,
            offline=offline,
            emulator=emulator,
            closers=closers,
            modes=modes,
        )

    def has_capacity(self, pending: int = 0, channel: str | None = None) -> bool:
        """`server.max_sessions` counts every live call of the process, whatever its
        channel, plus `pending` connections that have not started their call yet; a
        `channel` also has its own cap and the telephony reserve (`Admission`). A
        draining process has no capacity. A refusal is counted per channel."""
        if self.readiness.draining:
            why: str | None = "draining"
        elif channel is None:
            why = None if len(self.sessions) + pending < self.cfg.server.max_sessions else "busy"
        else:
            why = self.admission.admit(channel, Counter(self._channels.values()), pending)
        if why is not None and channel is not None:
            metrics.call_refused(channel, why)
        return why is None

    def open_call(
        self,
        transport: CallTransport,
        *,
        channel: str,
        caller_id: str | None = None,
        called_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        script: Sequence[str] | None = None,
        script_id: str | None = None,
        session_id: str | None = None,
        clock: Clock | None = None,
        mode: str | None = None,
    ) -> CallSession:
        """A session for one call. `clock` overrides the runtime's (simulate's `now:`);
        `script` reaches the emulator only with emulator hooks on; `mode` picks one of
        `self.modes` (KeyError for one not offered)."""
        clock = clock or self.clock
        session_id = session_id or uuid.uuid4().hex[:12]
        # Log lines of this call carry its id: the transport's task from here on, and
        # every task the session creates (they copy this context when created).
        bind_call(session_id)
        stt_metadata = script_metadata(self.emulator_hooks, script, script_id or session_id)
        y = self.cfg.yandex
        provider = self.modes[mode] if mode else self.dialogues
        llm = self.llm
        if self.offline and not getattr(provider, "offline_llm", False):
            llm = None  # offline, a dialogue with a deterministic layer runs without GPT
        meter = MeteredLanguageModel(llm, clock) if llm is not None else None
        session = CallSession(
            transport=transport,
            recognizer=_per_call(self.recognizer),
            synthesizer=self.synthesizer,
            dialogue=self._busy(channel)
            or provider.new_dialogue(
                CallContext(
                    session_id=session_id,
                    clock=clock,
                    llm=meter,
                    caller_id=caller_id,
                    called_id=called_id,
                    channel=channel,
                    metadata=dict(metadata or {}),
                )
            ),
            settings=self.cfg.engine.for_channel(channel),
            clock=clock,
            stt_options=RecognitionOptions(
                sample_rate=transport.sample_rate,
                language=y.stt.language,
                eou_pause_ms=y.stt.eou_pause_ms,
                normalize=y.stt.normalize,
                model=y.stt.model,
                metadata=stt_metadata,
            ),
            tts_options=SynthesisOptions(
                sample_rate=transport.sample_rate,
                voice=y.tts.voice,
                role=y.tts.role,
                speed=y.tts.speed,
            ),
            llm_meter=meter,
            session_id=session_id,
        )
        session.events.listeners.append(self._collect)
        # A dialogue may watch its own call's events (turn latency, errors) to keep
        # them in its records; the engine does not care what it does with them.
        if (observe := getattr(session.dialogue, "on_event", None)) is not None:
            session.events.listeners.append(observe)
        self.sessions[session.session_id] = session
        self._channels[session.session_id] = channel
        metrics.call_started(channel)
        return session

    def _busy(self, channel: str) -> Dialogue | None:
        """While a provider is overloaded, a new call hears only the busy message."""
        reasons = self.readiness.overloaded()
        if not reasons:
            return None
        log.warning("new %s call gets the busy message: %s", channel, "; ".join(reasons))
        metrics.call_refused(channel, "overloaded")
        return BusyDialogue(self.cfg.server.busy_message)

    def _collect(self, event: Mapping[str, Any]) -> None:
        if event.get("type") == "turn":
            self.turn_metrics.append(
                {
                    "trigger": event.get("trigger"),
                    "speculation": event.get("speculation"),
                    **event["latency_ms"],
                }
            )
            metrics.turn_recorded(str(event.get("trigger")), event["latency_ms"])
            self.readiness.on_turn(event["latency_ms"])
        elif event.get("type") == "done":
            # Speculation counters of finished calls (TTS characters prepared vs played).
            spec = (event.get("summary") or {}).get("speculation") or {}
            for key, value in spec.items():
                self.speculation_totals[key] = self.speculation_totals.get(key, 0) + int(value)

    def public_info(self) -> Mapping[str, str]:
        """What the dialogue domain lets a browser page show before a call."""
        return self.dialogues.public_info()

    def mount_dialogue_routes(self, app: Any) -> None:
        """Let each dialogue domain mount its own pages (the booking bot's salon page
        and calendar feed) on the server's aiohttp app."""
        for provider in {id(p): p for p in self.modes.values()}.values():
            provider.extra_routes(app)

    def redacted_config(self) -> dict[str, Any]:
        """The whole configuration as it may be logged (each dialogue masks its own)."""
        domain: dict[str, Any] = {}
        for provider in self.modes.values():
            domain.update(provider.redacted())
        return self.cfg.redacted(domain=domain)

    def live_calls(self) -> int:
        """Calls open right now, every channel."""
        return len(self.sessions)

    def release_call(self, call: LiveCall) -> None:
        """Free the call's slot (idempotent)."""
        self.sessions.pop(call.session_id, None)
        channel = self._channels.pop(call.session_id, None)
        if channel is not None:  # once per call, however many paths release it
            metrics.call_ended(channel)

    async def aclose(self) -> None:
        """Close the providers, the dialogue domain and the emulator, in that order
        (errors logged, the rest still closed)."""
        self._unlisten()
        await _close_all(self._closers)

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _close_all(closers: Sequence[Any]) -> None:
    """Close each (its `aclose` or `stop`), in order; one failing does not stop the rest."""
    for obj in closers:
        close = getattr(obj, "aclose", None) or getattr(obj, "stop", None)
        if close is None:
            continue
        try:
            await close()
        except Exception:
            log.exception("error while closing %r", type(obj).__name__)


def _select_recognizer(
    name: str | None,
    cfg: Config,
    yandex: SpeechRecognizer,
    emulator: Emulator | None,
    closers: list[Any],
) -> SpeechRecognizer:
    """Provider selection (explicit, config preference, first configured) and failover;
    offline, vendors without a key run on the emulator's local fakes."""
    from voicebot.providers.registry import build_recognizer

    offline = None
    if emulator is not None:
        from voicebot.emulator.fakes import VendorFakes

        stt = emulator.stt
        offline = VendorFakes(getattr(stt, "scripts", None), getattr(stt, "script", None) or ())
        closers.append(offline)
    rec = build_recognizer(name, cfg.stt, yandex=yandex, offline=offline)
    if rec is not yandex:  # the Yandex client is already closed by the runtime
        closers.insert(0, rec)
    return rec


def _per_call(recognizer: SpeechRecognizer) -> SpeechRecognizer:
    """A recognizer with per-call state (failover position) gets a fresh view per call."""
    return recognizer.for_call() if isinstance(recognizer, FailoverRecognizer) else recognizer
