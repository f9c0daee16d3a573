/**
 * voicebot.voxengine.js: a Voximplant scenario that hands every inbound call to
 * `voicebot serve` over the media WebSocket (`/voximplant`).
 *
 *  - answers the call, then opens wss://<your host>/voximplant with the shared secret;
 *  - streams the caller to the bot as μ-law 8 kHz ("ULAW") and plays the bot's stream
 *    back (the bot answers in ULAW 8 kHz as well: no resampling anywhere);
 *  - passes caller id and the dialled number in customParameters;
 *  - forwards DTMF as {"customEvent":"dtmf","digit":"5"};
 *  - obeys {"customEvent":"clear"} (barge-in: drop buffered bot audio) and
 *    {"customEvent":"hangup"};
 *  - tells the bot when its audio has finished playing ({"customEvent":"playback_idle"});
 *  - closes the WebSocket when the call ends (Voximplant does not do it by itself).
 *
 * Setup: see docs/telephony.md. Set BOT_URL and BOT_SECRET below (BOT_SECRET must
 * equal telephony.voximplant.secret / VOICEBOT_VOXIMPLANT_SECRET on the server).
 */

// wss:// needs a DNS name with a valid certificate (ws:// with an IP: tests only).
const BOT_URL = "wss://bot.example.ru/voximplant";
const BOT_SECRET = "change-me";

VoxEngine.addEventListener(AppEvents.CallAlerting, (e) => {
  const call = e.call;
  let ws = null;
  let closing = false;

  function send(obj) {
    if (ws && !closing) {
      try { ws.send(JSON.stringify(obj)); } catch (err) { Logger.write("voicebot: send failed " + err); }
    }
  }

  function finish() {
    if (closing) return;
    send({ customEvent: "hangup" });
    closing = true;
    if (ws) { try { ws.close(); } catch (err) { /* already closed */ } }
    VoxEngine.terminate();
  }

  call.addEventListener(CallEvents.Connected, () => {
    // Bind media only after the call is connected (early-media legs can be dropped).
    ws = VoxEngine.createWebSocket(BOT_URL + "?call=" + encodeURIComponent(call.id()), {
      headers: [{ name: "Authorization", value: "Bearer " + BOT_SECRET }],
    });

    ws.addEventListener(WebSocketEvents.OPEN, () => {
      // Caller -> bot: μ-law at 8 kHz; the wire name is "ULAW" with sampleRate 8000.
      call.sendMediaTo(ws, {
        encoding: WebSocketAudioEncoding.ULAW,
        customParameters: { callerid: e.callerid, did: e.destination },
      });
      // Bot -> caller: the bot's own untagged start/media/stop stream.
      ws.sendMediaTo(call);
    });

    ws.addEventListener(WebSocketEvents.MESSAGE, (m) => {
      let msg;
      try { msg = JSON.parse(m.text); } catch (err) { return; }
      if (!msg || typeof msg.customEvent !== "string") return;  // media events are handled by Voximplant
      if (msg.customEvent === "clear") {
        ws.clearMediaBuffer();                 // barge-in: drop what is buffered here
      } else if (msg.customEvent === "hangup") {
        call.hangup();                         // Disconnected -> finish()
      } else if (msg.customEvent === "error") {
        Logger.write("voicebot error: " + msg.code + " " + msg.message);
      }
    });

    // Fires after ~1 s of silence in the bot's stream: everything sent has played.
    ws.addEventListener(WebSocketEvents.MEDIA_ENDED, () => send({ customEvent: "playback_idle" }));

    ws.addEventListener(WebSocketEvents.CLOSE, (ev) => {
      Logger.write("voicebot: websocket closed " + (ev && ev.code));
      if (!closing) { closing = true; call.hangup(); }
    });
    ws.addEventListener(WebSocketEvents.ERROR, (ev) => {
      Logger.write("voicebot: websocket error " + JSON.stringify(ev));
      if (!closing) { closing = true; call.hangup(); }
    });
  });

  call.handleTones(true);
  call.addEventListener(CallEvents.ToneReceived, (t) => send({ customEvent: "dtmf", digit: String(t.tone) }));
  call.addEventListener(CallEvents.Disconnected, finish);
  call.addEventListener(CallEvents.Failed, finish);

  call.answer();
});
