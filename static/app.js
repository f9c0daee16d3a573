// The salon receptionist page: one call over /ws (protocol: docs/websocket-protocol.md).
// Audio never passes through this thread sample by sample: the capture and playback
// worklets do the resampling and PCM conversion; this file wires them to the socket
// and renders the conversation.

const CALL_RATE = 16000; // what we ask the server for, both directions
const FRAME_MS = 40; // capture frame length (the protocol allows 20-100 ms)
const MAX_BUFFERED_FRAMES = Math.round(5000 / FRAME_MS); // audio kept while connecting

const $ = (sel) => document.querySelector(sel);
const els = {
  mic: $("#mic"),
  form: $("#text-form"),
  input: $("#text-form input[name=text]"),
  send: $("#text-form .send"),
  hangup: $("#hangup"),
  messages: $("#messages"),
  chat: $("#chat"),
  welcome: $("#welcome"),
  banner: $("#offline-banner"),
  error: $("#error"),
  status: $("#status"),
  statusText: $("#status-text"),
  salonName: $("#salon-name"),
  salonAddress: $("#salon-address"),
  hint: $("#mic-hint"),
  mode: $("#mode"),
  modeControl: $("#mode-control"),
  offlineLlm: $("#offline-llm"),
};

const ERROR_TEXTS = {
  server_busy: "Все линии сейчас заняты. Пробуем снова…",
  session_time_limit: "Разговор длился слишком долго и был завершён. Начните новый.",
  not_started: "Соединение ещё не готово, повторите, пожалуйста.",
  message_too_large: "Сообщение слишком длинное.",
  internal_error: "На сервере что-то пошло не так. Попробуйте ещё раз.",
  mic_denied: "Нет доступа к микрофону. Разрешите его в настройках браузера или напишите текстом.",
  mic_unavailable: "Микрофон недоступен. Напишите сообщение текстом.",
  connection_lost: "Связь с сервером прервалась. Переподключаемся…",
  server_down: "Сервер недоступен. Проверяем снова…",
  server_restart: "Сервер перезапускается. Переподключимся автоматически…",
};

const state = {
  info: null,
  ws: null,
  ready: null, // Promise resolved with the `ready` message of the current call
  sessionId: null,
  wantCall: false, // a conversation is under way: reconnect if the socket drops
  reconnectDelay: 1000,
  reconnectTimer: null,
  outbox: [], // JSON messages waiting for `ready`
  audioOutbox: [], // capture frames waiting for `ready`
  ctx: null,
  audioReady: null,
  player: null,
  capture: null, // {stream, source, node}
  playedBefore: 0, // ms played in earlier calls on this page
  playedNow: 0, // ms played in the current call (what we ack)
  receivedMs: 0, // bot audio received in the current call
  unplayableMs: 0, // bot audio acked without playing (no audio output available)
  pendingAudio: [], // bot audio received while the player was loading
  audioFailed: false,
  segments: new Map(), // segment id -> {el, revision}
  botTurns: new Map(), // turn id -> element
  pendingLatency: new Map(), // turn id -> latency_ms (turn came before the text)
  pendingTyped: [], // typed messages shown before the server echoes them
  errorTimer: null,
};

// ---------------------------------------------------------------- UI helpers

function setMicState(s) {
  els.mic.dataset.state = s;
  const labels = {
    idle: "Говорить",
    connecting: "Подключение…",
    recording: "Остановить микрофон",
    error: "Микрофон: ошибка — нажмите, чтобы повторить",
  };
  els.mic.setAttribute("aria-label", labels[s] || s);
  els.mic.title = labels[s] || s;
  updateStatus();
}

function updateStatus() {
  let kind = "idle";
  let text = "На связи";
  const conn = document.body.dataset.connection;
  if (conn === "down") [kind, text] = ["error", "Нет связи"];
  else if (conn === "connecting") [kind, text] = ["busy", "Подключение…"];
  else if (document.body.dataset.speaking === "true") [kind, text] = ["speaking", "Администратор говорит"];
  else if (els.mic.dataset.state === "recording") [kind, text] = ["listening", "Слушаю вас"];
  els.status.dataset.kind = kind;
  els.statusText.textContent = text;
}

function showError(text, { sticky = false } = {}) {
  els.error.textContent = text;
  els.error.hidden = false;
  clearTimeout(state.errorTimer);
  if (!sticky) state.errorTimer = setTimeout(() => (els.error.hidden = true), 7000);
}

function clearError() {
  els.error.hidden = true;
}

function scrollDown() {
  els.chat.scrollTop = els.chat.scrollHeight;
}

function hideWelcome() {
  els.welcome.classList.add("compact");
}

function addMessage(role, text, { partial = false } = {}) {
  hideWelcome();
  const li = document.createElement("li");
  li.className = "msg";
  li.dataset.role = role;
  const avatar = document.createElement("div");
  avatar.className = "avatar";
  avatar.setAttribute("aria-hidden", "true");
  avatar.textContent = role === "bot" ? "А" : "Вы";
  const content = document.createElement("div");
  content.className = "content";
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  bubble.textContent = text;
  const meta = document.createElement("div");
  meta.className = "meta";
  content.append(bubble, meta);
  li.append(avatar, content);
  li.classList.toggle("partial", partial);
  els.messages.append(li);
  scrollDown();
  return li;
}

function setBubble(li, text) {
  li.querySelector(".bubble").textContent = text;
}

function addNote(text) {
  const li = document.createElement("li");
  li.className = "note";
  li.textContent = text;
  els.messages.append(li);
  scrollDown();
}

const normalize = (s) => s.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, " ").trim();

// ---------------------------------------------------------------- server events

function onEvent(ev) {
  switch (ev.type) {
    case "ready":
      onReady(ev);
      break;
    case "transcript":
      onTranscript(ev.segment || {});
      break;
    case "bot_text":
      onBotText(ev);
      break;
    case "turn":
      onTurn(ev);
      break;
    case "booking":
      onBooking(ev.booking || {});
      break;
    case "action":
      onAction(ev);
      break;
    case "clear":
      if (state.player) state.player.port.postMessage({ type: "clear" });
      break;
    case "error":
      showError(ERROR_TEXTS[ev.code] || ev.message || "Ошибка");
      break;
    case "done":
      onDone(ev.summary || {});
      break;
    default:
      break; // newer servers may send more; ignore what we do not know
  }
}

function onReady(ev) {
  state.sessionId = ev.session_id;
  state.reconnectDelay = 1000;
  document.body.dataset.connection = "open";
  document.body.dataset.sessionId = ev.session_id;
  els.banner.hidden = !ev.offline;
  els.hangup.hidden = false;
  clearError();
  updateStatus();
  state.readyResolve(ev);
  for (const m of state.outbox.splice(0)) sendJson(m);
  for (const f of state.audioOutbox.splice(0)) state.ws.send(f);
}

function onTranscript(seg) {
  if (!seg.id) return;
  const text = seg.text || "";
  let entry = state.segments.get(seg.id);
  if (!entry) {
    if (!text.trim() && seg.partial !== false) return;
    const typed = state.pendingTyped.findIndex((p) => normalize(p.text) === normalize(text));
    if (typed >= 0) {
      entry = { el: state.pendingTyped.splice(typed, 1)[0].el, revision: -1 };
    } else {
      entry = { el: addMessage("user", text, { partial: true }), revision: -1 };
    }
    state.segments.set(seg.id, entry);
  }
  const revision = Number(seg.revision || 0);
  if (revision < entry.revision) return; // late revision: ours is newer
  entry.revision = revision;
  if (!seg.partial && !text.trim()) {
    entry.el.remove(); // the recognizer withdrew it (noise)
    return;
  }
  setBubble(entry.el, text);
  entry.el.classList.toggle("partial", Boolean(seg.partial));
  entry.el.dataset.partial = String(Boolean(seg.partial));
  entry.el.dataset.segmentId = seg.id;
  scrollDown();
}

function onBotText(ev) {
  let li = state.botTurns.get(ev.turn_id);
  if (!li) {
    li = addMessage("bot", "");
    li.dataset.turnId = ev.turn_id;
    li.classList.add("streaming");
    state.botTurns.set(ev.turn_id, li);
  }
  const bubble = li.querySelector(".bubble");
  if (ev.final && ev.cancelled) {
    // Cancelled before any of it played: the caller never heard it.
    li.remove();
    state.botTurns.delete(ev.turn_id);
    return;
  }
  if (ev.final) {
    // The final text is what was actually played (cut where an interruption stopped it).
    bubble.textContent = ev.text || bubble.textContent;
    li.classList.remove("streaming");
    if (ev.interrupted) li.classList.add("interrupted");
    li.dataset.final = "true";
  } else {
    bubble.textContent += ev.text || "";
  }
  const pending = state.pendingLatency.get(ev.turn_id);
  if (pending) {
    showLatency(li, pending);
    state.pendingLatency.delete(ev.turn_id);
  }
  scrollDown();
}

function onTurn(ev) {
  if (ev.trigger === "greeting") return; // nobody waited for it: no latency to show
  const latency = ev.latency_ms || {};
  const li = state.botTurns.get(ev.turn_id);
  if (li) showLatency(li, latency);
  else state.pendingLatency.set(ev.turn_id, latency);
}

function showLatency(li, latency) {
  const total = latency.total;
  if (typeof total !== "number") return;
  const meta = li.querySelector(".meta");
  meta.textContent = `ответ через ${(total / 1000).toFixed(2).replace(".", ",")} с`;
  const parts = [
    ["eou_to_final", "конец фразы → распознано"],
    ["final_to_first_text", "→ первый текст"],
    ["first_text_to_first_audio", "→ первый звук"],
    ["first_audio_to_transport", "→ отправлено"],
  ]
    .filter(([k]) => typeof latency[k] === "number")
    .map(([k, label]) => `${label}: ${Math.round(latency[k])} мс`);
  meta.title = parts.join("\n");
  li.dataset.latencyMs = String(Math.round(total));
}

function formatWhen(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso || "");
  const tz = state.info && state.info.salon && state.info.salon.timezone;
  const opts = { weekday: "long", day: "numeric", month: "long", hour: "2-digit", minute: "2-digit" };
  try {
    return d.toLocaleString("ru-RU", tz ? { ...opts, timeZone: tz } : opts);
  } catch {
    return d.toLocaleString("ru-RU", opts);
  }
}

function formatPhone(phone) {
  const m = /^\+7(\d{3})(\d{3})(\d{2})(\d{2})$/.exec(phone || "");
  return m ? `+7 ${m[1]} ${m[2]}-${m[3]}-${m[4]}` : phone;
}

function onBooking(b) {
  hideWelcome();
  const card = document.createElement("li");
  card.className = "booking-card";
  card.dataset.bookingId = b.id != null ? String(b.id) : "";
  const header = document.createElement("header");
  const check = document.createElement("div");
  check.className = "check";
  check.textContent = "✓";
  const title = document.createElement("h3");
  title.textContent = "Вы записаны";
  header.append(check, title);
  const dl = document.createElement("dl");
  const rows = [
    ["Услуга", b.service_name || b.service],
    ["Мастер", b.master],
    ["Когда", b.start ? formatWhen(b.start) : ""],
    ["Имя", b.name],
    ["Телефон", formatPhone(b.phone)],
  ];
  for (const [k, v] of rows) {
    if (!v) continue;
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    dl.append(dt, dd);
  }
  card.append(header, dl);
  if (b.id != null) {
    const ref = document.createElement("div");
    ref.className = "ref";
    ref.textContent = `Номер записи: ${b.id}`;
    card.append(ref);
  }
  els.messages.append(card);
  scrollDown();
}

function onAction(ev) {
  if (ev.kind === "transfer") addNote("Переводим на администратора…");
  else if (ev.kind === "booking_cancelled") addNote("Запись отменена.");
}

function onDone(summary) {
  if (summary.reason === "server_shutdown" && state.wantCall) {
    // A restart, not a goodbye: keep the conversation going once the server is back.
    showError(ERROR_TEXTS.server_restart, { sticky: true });
    return;
  }
  state.wantCall = false;
  addNote("Разговор завершён. Нажмите на микрофон или напишите, чтобы начать новый.");
  stopCapture();
  els.hangup.hidden = true;
}

// ---------------------------------------------------------------- the socket

function sendJson(msg) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
}

function sendWhenReady(msg) {
  if (state.sessionId && state.ws && state.ws.readyState === WebSocket.OPEN) sendJson(msg);
  else state.outbox.push(msg);
}

function ensureCall() {
  state.wantCall = true;
  if (state.ws && state.ws.readyState <= WebSocket.OPEN) return state.ready;
  clearTimeout(state.reconnectTimer);
  state.ready = new Promise((resolve) => (state.readyResolve = resolve));
  state.sessionId = null;
  state.segments.clear();
  state.botTurns.clear();
  state.playedBefore += state.playedNow;
  state.playedNow = 0;
  state.receivedMs = 0;
  state.unplayableMs = 0;
  state.pendingAudio = [];
  if (state.player) state.player.port.postMessage({ type: "reset" });
  document.body.dataset.connection = "connecting";
  updateStatus();
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  ws.onopen = () => {
    if (ws !== state.ws) return; // let go of while connecting (a mode change)
    const start = { type: "start", sample_rate: CALL_RATE, language: "ru-RU" };
    if (els.mode.value) start.mode = els.mode.value;
    ws.send(JSON.stringify(start));
  };
  ws.onmessage = (e) => {
    if (ws !== state.ws) return;
    if (typeof e.data === "string") {
      let ev;
      try {
        ev = JSON.parse(e.data);
      } catch {
        return;
      }
      onEvent(ev);
    } else if (e.data.byteLength) {
      onBotAudio(e.data);
    }
  };
  ws.onclose = (e) => onSocketClosed(ws, e);
  return state.ready;
}

function onSocketClosed(ws, e) {
  if (ws !== state.ws) return;
  state.ws = null;
  state.sessionId = null;
  els.hangup.hidden = true;
  document.body.dataset.connection = state.wantCall ? "down" : "idle";
  document.body.dataset.lastCloseCode = String(e.code);
  if (e.code === 4001) {
    state.wantCall = false;
    stopCapture();
    showError(ERROR_TEXTS.session_time_limit, { sticky: true });
  }
  if (state.wantCall) {
    // Dropped mid-conversation: say so in words and come back with a fresh call.
    const text = { 1013: ERROR_TEXTS.server_busy, 1001: ERROR_TEXTS.server_restart }[e.code];
    showError(text || ERROR_TEXTS.connection_lost, { sticky: true });
    const delay = state.reconnectDelay;
    state.reconnectDelay = Math.min(delay * 2, 15000);
    state.reconnectTimer = setTimeout(() => {
      if (!state.wantCall) return;
      ensureCall().then(() => {
        clearError();
        addNote("Связь восстановлена.");
      });
    }, delay);
  }
  updateStatus();
}

function hangUp() {
  state.wantCall = false;
  stopCapture();
  sendJson({ type: "stop" });
}

// ---------------------------------------------------------------- audio

function audioSupported() {
  return Boolean(
    window.isSecureContext && navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.AudioWorkletNode,
  );
}

function ensureAudio() {
  if (!window.AudioWorkletNode) return Promise.resolve(null);
  if (!state.audioReady) {
    state.audioReady = (async () => {
      const ctx = new AudioContext({ latencyHint: "interactive" });
      await ctx.audioWorklet.addModule("/static/playback-worklet.js");
      await ctx.audioWorklet.addModule("/static/capture-worklet.js");
      const player = new AudioWorkletNode(ctx, "pcm-player", {
        numberOfInputs: 0,
        outputChannelCount: [1],
        processorOptions: { sourceRate: CALL_RATE, reportMs: 150 },
      });
      player.connect(ctx.destination);
      player.port.onmessage = (e) => onPlayed(e.data);
      state.ctx = ctx;
      state.player = player;
      for (const buf of state.pendingAudio.splice(0)) player.port.postMessage(buf, [buf]);
      return ctx;
    })().catch((err) => {
      state.audioFailed = true;
      for (const buf of state.pendingAudio.splice(0)) state.unplayableMs += (buf.byteLength / 2 / CALL_RATE) * 1000;
      sendAck();
      throw err;
    });
  }
  return state.audioReady.then(async (ctx) => {
    if (ctx.state === "suspended") await ctx.resume();
    return ctx;
  });
}

function onBotAudio(buffer) {
  const ms = (buffer.byteLength / 2 / CALL_RATE) * 1000;
  state.receivedMs += ms;
  if (state.player) {
    state.player.port.postMessage(buffer, [buffer]);
  } else if (state.audioReady && !state.audioFailed) {
    state.pendingAudio.push(buffer); // the player is still loading: play it once it is up
  } else {
    // No audio output: count it as played at once, or the server would wait for
    // playout forever (its echo gate and hang-up both follow our acks).
    state.unplayableMs += ms;
    sendAck();
  }
}

function sendAck() {
  // Unrounded: rounding down would leave the server waiting for a fraction of a ms.
  if (state.sessionId) sendJson({ type: "playback", played_ms: state.unplayableMs + state.playedNow });
}

function onPlayed(msg) {
  if (!msg || msg.type !== "played") return;
  state.playedNow = msg.playedMs;
  document.body.dataset.playedMs = String(Math.round(state.playedBefore + state.playedNow));
  document.body.dataset.speaking = String(Boolean(msg.playing));
  updateStatus();
  sendAck();
}

async function startCapture() {
  setMicState("connecting");
  try {
    const ctx = await ensureAudio();
    const call = ensureCall();
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "pcm-capture", {
      numberOfOutputs: 0,
      processorOptions: { targetRate: CALL_RATE, frameMs: FRAME_MS },
    });
    node.port.onmessage = (e) => onCaptured(e.data);
    source.connect(node);
    state.capture = { stream, source, node };
    await call;
    if (state.capture && state.capture.node === node) setMicState("recording");
  } catch (err) {
    stopCapture();
    setMicState("error");
    const denied = err && (err.name === "NotAllowedError" || err.name === "SecurityError");
    showError(denied ? ERROR_TEXTS.mic_denied : ERROR_TEXTS.mic_unavailable);
  }
}

function onCaptured(buffer) {
  const ws = state.ws;
  if (ws && ws.readyState === WebSocket.OPEN && state.sessionId) {
    ws.send(buffer);
  } else if (state.wantCall) {
    state.audioOutbox.push(buffer);
    if (state.audioOutbox.length > MAX_BUFFERED_FRAMES) state.audioOutbox.shift();
  }
}

function stopCapture() {
  const cap = state.capture;
  state.capture = null;
  state.audioOutbox = [];
  if (cap) {
    cap.node.port.postMessage({ type: "stop" });
    cap.source.disconnect();
    cap.node.disconnect();
    for (const t of cap.stream.getTracks()) t.stop();
  }
  setMicState(micAvailable() ? "idle" : "error");
}

function micAvailable() {
  return audioSupported();
}

// ---------------------------------------------------------------- wiring

els.mic.addEventListener("click", () => {
  if (els.mic.disabled) return;
  if (els.mic.dataset.state === "recording" || els.mic.dataset.state === "connecting") stopCapture();
  else startCapture();
});

function submitText(text) {
  text = text.trim();
  if (!text) return;
  const li = addMessage("user", text);
  li.dataset.source = "text";
  state.pendingTyped.push({ text, el: li });
  ensureAudio().catch(() => {}); // the reply is spoken too; needs the click's user gesture
  ensureCall();
  sendWhenReady({ type: "text", text });
}

els.form.addEventListener("submit", (e) => {
  e.preventDefault();
  submitText(els.input.value);
  els.input.value = "";
  els.input.focus();
});

for (const chip of document.querySelectorAll(".chip")) {
  chip.addEventListener("click", () => submitText(chip.dataset.text || chip.textContent));
}

els.hangup.addEventListener("click", hangUp);

async function loadInfo(delay = 1000) {
  try {
    const res = await fetch("/api/info", { cache: "no-store" });
    if (!res.ok) throw new Error(String(res.status));
    const info = await res.json();
    state.info = info;
    if (info.salon && info.salon.name) {
      els.salonName.textContent = `Салон «${info.salon.name}»`;
      document.title = `Салон «${info.salon.name}» — онлайн-запись`;
    }
    if (info.salon && info.salon.address) els.salonAddress.textContent = info.salon.address;
    els.banner.hidden = !info.offline;
    els.offlineLlm.hidden = !(info.offline && info.llm === "emulator");
    document.body.dataset.offline = String(Boolean(info.offline));
    showModes(info.modes || [], info.default_mode);
    if (document.body.dataset.connection === "down" && !state.wantCall) document.body.dataset.connection = "idle";
    clearError();
    els.mic.disabled = !micAvailable();
    if (!micAvailable()) {
      setMicState("error");
      els.hint.textContent = "Микрофон недоступен в этом браузере (нужен HTTPS или localhost) — пишите текстом.";
    } else if (els.mic.dataset.state === "error") {
      setMicState("idle");
    }
    document.body.dataset.loaded = "true";
  } catch {
    els.mic.disabled = true;
    document.body.dataset.connection = "down";
    showError(ERROR_TEXTS.server_down, { sticky: true });
    updateStatus();
    setTimeout(() => loadInfo(Math.min(delay * 2, 15000)), delay);
  }
}

// The dialogues the server offers (`/api/info` modes); a change ends the current call,
// and the next one starts in the chosen mode.
const MODE_LABELS = { booking: "Запись в салон", chat: "Разговор (YandexGPT)", echo: "Эхо" };

function showModes(modes, current) {
  els.modeControl.hidden = modes.length < 2;
  if (els.mode.options.length) return;
  for (const m of modes) els.mode.add(new Option(MODE_LABELS[m] || m, m));
  if (current) els.mode.value = current;
  document.body.dataset.mode = els.mode.value;
}

els.mode.addEventListener("change", () => {
  document.body.dataset.mode = els.mode.value;
  const label = els.mode.selectedOptions[0] ? els.mode.selectedOptions[0].textContent : els.mode.value;
  if (state.ws && state.ws.readyState <= WebSocket.OPEN) {
    endCallForModeChange();
    addNote(`Режим «${label}». Разговор завершён; новый начнётся с вашей следующей фразы.`);
  }
});

// Ends the call and lets go of its socket at once: until the server closes it, the
// socket is still open, and a line typed (or a mic press) right after the switch would
// otherwise go to the call being ended, in the old mode, and be lost.
function endCallForModeChange() {
  const ws = state.ws;
  hangUp();
  if (ws.readyState === WebSocket.CONNECTING) ws.close(1000); // not started yet: nothing to end
  state.ws = null;
  state.sessionId = null;
  els.hangup.hidden = true;
  document.body.dataset.connection = "idle";
  updateStatus();
}

window.addEventListener("beforeunload", () => {
  state.wantCall = false;
  if (state.ws) state.ws.close(1000);
});

loadInfo();
