// The chat panel (viewer page and creator console): messages, sending, the pins-only
// toggle, and the moderator's controls (delete, time out, ban) when this user moderates.
// Chat-lane events carry `cseq` (their own sequence, docs/protocol.md "Chat"): the panel
// keeps the last one it applied and rejoins with `chat_since` after a reconnect.
import { $, h, api, toast, errorText } from "./common.js";

const ERRORS = {
  muted: (e) => `You are timed out for ${e.details?.remaining_s ?? "a few"} s`,
  banned: () => "You are banned from this chat",
  blocked: (e) => e.message || "That message is not allowed here",
  rate_limited: (e) => `Slow down: try again in ${Math.ceil((e.details?.retry_after_ms ?? 1000) / 1000)} s`,
  unauthorized: () => "Sign in to chat",
};

function chatError(err) {
  const explain = ERRORS[err?.code];
  return explain ? explain(err) : errorText(err);
}

/**
 * Mount the chat panel into `root`. `moderator` is true when this user may moderate
 * (the creator; or a name in GET /api/sessions/{id} `moderators`, checked here when
 * unknown). Returns {setEnabled, state} (browser tests read `state`).
 */
export function mountChat({ client, session, me, root, moderator = null, toggle = true }) {
  const state = { enabled: true, lastCseq: null, moderator: Boolean(moderator), messages: new Map() };
  const list = h("ul", { class: "chat-list", role: "log", "aria-live": "polite", "aria-label": "Chat messages", id: "chat-list" });
  const input = h("input", { class: "chat-input", id: "chat-input", type: "text", maxlength: 300, autocomplete: "off",
    placeholder: me?.sub ? "Say something…" : "Sign in to chat", "aria-label": "Chat message" });
  const send = h("button", { class: "btn btn-primary chat-send", id: "chat-send", type: "submit" }, "Send");
  const error = h("p", { class: "form-error chat-error", id: "chat-error", role: "alert", hidden: true });
  const form = h("form", { class: "chat-form", onsubmit: (e) => { e.preventDefault(); submit(); } }, input, send);
  const switchEl = h("input", { type: "checkbox", id: "chat-toggle", checked: true });
  const head = h("div", { class: "chat-head" },
    h("h2", { id: "chat-title" }, "Chat"),
    toggle ? h("label", { class: "chat-toggle small" }, switchEl, " Show chat") : null);
  root.replaceChildren(head, list, error, form);
  root.setAttribute("aria-labelledby", "chat-title");
  root.classList.add("chat-panel");

  // Ask for chat (or not) on every join; after a drop, only what was missed.
  const previous = client.joinArgs;
  client.joinArgs = (reconnect) => {
    const args = previous ? previous(reconnect) : {};
    if (!state.enabled) return { ...args, chat: false };
    return state.lastCseq !== null ? { ...args, chat_since: state.lastCseq } : args;
  };

  function showError(text) {
    error.textContent = text || "";
    error.hidden = !text;
  }

  function row(ev) {
    const d = ev.d;
    const li = h("li", { class: "chat-msg", dataset: { id: String(d.id), user: d.user } },
      h("span", { class: "chat-name" }, d.name), " ", h("span", { class: "chat-text" }, d.text));
    if (state.moderator && d.user !== me?.sub) {
      li.append(h("span", { class: "chat-mod" },
        h("button", { class: "chip-btn", type: "button", "data-action": "delete", "aria-label": `Delete message from ${d.name}`,
          onclick: () => moderate("chat_delete", { message: d.id }) }, "Delete"),
        h("button", { class: "chip-btn", type: "button", "data-action": "mute", "aria-label": `Time out ${d.name} for 60 seconds`,
          onclick: () => moderate("mute", { user: d.user, seconds: 60 }) }, "60 s"),
        h("button", { class: "chip-btn", type: "button", "data-action": "ban", "aria-label": `Ban ${d.name}`,
          onclick: () => moderate("ban", { user: d.user }) }, "Ban")));
    }
    return li;
  }

  function add(ev) {
    if (state.messages.has(ev.d.id)) return;
    const li = row(ev);
    state.messages.set(ev.d.id, li);
    const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
    list.append(li);
    while (list.children.length > 200) {
      const first = list.firstElementChild;
      state.messages.delete(Number(first.dataset.id));
      first.remove();
    }
    if (stick) list.scrollTop = list.scrollHeight;
  }

  function remove(id) {
    state.messages.get(id)?.remove();
    state.messages.delete(id);
  }

  function reset(messages) {
    list.replaceChildren();
    state.messages.clear();
    for (const ev of messages) add(ev);
  }

  async function moderate(op, args) {
    try {
      await client.request(op, { session, ...args });
    } catch (err) {
      toast(`Couldn’t ${op.replace("_", " ")}: ${errorText(err)}`, "error");
    }
  }

  async function submit() {
    const text = input.value.trim();
    if (!text) return;
    send.disabled = true;
    try {
      await client.request("chat", { text });
      input.value = "";
      showError("");
    } catch (err) {
      showError(chatError(err));
    } finally {
      send.disabled = false;
    }
  }

  // A chat-lane event applies once, in cseq order (the server sends them gap-free).
  function fresh(ev) {
    if (typeof ev.cseq !== "number") return true;
    if (state.lastCseq !== null && ev.cseq <= state.lastCseq) return false;
    state.lastCseq = ev.cseq;
    return true;
  }

  client.on("joined", ({ snapshot }) => {
    if (!state.enabled) return;
    if (snapshot.chat_recovered === true) return; // the missed chat follows as events
    state.lastCseq = snapshot.cseq ?? null;
    reset(snapshot.chat || []);
  });
  client.on("chat", (d, ev) => { if (state.enabled && fresh(ev)) add(ev); });
  client.on("chat_deleted", (d, ev) => { if (fresh(ev)) remove(d.id); });
  client.on("banned", (d, ev) => {
    if (!fresh(ev)) return;
    for (const li of [...list.querySelectorAll(".chat-msg")]) {
      if (li.dataset.user === d.user) remove(Number(li.dataset.id));
    }
  });

  async function setEnabled(on) {
    if (on === state.enabled) return;
    state.enabled = on;
    state.lastCseq = null;
    root.dataset.chat = on ? "on" : "off";
    list.hidden = !on;
    form.hidden = !on;
    if (!on) reset([]);
    try {
      await client.join(session);
    } catch (err) {
      toast(`Couldn’t switch the chat: ${errorText(err)}`, "error");
    }
  }
  switchEl.addEventListener("change", () => setEnabled(switchEl.checked));
  root.dataset.chat = "on";

  if (moderator === null && me?.sub) {
    api(`/api/sessions/${encodeURIComponent(session)}`).then((s) => {
      const mine = s.creator === me.sub || (s.moderators || []).includes(me.sub);
      if (mine !== state.moderator) {
        state.moderator = mine;
        root.dataset.moderator = mine ? "yes" : "no";
        const kept = [...state.messages.values()].map((li) => li.dataset.id);
        for (const id of kept) {
          const old = state.messages.get(Number(id));
          const ev = { d: { id: Number(id), user: old.dataset.user, name: old.querySelector(".chat-name").textContent,
            text: old.querySelector(".chat-text").textContent } };
          const li = row(ev);
          old.replaceWith(li);
          state.messages.set(Number(id), li);
        }
      }
    }).catch(() => {});
  }
  root.dataset.moderator = state.moderator ? "yes" : "no";
  return { setEnabled, state };
}

/** The creator console's moderation box: slow mode, blocked words, links, moderators. */
export function mountModeration({ client, session, token, root }) {
  const slow = h("select", { id: "mod-slow", "aria-label": "Slow mode" },
    [0, 5, 15, 30, 60].map((s) => h("option", { value: s }, s ? `one message / ${s} s` : "off")));
  const words = h("input", { id: "mod-words", type: "text", placeholder: "scam, fake deal", "aria-label": "Blocked words, comma separated" });
  const links = h("input", { id: "mod-links", type: "checkbox" });
  const mods = h("input", { id: "mod-list", type: "text", placeholder: "user ids, comma separated", "aria-label": "Moderators" });
  const apply = h("button", { class: "btn btn-ghost", type: "button", id: "mod-apply" }, "Apply chat rules");
  const saveMods = h("button", { class: "btn btn-ghost", type: "button", id: "mod-save" }, "Save moderators");
  root.replaceChildren(
    h("h3", {}, "Chat moderation"),
    h("label", { class: "small" }, "Slow mode ", slow),
    h("label", { class: "small" }, "Blocked words ", words),
    h("label", { class: "small" }, links, " Allow links"),
    apply,
    h("label", { class: "small" }, "Moderators ", mods),
    saveMods,
  );
  root.classList.add("moderation-box");
  const split = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
  apply.addEventListener("click", async () => {
    try {
      await client.request("chat_settings", { session, slow_mode_s: Number(slow.value),
        blocked_words: split(words.value), links_allowed: links.checked });
      toast("Chat rules applied");
    } catch (err) {
      toast(`Couldn’t apply: ${errorText(err)}`, "error");
    }
  });
  saveMods.addEventListener("click", async () => {
    try {
      const r = await api(`/api/sessions/${encodeURIComponent(session)}/moderators`,
        { method: "PUT", token, body: split(mods.value) });
      mods.value = r.moderators.join(", ");
      toast(`Moderators: ${r.moderators.join(", ") || "none"}`);
    } catch (err) {
      toast(`Couldn’t save moderators: ${errorText(err)}`, "error");
    }
  });
  api(`/api/sessions/${encodeURIComponent(session)}`).then((s) => {
    mods.value = (s.moderators || []).join(", ");
  }).catch(() => {});
}

/** The landing page's "Notify me" button for a scheduled session. */
export function notifyButton(session, getToken) {
  const btn = h("button", { class: "btn btn-ghost", type: "button", "data-role": "notify", "aria-pressed": "false" }, "🔔 Notify me");
  btn.addEventListener("click", async () => {
    const on = btn.getAttribute("aria-pressed") !== "true";
    try {
      const token = await getToken();
      const r = await api(`/api/sessions/${encodeURIComponent(session.id)}/reminder`, { method: on ? "PUT" : "DELETE", token });
      btn.setAttribute("aria-pressed", r.reminded ? "true" : "false");
      btn.textContent = r.reminded ? "🔔 We’ll notify you" : "🔔 Notify me";
    } catch (err) {
      toast(`Couldn’t set the reminder: ${errorText(err)}`, "error");
    }
  });
  return btn;
}

export { $ };

/** The viewer identity the demo pages share (sessionStorage), and its token. */
async function viewerToken() {
  const { mintToken, randomId, randomName } = await import("./common.js");
  let me = null;
  try { me = JSON.parse(sessionStorage.getItem("livecart.viewer") || "null"); } catch { /* */ }
  if (!me) {
    me = { sub: randomId("viewer_"), name: randomName() };
    sessionStorage.setItem("livecart.viewer", JSON.stringify(me));
  }
  return mintToken(me.sub, "viewer", me.name);
}

/** For the landing page: "Starts …" and a Notify me button on a scheduled show. */
export function upcoming(session) {
  if (session.status !== "scheduled" || session.kind !== "live") return null;
  const when = session.scheduled_at ? new Date(session.scheduled_at).toLocaleString() : "soon";
  return h("span", { class: "upcoming" }, h("span", { class: "muted small" }, `Starts ${when} `),
    notifyButton(session, viewerToken));
}
