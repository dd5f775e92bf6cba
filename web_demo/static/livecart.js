// livecart.js — a small, dependency-free client for the livecart WebSocket protocol.
//
// Copy this file as-is into any web app (ES module, no build step). It speaks the
// `livecart.json` subprotocol:
//   * request/reply by id:   await client.request("cart_add", {product, qty})
//   * event dispatch:        client.on("pinned", (data, event) => ...)   ("*" = every event)
//   * single events and arrays of events in one frame
//   * gap-free `seq` tracking; duplicates dropped, a gap triggers a resync
//   * automatic reconnect with exponential backoff + jitter, re-joining the session with
//     `join {session, since, epoch}` so missed room events are replayed in order
//   * an application-level ping that detects dead connections (and estimates the server
//     clock offset, see `serverNow()`)
//
//   const client = new LivecartClient({ url: "wss://host/ws", token });
//   client.on("state", ({ state }) => ...);          // connecting | open | reconnecting | closed
//   client.on("joined", ({ snapshot, recovered }) => ...);
//   const snapshot = await client.join("sess_123");
//
// Errors from the server reject with a `LivecartError` carrying `code`, `message` and any
// extra details (e.g. `product`, `price`). Network loss rejects in-flight requests with
// code `disconnected` (commands carrying an idempotency key can be retried safely).

export const PROTOCOL = "livecart.json";

/** Close codes after which reconnecting with the same token is pointless. */
const FATAL_CLOSE_CODES = new Set([4001]);

export class LivecartError extends Error {
  constructor(code, message, details = {}) {
    super(message || code);
    this.name = "LivecartError";
    this.code = code;
    this.details = details;
  }
}

export function wsUrlFor(path = "/ws", loc = globalThis.location) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}${path}`;
}

export class LivecartClient {
  /**
   * @param {object} opts
   * @param {string} opts.url            ws:// or wss:// URL of `/ws`
   * @param {string} [opts.token]        JWT; sent as `?token=` on every (re)connect
   * @param {number} [opts.minBackoffMs] first reconnect delay (default 250)
   * @param {number} [opts.maxBackoffMs] cap of the exponential backoff (default 8000)
   * @param {number} [opts.requestTimeoutMs] default per-request timeout (default 10000)
   * @param {number} [opts.pingIntervalMs]   heartbeat interval (default 10000; 0 = off)
   * @param {number} [opts.pingTimeoutMs]    no reply within this closes the socket (default 5000)
   */
  constructor(opts) {
    this.url = opts.url;
    this.token = opts.token || null;
    this.minBackoffMs = opts.minBackoffMs ?? 250;
    this.maxBackoffMs = opts.maxBackoffMs ?? 8000;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 10000;
    this.pingIntervalMs = opts.pingIntervalMs ?? 10000;
    this.pingTimeoutMs = opts.pingTimeoutMs ?? 5000;
    this.WebSocket = opts.WebSocket || globalThis.WebSocket;

    this.state = "idle";
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject, timer, op}
    this.waiting = []; // requests made while not open: [{send}]
    this.handlers = new Map(); // type -> Set(fn)
    this.attempt = 0;
    this.reconnectTimer = null;
    this.pingTimer = null;
    this.closedByUser = false;

    // Room state for recovery.
    this.session = null; // joined session id
    this.lastSeq = null;
    this.epoch = null;
    this.resyncing = false;
    this.awaitingReplay = null; // the snapshot a recovered join promised to replay up to
    this.replayTimer = null;

    // Server clock: serverNow() = Date.now() + clockOffset. Refined by every ping.
    this.clockOffset = 0;
    this.bestRtt = Infinity;

    this.stats = { framesIn: 0, eventsIn: 0, reconnects: 0 };
    this._onOnline = () => { if (this.state === "reconnecting") this._reconnectNow(); };
    this._onOffline = () => { if (this.ws) this._drop("browser offline"); };
  }

  // --- public API --------------------------------------------------------------

  /** Open the connection; resolves once the socket is open. */
  connect() {
    this.closedByUser = false;
    globalThis.addEventListener?.("online", this._onOnline);
    globalThis.addEventListener?.("offline", this._onOffline);
    return new Promise((resolve, reject) => {
      const off = this.on("state", ({ state, code, reason }) => {
        if (state === "open") { off(); resolve(this); }
        if (state === "closed") { off(); reject(new LivecartError("closed", reason || `closed ${code}`)); }
      });
      this._open();
    });
  }

  /** Close for good (no reconnect). */
  close() {
    this.closedByUser = true;
    clearTimeout(this.reconnectTimer);
    globalThis.removeEventListener?.("online", this._onOnline);
    globalThis.removeEventListener?.("offline", this._onOffline);
    this._stopPing();
    if (this.ws) this.ws.close(1000, "bye");
    this._setState("closed", { code: 1000, reason: "closed by client" });
  }

  /**
   * Send a command and resolve with its `result` (or reject with a LivecartError).
   * While disconnected the command waits (up to its timeout) for the connection.
   */
  request(op, args = {}, { timeoutMs } = {}) {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const entry = { op, resolve, reject, timer: null, sent: false };
      entry.timer = setTimeout(() => {
        this.pending.delete(id);
        this.waiting = this.waiting.filter((w) => w.id !== id);
        reject(new LivecartError("timeout", `no reply to ${op} in time`));
      }, timeoutMs ?? this.requestTimeoutMs);
      this.pending.set(id, entry);
      const send = () => {
        entry.sent = true;
        this.ws.send(JSON.stringify({ id, op, ...args }));
      };
      if (this.state === "open") send();
      else this.waiting.push({ id, send });
    });
  }

  /** Join a session; remembered and re-joined (with since/epoch) after every reconnect. */
  async join(session) {
    if (this.session !== session) {
      this.lastSeq = null;
      this.epoch = null;
    }
    this.session = session;
    return this._join(false);
  }

  async leave() {
    this.session = null;
    this.lastSeq = null;
    this.epoch = null;
    return this.request("leave");
  }

  /** Swap in a fresh token (same user) without reconnecting; also used on reconnect. */
  async auth(token) {
    this.token = token;
    return this.request("auth", { token });
  }

  /**
   * Subscribe to server events by type (`pinned`, `counters`, ...), `*` for every event,
   * or lifecycle notifications: `state`, `joined`, `error`. Returns an unsubscribe function.
   */
  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return () => this.handlers.get(type)?.delete(fn);
  }

  /** Best estimate of the server's epoch ms clock. */
  serverNow() {
    return Date.now() + this.clockOffset;
  }

  /** Test/debug hook: drop the socket as a network failure would. */
  simulateDrop() {
    this._drop("simulated network drop");
  }

  // --- internals -----------------------------------------------------------------

  _emit(type, ...args) {
    const set = this.handlers.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try { fn(...args); } catch (err) { console.error(`livecart ${type} handler failed`, err); }
    }
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit("state", { state, attempt: this.attempt, ...extra });
  }

  _open() {
    clearTimeout(this.reconnectTimer);
    const url = this.token ? `${this.url}?token=${encodeURIComponent(this.token)}` : this.url;
    let ws;
    try {
      ws = new this.WebSocket(url, [PROTOCOL]);
    } catch (err) {
      this._scheduleReconnect(String(err));
      return;
    }
    this.ws = ws;
    if (this.state !== "reconnecting") this._setState("connecting");
    ws.onopen = () => {
      if (this.ws !== ws) return;
      const wasReconnect = this.attempt > 0 || this.stats.reconnects > 0;
      this.attempt = 0;
      this._setState("open", { reconnected: wasReconnect });
      const waiting = this.waiting;
      this.waiting = [];
      for (const w of waiting) if (this.pending.has(w.id)) w.send();
      this._startPing();
      if (this.session) {
        this._join(true).catch((err) => this._emit("error", err));
      }
    };
    ws.onmessage = (msg) => { if (this.ws === ws) this._onFrame(msg.data); };
    ws.onclose = (ev) => { if (this.ws === ws) this._onClose(ev.code, ev.reason); };
    ws.onerror = () => { /* onclose follows */ };
  }

  _onFrame(data) {
    this.stats.framesIn++;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (Array.isArray(msg)) {
      for (const ev of msg) this._onEvent(ev);
    } else if (msg && "t" in msg) {
      this._onEvent(msg);
    } else if (msg && "id" in msg) {
      this._onReply(msg);
    }
  }

  _onReply(msg) {
    if (msg.id === null) {
      this._emit("error", new LivecartError(msg.error?.code, msg.error?.message, msg.error));
      return;
    }
    const entry = this.pending.get(msg.id);
    if (!entry) return;
    this.pending.delete(msg.id);
    clearTimeout(entry.timer);
    if (msg.ok) {
      // Room bookkeeping happens synchronously here: replayed events follow this frame.
      if (entry.op === "join") this._afterJoin(msg.result);
      entry.resolve(msg.result);
    } else {
      const { code, message, ...details } = msg.error || {};
      entry.reject(new LivecartError(code, message, details));
    }
  }

  _onEvent(ev) {
    if (!ev || typeof ev.t !== "string") return;
    this.stats.eventsIn++;
    if (typeof ev.seq === "number") {
      if (this.awaitingReplay && ev.seq > this.lastSeq + 1) this._replayMissing();
      if (this.lastSeq !== null) {
        if (ev.seq <= this.lastSeq) return; // duplicate (already in the snapshot)
        if (ev.seq > this.lastSeq + 1 && !this.resyncing) {
          // A hole: ask the server to replay from what we have.
          this._resync();
          return;
        }
        if (this.resyncing) return; // the resync's replay will deliver these
      }
      this.lastSeq = ev.seq;
      if (this.awaitingReplay && ev.seq >= this.awaitingReplay.seq) this._replayDone();
    }
    this._emit(ev.t, ev.d, ev);
    this._emit("*", ev);
  }

  async _join(isReconnect) {
    const args = { session: this.session };
    if (this.lastSeq !== null && this.epoch) {
      args.since = this.lastSeq;
      args.epoch = this.epoch;
    }
    if (this.joinArgs) Object.assign(args, this.joinArgs(isReconnect)); // e.g. chat.js
    const snapshot = await this.request("join", args);
    return snapshot;
  }

  _afterJoin(snapshot) {
    const asked = this.lastSeq !== null;
    const recovered = asked && snapshot.recovered === true;
    this.epoch = snapshot.epoch;
    this.resyncing = false;
    // When recovered, the replay (seq > lastSeq) follows; keep lastSeq so it applies.
    // Otherwise the snapshot is the truth and the stream continues after its seq.
    if (!recovered) this.lastSeq = snapshot.seq;
    this._replayDone();
    if (recovered && snapshot.seq > this.lastSeq) {
      // Trust but verify: the missed events must follow the reply right away. If they
      // do not (or a later seq shows up first), fall back to the snapshot.
      this.awaitingReplay = snapshot;
      this.replayTimer = setTimeout(() => this._replayMissing(), 2000);
    }
    this._emit("joined", { snapshot, recovered, resumed: asked });
  }

  _replayDone() {
    clearTimeout(this.replayTimer);
    this.awaitingReplay = null;
  }

  _replayMissing() {
    const snapshot = this.awaitingReplay;
    this._replayDone();
    if (!snapshot || this.lastSeq === null || this.lastSeq >= snapshot.seq) return;
    console.warn(`livecart: promised replay ${this.lastSeq + 1}..${snapshot.seq} did not arrive; using the snapshot`);
    this.lastSeq = snapshot.seq;
    this._emit("joined", { snapshot, recovered: false, resumed: true, replayMissing: true });
  }

  _resync() {
    if (!this.session) return;
    this.resyncing = true;
    this._join(true).catch((err) => {
      this.resyncing = false;
      this._emit("error", err);
    });
  }

  _onClose(code, reason) {
    this.ws = null;
    this._stopPing();
    for (const [id, entry] of this.pending) {
      if (entry.sent) {
        clearTimeout(entry.timer);
        this.pending.delete(id);
        entry.reject(new LivecartError("disconnected", "connection lost before the reply"));
      }
    }
    if (this.closedByUser) return;
    if (FATAL_CLOSE_CODES.has(code)) {
      this._setState("closed", { code, reason: reason || "token rejected" });
      return;
    }
    this._scheduleReconnect(reason || `closed (${code})`, code);
  }

  _drop(reason) {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    try { ws.close(4000, "client drop"); } catch { /* ignore */ }
    this._onClose(1006, reason);
  }

  _scheduleReconnect(reason, code) {
    this.attempt += 1;
    this.stats.reconnects += 1;
    const exp = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** (this.attempt - 1));
    let delay = exp / 2 + Math.random() * (exp / 2); // "equal jitter"
    if (code === 4008) delay = Math.min(delay, this.minBackoffMs); // slow consumer: come back fast
    if (code === 4029) delay = Math.max(delay, 5000); // abuse: back off for real
    const offline = globalThis.navigator?.onLine === false;
    // While the browser says it is offline, wait for its `online` event (plus a slow
    // safety retry, since onLine can be wrong) instead of burning attempts.
    if (offline) delay = Math.max(delay, this.maxBackoffMs);
    this._setState("reconnecting", { reason, code, delayMs: Math.round(delay), offline });
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this._open(), delay);
  }

  _reconnectNow() {
    clearTimeout(this.reconnectTimer);
    if (!this.ws && !this.closedByUser) this._open();
  }

  _startPing() {
    this._stopPing();
    this._ping(); // immediately: gives the clock offset
    if (this.pingIntervalMs > 0) {
      this.pingTimer = setInterval(() => this._ping(), this.pingIntervalMs);
    }
  }

  _stopPing() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  async _ping() {
    const ws = this.ws;
    const t0 = Date.now();
    try {
      const { pong } = await this.request("ping", {}, { timeoutMs: this.pingTimeoutMs });
      const t1 = Date.now();
      const rtt = t1 - t0;
      // Keep the estimate from the fastest round trip (least queueing), NTP-style.
      if (typeof pong === "number" && rtt <= this.bestRtt * 1.5 + 5) {
        this.bestRtt = Math.min(this.bestRtt, rtt);
        this.clockOffset = pong - (t0 + rtt / 2);
      }
    } catch (err) {
      if (err.code === "timeout" && this.ws === ws) this._drop("heartbeat timeout");
    }
  }
}
