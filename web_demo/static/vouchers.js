// Vouchers and waitlists in the web demo (docs/protocol.md "Vouchers", "Waitlists").
//   viewer:  installViewerPromos({ client, state, productOf, money, rerender }) — a voucher
//            banner from the room's `voucher` event, a code field in the cart drawer, a
//            "Join waitlist" button on a sold-out card, and the private `restocked` offer.
//   creator: installCreatorVouchers({ client, session, currency }) — the voucher card:
//            create one (demo: as the demo seller) and show it in the room.
import { $, h, api, mintToken, toast, errorText, money as fmtMoney } from "./common.js";

const DEMO_SELLER = "seller_demo";

// The server's rule, to show an estimate before checkout (the order carries the real one):
// covered subtotal S, D = floor(S * percent / 100) or min(amount_off, S).
export function estimateDiscount(card, lines, productOf) {
  if (!card) return 0;
  const covered = lines.filter((l) => {
    const p = productOf(l.product);
    return p.seller === card.seller && (!card.products?.length || card.products.includes(p.id));
  });
  const subtotal = covered.reduce((n, l) => n + l.unit_price * l.qty, 0);
  if (!covered.length || subtotal < (card.min_spend || 0)) return 0;
  return card.percent_off ? Math.floor((subtotal * card.percent_off) / 100)
    : Math.min(card.amount_off || 0, subtotal);
}

function describe(card, currency) {
  const off = card.percent_off ? `${card.percent_off}% off` : `${fmtMoney(card.amount_off, currency)} off`;
  const min = card.min_spend ? ` · min ${fmtMoney(card.min_spend, currency)}` : "";
  return `${off}${min}`;
}

// --- viewer -------------------------------------------------------------------------------

export function installViewerPromos({ client, state, productOf, rerender }) {
  const promo = { card: null, applied: null, holds: new Map() }; // holds: product -> until
  state.promo = promo; // browser tests read it

  const banner = h("div", { id: "voucher-banner", class: "voucher-banner", hidden: true, role: "status" },
    h("span", { class: "voucher-chip" }, "Voucher"),
    h("strong", { id: "voucher-banner-code" }), h("span", { id: "voucher-banner-text", class: "small" }),
    h("button", { id: "voucher-banner-use", class: "btn btn-small", type: "button",
      onclick: () => { $("#voucher-code").value = promo.card.code; apply(); $("#cart-dialog").showModal?.(); } },
      "Use in cart"));
  $("#pin-card")?.before(banner);

  const form = h("form", { id: "voucher-form", class: "voucher-form", onsubmit: (e) => { e.preventDefault(); apply(); } },
    h("label", { class: "sr-only", for: "voucher-code" }, "Voucher code"),
    h("input", { id: "voucher-code", class: "voucher-input", placeholder: "Voucher code", autocomplete: "off" }),
    h("button", { id: "voucher-apply", class: "btn btn-small", type: "submit" }, "Apply"));
  const line = h("p", { id: "voucher-line", class: "cart-total voucher-line", hidden: true },
    h("span", { id: "voucher-line-label" }), h("strong", { id: "voucher-discount" }));
  $("#cart-dialog .sheet-foot")?.prepend(form, line);

  const waitBtn = h("button", { id: "waitlist-btn", class: "btn btn-block waitlist-btn", type: "button", hidden: true,
    onclick: () => joinWaitlist() }, "Join the waitlist");
  $("#pin-card .pin-body")?.append(waitBtn);

  async function apply() {
    const code = $("#voucher-code").value.trim();
    if (!code) { promo.applied = null; renderCartPart(); return; }
    try {
      promo.applied = await api(`/api/vouchers/${encodeURIComponent(code)}`);
      toast(`Voucher ${promo.applied.code} applied`, "ok");
    } catch (err) {
      promo.applied = null;
      toast(`Voucher not found: ${code}`, "error");
    }
    renderCartPart();
  }

  function renderCartPart() {
    const card = promo.applied;
    const d = estimateDiscount(card, state.cart.lines, productOf);
    $("#voucher-line").hidden = !card;
    if (card) {
      $("#voucher-line-label").textContent = `${card.code} · ${describe(card, state.currency)}`;
      $("#voucher-discount").textContent = d ? `−${fmtMoney(d, state.currency)}` : "not applicable";
      $("#cart-total").textContent = fmtMoney(state.cart.total - d, state.currency);
    }
  }

  async function joinWaitlist() {
    const pid = state.shown?.product?.id;
    if (!pid) return;
    try {
      const r = await client.request("waitlist", { product: pid });
      if (r.holding) promo.holds.set(pid, r.hold_until);
      toast(r.holding ? "A unit is held for you" : `You’re #${r.place} on the waitlist`, "ok");
      waitBtn.textContent = r.holding ? "Held for you" : `On the waitlist · #${r.place}`;
      waitBtn.disabled = true;
      waitBtn.dataset.place = String(r.place || 0);
    } catch (err) {
      toast(`Couldn’t join the waitlist: ${errorText(err)}`, "error");
    }
  }

  client.on("voucher", (card) => {
    promo.card = card;
    $("#voucher-banner-code").textContent = card.code;
    $("#voucher-banner-text").textContent = describe(card, state.currency);
    banner.hidden = false;
  });
  client.on("restocked", (d) => {
    promo.holds.set(d.product, d.hold_until);
    const mins = Math.max(1, Math.round((d.hold_until - client.serverNow()) / 60000));
    toast(`Back in stock — one is held for you for ${mins} min`, "ok", 8000);
    rerender();
  });

  return {
    holding: (pid) => (promo.holds.get(pid) || 0) > client.serverNow(),
    /** after renderCard: the waitlist button on a sold-out card without a hold */
    renderCard(pid, soldOut) {
      const show = soldOut && !!state.me?.sub && !promo.holds.has(pid);
      waitBtn.hidden = !show;
      if (!show) { waitBtn.disabled = false; waitBtn.textContent = "Join the waitlist"; }
    },
    renderCart: renderCartPart,
    /** checkout's arguments: the voucher (the server computes the total) or the total seen */
    checkoutArgs: (total) => (promo.applied ? { voucher: promo.applied.code } : { total }),
    ordered(order) {
      for (const l of order.lines || []) promo.holds.delete(l.product);
      if (order.voucher) { promo.applied = null; $("#voucher-code").value = ""; }
    },
  };
}

// --- creator ------------------------------------------------------------------------------

export function installCreatorVouchers({ client, session, currency = "USD" }) {
  const root = $("#voucher-card");
  if (!root) return;
  let shown = null;
  const status = h("div", { id: "voucher-status", class: "deal-status", role: "status", hidden: true });
  const form = h("form", { id: "voucher-form", class: "form-grid", novalidate: true, onsubmit: (e) => { e.preventDefault(); createAndShow(); } },
    h("label", { class: "field" }, h("span", {}, "Code"),
      h("input", { id: "voucher-code", value: `LIVE${Math.floor(Math.random() * 900 + 100)}`, autocomplete: "off", required: true })),
    h("label", { class: "field" }, h("span", {}, "Percent off"),
      h("input", { id: "voucher-percent", type: "number", min: 1, max: 100, value: 10, required: true })),
    h("label", { class: "field" }, h("span", {}, "Uses"),
      h("input", { id: "voucher-uses", type: "number", min: 1, value: 50, required: true })),
    h("label", { class: "field" }, h("span", {}, "Minutes"),
      h("input", { id: "voucher-minutes", type: "number", min: 1, value: 30, required: true })),
    h("p", { id: "voucher-error", class: "form-error", role: "alert", hidden: true, style: "grid-column:1/-1" }),
    h("button", { id: "voucher-submit", class: "btn btn-primary", type: "submit", style: "grid-column:1/-1" }, "Create & show voucher"));
  root.append(form, status);

  async function createAndShow() {
    const err = $("#voucher-error");
    err.hidden = true;
    const code = $("#voucher-code").value.trim();
    try {
      const seller = await mintToken(DEMO_SELLER, "seller"); // demo mode: the demo shop
      await api("/api/vouchers", { method: "POST", token: seller, body: {
        code, percent_off: Number($("#voucher-percent").value), total_uses: Number($("#voucher-uses").value),
        ends_at: Date.now() + Number($("#voucher-minutes").value) * 60000 } }).catch((e) => {
        if (e.status !== 409) throw e; // an existing code: show it as it is
      });
      const r = await client.request("voucher", { code, session });
      shown = r.voucher;
      render(shown);
      toast(`Voucher ${code} shown to viewers`, "ok");
    } catch (e) {
      err.textContent = errorText(e);
      err.hidden = false;
    }
  }

  function render(card) {
    status.hidden = false;
    status.replaceChildren(h("strong", {}, card.code), ` ${describe(card, currency)} · `,
      h("span", { id: "voucher-remaining" }, `${card.remaining} left`),
      card.discount_given !== undefined ? ` · ${fmtMoney(card.discount_given, currency)} given` : "");
  }

  setInterval(async () => { // the card's counters (uses and discount given), while shown
    if (!shown || document.hidden) return;
    try { render(await api(`/api/vouchers/${encodeURIComponent(shown.code)}`)); } catch { /* next time */ }
  }, 3000);
}
