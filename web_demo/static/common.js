// Shared helpers for the livecart web demo pages (not part of the protocol client).

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** Create an element: h("div", {class: "x", onclick}, child, "text", ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// --- money: integers in minor units, never floats on the wire --------------------------

const formatters = new Map();
function formatter(currency) {
  if (!formatters.has(currency)) {
    try {
      formatters.set(currency, new Intl.NumberFormat(undefined, { style: "currency", currency }));
    } catch {
      formatters.set(currency, new Intl.NumberFormat(undefined, { style: "currency", currency: "USD" }));
    }
  }
  return formatters.get(currency);
}

/** Digits after the decimal point for a currency (USD 2, JPY 0, ...). */
export function minorDigits(currency = "USD") {
  return formatter(currency).resolvedOptions().maximumFractionDigits ?? 2;
}

/** 8900, "USD" → "$89.00" */
export function money(minor, currency = "USD") {
  if (typeof minor !== "number" || !Number.isFinite(minor)) return "—";
  return formatter(currency).format(minor / 10 ** minorDigits(currency));
}

/** "89.5" → 8950 (USD); exact string arithmetic, null when not a valid amount. */
export function parseMoney(text, currency = "USD") {
  const digits = minorDigits(currency);
  const m = String(text).trim().replace(/[^\d.]/g, "").match(/^(\d*)(?:\.(\d*))?$/);
  if (!m || (m[1] === "" && !m[2])) return null;
  const frac = (m[2] || "");
  if (frac.length > digits) return null;
  return Number(m[1] || "0") * 10 ** digits + Number(frac.padEnd(digits, "0") || "0");
}

/** Minor units → plain input value, e.g. 8900 → "89.00". */
export function moneyInput(minor, currency = "USD") {
  const digits = minorDigits(currency);
  if (!digits) return String(minor);
  const s = String(Math.abs(minor)).padStart(digits + 1, "0");
  return `${s.slice(0, -digits)}.${s.slice(-digits)}`;
}

// --- identity ----------------------------------------------------------------------------

const FIRST = ["Ana", "Ben", "Chloé", "Diego", "Elif", "Farah", "Gus", "Hana", "Ivo", "Jun",
  "Kemi", "Luca", "Maya", "Nico", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara", "Uma",
  "Vik", "Wen", "Yara", "Zoe"];

export function randomName() {
  const pick = (xs) => xs[Math.floor(Math.random() * xs.length)];
  return pick(FIRST);
}

export function randomId(prefix = "") {
  const bytes = new Uint8Array(6);
  crypto.getRandomValues(bytes);
  return prefix + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A round initials avatar with a colour derived from the name. */
export function avatarFor(name = "", cls = "avatar") {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  const el = document.createElement("span");
  el.className = cls;
  el.setAttribute("aria-hidden", "true");
  el.style.background = `hsl(${hash % 360}, 70%, 45%)`;
  el.textContent = (name.trim()[0] || "?").toUpperCase();
  return el;
}

/** POST /api/tokens (demo mode). */
export async function mintToken(sub, role, name) {
  const res = await fetch("/api/tokens", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(name ? { sub, role, name } : { sub, role }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body?.error?.message || `token endpoint answered ${res.status}`);
  return body.token;
}

/** Decode a JWT's claims (no verification: display only). */
export function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return {};
  }
}

export async function api(path, { method = "GET", token, body } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(data?.error?.message || `HTTP ${res.status}`);
    err.code = data?.error?.code;
    err.status = res.status;
    throw err;
  }
  return data;
}

// --- UI bits ---------------------------------------------------------------------------

/** A short-lived message in the page's toast region (role=status), placed just below the
 * page's header so it never covers the title, badges or controls. */
export function toast(message, kind = "info", ms = 4000) {
  let region = $("#toasts");
  if (!region) {
    region = h("div", { id: "toasts", class: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(region);
  }
  const header = $("header");
  const below = header ? Math.max(0, header.getBoundingClientRect().bottom) : 0;
  region.style.top = `${Math.round(below + 10)}px`;
  const el = h("div", { class: `toast toast-${kind}` }, message);
  region.append(el);
  setTimeout(() => el.classList.add("leaving"), ms - 300);
  setTimeout(() => el.remove(), ms);
  return el;
}

// What a person reads for each error code; the code itself stays out of the text (it is in
// the reply for programs). `d` are the error's details (limit, available, price, ...).
const HUMAN = {
  limit_exceeded: (d) => (typeof d.limit === "number"
    ? `You’ve reached this deal’s limit of ${d.limit} per buyer.`
    : "You’ve reached this deal’s limit per buyer."),
  sold_out: () => "Sold out — every unit is gone.",
  out_of_stock: (d) => (typeof d.available === "number"
    ? `Only ${d.available} left in stock.` : "Not enough stock left."),
  deal_ended: () => "The flash deal has just ended.",
  not_live: () => "The show isn’t live right now.",
  rate_limited: () => "Slow down a little and try again.",
  unavailable: () => "The service is briefly unavailable. Please try again.",
  disconnected: () => "You’re offline. Reconnecting…",
  timeout: () => "The server took too long to answer. Please try again.",
  unauthorized: () => "Your sign-in expired. Reload the page.",
  forbidden: () => "You’re not allowed to do that here.",
};

/** Human text for a protocol error (LivecartError or anything thrown): no raw codes. */
export function errorText(err) {
  if (!err) return "Something went wrong";
  const human = err.code && HUMAN[err.code];
  if (human) return human(err.details || {});
  return err.message || String(err);
}

export function idempotencyKey() {
  return crypto.randomUUID ? crypto.randomUUID() : randomId("k_");
}

export function fmtClock(ms) {
  const neg = ms < 0;
  const s = Math.floor(Math.abs(ms) / 1000);
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return `${neg ? "-" : ""}${hh ? `${hh}:` : ""}${mm}:${ss}`;
}

export function fmtCountdown(ms) {
  if (ms <= 0) return "0:00";
  const s = Math.ceil(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

export function compact(n) {
  if (typeof n !== "number") return "—";
  return new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 }).format(n);
}
