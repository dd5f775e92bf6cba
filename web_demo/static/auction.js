// auction.js — auctions and giveaways in the web demo (docs/protocol.md, "Auctions" and
// "Giveaways"). The viewer page mounts a card over the stream (bid with a timer, outbid /
// won toasts, enter a giveaway); the creator console mounts a card with two small forms.
// Both only use the room events `auction` / `giveaway` and the private `outbid` / `won`.
import { $, h, money, parseMoney, moneyInput, toast, errorText, idempotencyKey, fmtCountdown } from "./common.js";

const titleOf = (state, pid) => state.products.get(pid)?.title || pid;

/** Viewer: `mountViewerFormats(client, state)` once the client exists. */
export function mountViewerFormats(client, state) {
  const root = $("#formats");
  if (!root) return;
  const view = { auction: null, giveaway: null, entered: new Set(), bidding: false };
  window.__formats = view; // browser-test hook

  const bidBtn = h("button", { class: "btn btn-primary", type: "button", id: "bid-btn" }, "Bid");
  const enterBtn = h("button", { class: "btn btn-primary", type: "button", id: "enter-btn" }, "Enter");
  const aCard = h("section", { class: "format-card auction-card", id: "auction-card", hidden: true, "aria-live": "polite" });
  const gCard = h("section", { class: "format-card giveaway-card", id: "giveaway-card", hidden: true, "aria-live": "polite" });
  root.append(aCard, gCard);

  function renderAuction() {
    const a = view.auction;
    aCard.hidden = !a;
    if (!a) return;
    const cur = state.products.get(a.product)?.currency || state.currency;
    const left = a.ends_at - client.serverNow();
    const open = a.status === "open" && left > 0;
    const top = a.top_bid === null ? "No bids yet" : `${money(a.top_bid, cur)} · ${a.bidder}`;
    bidBtn.textContent = `Bid ${money(a.min_bid, cur)}`;
    bidBtn.disabled = !open || view.bidding || !state.me?.sub;
    let outcome = "";
    if (a.status === "closed") {
      outcome = { sold: `Sold to ${a.bidder} for ${money(a.top_bid || 0, cur)}`, unsold: "Closed — out of stock",
        reserve_not_met: "Closed — reserve not met", no_bids: "Closed — no bids" }[a.outcome] || "Closed";
    }
    aCard.replaceChildren(
      h("p", { class: "format-kind" }, a.sudden_death ? "Auction · sudden death" : "Auction"),
      h("h3", { class: "format-title" }, titleOf(state, a.product)),
      h("p", { class: "format-top", id: "auction-top" }, top),
      h("p", { class: "format-meta" },
        open ? h("span", {}, "ends in ", h("strong", { id: "auction-timer" }, fmtCountdown(left))) : h("strong", { id: "auction-outcome" }, outcome),
        h("span", {}, ` · ${a.bids} bid${a.bids === 1 ? "" : "s"}`),
        a.top_bid !== null && !a.reserve_met ? h("span", {}, " · reserve not met") : ""),
      open ? bidBtn : "");
  }

  function renderGiveaway() {
    const g = view.giveaway;
    gCard.hidden = !g;
    if (!g) return;
    const left = g.ends_at - client.serverNow();
    const open = g.status === "open" && left > 0;
    const mine = view.entered.has(g.id);
    enterBtn.textContent = mine ? "You’re in ✓" : "Enter";
    enterBtn.disabled = mine || !open || !state.me?.sub;
    gCard.replaceChildren(
      h("p", { class: "format-kind" }, `Giveaway · ${g.winner_count} winner${g.winner_count === 1 ? "" : "s"}`),
      h("h3", { class: "format-title" }, titleOf(state, g.product)),
      open
        ? h("p", { class: "format-meta" }, "ends in ", h("strong", { id: "giveaway-timer" }, fmtCountdown(left)),
          g.keyword ? ` · keyword “${g.keyword}”` : "")
        : h("p", { class: "format-top", id: "giveaway-winners" },
          g.winners.length ? `Winners: ${g.winners.join(", ")}` : "Closed — no eligible entrants"),
      open ? enterBtn : "");
  }

  bidBtn.addEventListener("click", async () => {
    const a = view.auction;
    if (!a) return;
    view.bidding = true;
    renderAuction();
    try {
      await client.request("bid", { auction: a.id, amount: a.min_bid, idempotency_key: idempotencyKey() });
      toast(`You’re the top bidder`, "ok", 2500);
    } catch (err) {
      if (err.code === "conflict" && typeof err.details?.min_bid === "number") {
        toast("Someone bid first — try again", "warn", 3000);
      } else {
        toast(`Couldn’t bid: ${errorText(err)}`, "error", 5000);
      }
    } finally {
      view.bidding = false;
      renderAuction();
    }
  });

  enterBtn.addEventListener("click", async () => {
    const g = view.giveaway;
    if (!g) return;
    try {
      await client.request("enter", { giveaway: g.id });
      view.entered.add(g.id);
      toast("You’re in the giveaway — stay until the draw!", "ok", 3000);
    } catch (err) {
      toast(`Couldn’t enter: ${errorText(err)}`, "error", 5000);
    }
    renderGiveaway();
  });

  client.on("auction", (d) => { view.auction = d; renderAuction(); });
  client.on("giveaway", (d) => { view.giveaway = d; renderGiveaway(); });
  client.on("outbid", (d) => {
    const cur = state.products.get(d.product)?.currency || state.currency;
    toast(`You’ve been outbid: ${money(d.top_bid, cur)}`, "warn", 4000);
  });
  client.on("won", (d) => {
    toast(d.auction ? `You won the auction! Order ${d.order}` : `You won the giveaway! Order ${d.order || "—"}`, "ok", 8000);
  });
  setInterval(() => { renderAuction(); renderGiveaway(); }, 250);
}

/** Creator console: `mountCreatorFormats(client, state)` once the client exists. */
export function mountCreatorFormats(client, state) {
  const root = $("#formats-card");
  if (!root) return;
  const product = () => h("select", { name: "product" },
    ...state.showcase.map((pid) => h("option", { value: pid }, titleOf(state, pid))));
  const num = (name, value, min = 1) => h("input", { name, type: "number", min: String(min), step: "1", value: String(value) });
  const money_ = (name, value) => h("input", { name, inputmode: "decimal", autocomplete: "off", value });
  const status = h("p", { class: "muted small", id: "formats-status", role: "status" }, "Go live to run an auction or a giveaway.");

  function forms() {
    const cur = state.currency;
    const aForm = h("form", { class: "form-grid", id: "auction-form" },
      h("label", { class: "field full" }, "Product", product()),
      h("label", { class: "field" }, `Start price (${cur})`, money_("start_price", moneyInput(1000, cur))),
      h("label", { class: "field" }, `Increment (${cur})`, money_("increment", moneyInput(100, cur))),
      h("label", { class: "field" }, "Duration (seconds)", num("duration_s", 30)),
      h("label", { class: "field" }, `Reserve (${cur}, optional)`, money_("reserve_price", "")),
      h("label", { class: "field full check" }, h("input", { name: "sudden_death", type: "checkbox" }), " Sudden death (no extensions)"),
      h("button", { class: "btn btn-primary full", type: "submit", id: "auction-submit" }, "Start auction"));
    const gForm = h("form", { class: "form-grid", id: "giveaway-form" },
      h("label", { class: "field full" }, "Product", product()),
      h("label", { class: "field" }, "Winners", num("winners", 1)),
      h("label", { class: "field" }, "Duration (seconds)", num("duration_s", 30)),
      h("button", { class: "btn btn-primary full", type: "submit", id: "giveaway-submit" }, "Start giveaway"));
    aForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = new FormData(aForm);
      const reserve = String(f.get("reserve_price") || "").trim();
      const args = {
        product: f.get("product"), start_price: parseMoney(String(f.get("start_price")), cur),
        increment: parseMoney(String(f.get("increment")), cur), duration_s: Number(f.get("duration_s")),
        sudden_death: f.get("sudden_death") === "on",
      };
      if (reserve) args.reserve_price = parseMoney(reserve, cur);
      try {
        await client.request("auction", args);
        toast("Auction started", "ok", 2500);
      } catch (err) { toast(`Couldn’t start the auction: ${errorText(err)}`, "error", 6000); }
    });
    gForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = new FormData(gForm);
      try {
        await client.request("giveaway", {
          product: f.get("product"), winners: Number(f.get("winners")),
          ends_at: Math.round(client.serverNow() + Number(f.get("duration_s")) * 1000),
        });
        toast("Giveaway started", "ok", 2500);
      } catch (err) { toast(`Couldn’t start the giveaway: ${errorText(err)}`, "error", 6000); }
    });
    root.replaceChildren(h("h2", {}, "Auction · Giveaway"), status, aForm, gForm);
  }

  client.on("joined", () => forms());
  client.on("auction", (d) => {
    const cur = state.products.get(d.product)?.currency || state.currency;
    status.textContent = d.status === "open"
      ? `Auction on ${titleOf(state, d.product)}: ${d.top_bid === null ? "no bids yet" : `${money(d.top_bid, cur)} by ${d.bidder}`} · ${d.bids} bids`
      : `Auction closed (${d.outcome})${d.outcome === "sold" ? `: ${money(d.top_bid, cur)} to ${d.bidder}` : ""}`;
  });
  client.on("giveaway", (d) => {
    status.textContent = d.status === "open"
      ? `Giveaway of ${titleOf(state, d.product)} open`
      : `Giveaway closed: ${d.winners.length ? d.winners.join(", ") : "no eligible entrants"} (${d.entries} entries)`;
  });
}
