// The order page: POST an order (market, limit or sniper), then follow its frames on the WebSocket the answer
// names (wsUrl). Frames: {orderId, seq, type, status, ts, occurredAt, data}. A dropped stream resumes with
// ?fromSeq=<last seq>. A card's Cancel button sends DELETE /api/orders/{id} (202: the order's router answers
// in the stream: `cancelled`, or a refusal once the swap was submitted). The resting orders (status `open`)
// are listed from GET /api/orders?status=open, each with its Cancel button.
// Under AUTH=keys the user pastes an API key: it goes with the POST as `Authorization: Bearer <key>` and with
// the WebSocket as the subprotocol `bearer.<key>` (a browser cannot set headers on a WebSocket). It is kept
// in sessionStorage: this tab only, gone when it closes.
"use strict";

const RESUMABLE = new Set([1001, 1006, 1011, 1012, 1013]);
const MAX_RETRIES = 8;
const TERMINAL = new Set(["confirmed", "failed", "expired", "cancelled"]);

const form = document.getElementById("order-form");
const formError = document.getElementById("form-error");
const ordersEl = document.getElementById("orders");
const template = document.getElementById("order-template");
const keyInput = document.getElementById("api-key");

keyInput.value = sessionStorage.getItem("oee.apiKey") || "";
keyInput.addEventListener("input", () => sessionStorage.setItem("oee.apiKey", keyInput.value.trim()));
document.getElementById("key-form").addEventListener("submit", (event) => event.preventDefault());

function apiKey() {
  return keyInput.value.trim();
}

function authHeaders(extra = {}) {
  const headers = { ...extra };
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  return headers;
}

// Show the fields of the chosen order type only (data-for: the types a field belongs to).
function showFieldsOf(type) {
  for (const el of form.querySelectorAll("[data-for]")) el.hidden = !el.dataset.for.split(" ").includes(type);
  for (const el of form.querySelectorAll("[data-not-for]")) el.hidden = el.dataset.notFor === type;
  if (type === "sniper") form.side.value = "buy";
  form.side.disabled = type === "sniper";
}
form.type.addEventListener("change", () => showFieldsOf(form.type.value));
showFieldsOf(form.type.value);

function orderBody() {
  const type = form.type.value;
  const body = {
    side: type === "sniper" ? "buy" : form.side.value,
    baseToken: type === "sniper" ? form.token.value.trim() : form.baseToken.value,
    quoteToken: form.quoteToken.value,
    amountIn: Number(form.amountIn.value),
  };
  if (type === "market") {
    if (form.slippageBps.value !== "") body.slippageBps = Number(form.slippageBps.value);
    return body;
  }
  body.type = type;
  if (type === "limit") body.limitPrice = Number(form.limitPrice.value);
  if (type === "sniper") {
    body.maxPrice = Number(form.maxPrice.value);
    body.minLiquidity = Number(form.minLiquidity.value);
  }
  if (form.expiresIn.value !== "") {
    body.expiresAt = new Date(Date.now() + Number(form.expiresIn.value) * 60_000).toISOString();
  }
  return body;
}

// The subprotocols carrying the key; the API accepts the socket with "oee.v1".
function wsProtocols() {
  const key = apiKey();
  return key ? ["oee.v1", `bearer.${key}`] : [];
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  formError.hidden = true;
  const button = document.getElementById("submit");
  button.disabled = true;
  try {
    const body = orderBody();
    const headers = authHeaders({ "Content-Type": "application/json" });
    const response = await fetch("/api/orders/execute", { method: "POST", headers, body: JSON.stringify(body) });
    const answer = await response.json().catch(() => ({}));
    if (response.status === 401 || response.status === 403) {
      showError(`${answer.error || "not allowed"} (HTTP ${response.status}): paste a valid API key above`);
      return;
    }
    if (response.status !== 201) {
      const details = (answer.details || []).map((d) => `${d.field}: ${d.message}`).join("\n");
      showError(`${answer.error || "request failed"} (HTTP ${response.status})${details ? "\n" + details : ""}`);
      return;
    }
    follow(answer.orderId, answer.wsUrl, body);
    if (body.type) setTimeout(loadResting, 1000);
  } catch (err) {
    showError(`could not reach the API: ${err}`);
  } finally {
    button.disabled = false;
  }
});

function showError(text) {
  formError.textContent = text;
  formError.hidden = false;
}

// One order card, and the WebSocket that feeds it.
function follow(orderId, wsUrl, request) {
  const card = template.content.firstElementChild.cloneNode(true);
  card.dataset.orderId = orderId;
  const $ = (selector) => card.querySelector(selector);
  $(".order-id").textContent = orderId;
  $(".pair").textContent = `${request.type || "market"}: ${request.side} ${request.amountIn} ` +
    `${request.side === "sell" ? request.baseToken : request.quoteToken} (${request.baseToken}/${request.quoteToken})`;
  if (request.limitPrice !== undefined) $(".limit").textContent = fmt(request.limitPrice);
  if (request.maxPrice !== undefined) $(".limit").textContent = `${fmt(request.maxPrice)} (min liquidity ${fmt(request.minLiquidity)})`;
  $(".cancel").addEventListener("click", () => cancelOrder(orderId, $(".cancel-state")));
  ordersEl.prepend(card);

  let lastSeq = 0;
  let retries = 0;
  let finished = false;

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}${wsUrl}` + (lastSeq ? `?fromSeq=${lastSeq}` : "");
    const ws = new WebSocket(url, wsProtocols());
    ws.onopen = () => setState(lastSeq ? `resumed after seq ${lastSeq}` : "live");
    ws.onmessage = (message) => {
      const frame = JSON.parse(message.data);
      if (typeof frame.seq !== "number" || frame.seq <= lastSeq) return; // not an event, or seen
      lastSeq = frame.seq;
      retries = 0;
      render(frame);
    };
    ws.onclose = (close) => {
      if (close.code === 1000) {
        finished = true;
        setState(close.reason || "stream complete");
      } else if (!finished && RESUMABLE.has(close.code) && retries < MAX_RETRIES) {
        retries += 1;
        const delay = Math.min(5000, 250 * 2 ** retries);
        setState(`connection lost (${close.code} ${close.reason || ""}); resuming after seq ${lastSeq} in ${delay} ms`);
        setTimeout(connect, delay);
      } else {
        setState(`closed (${close.code}${close.reason ? ": " + close.reason : ""})`);
      }
    };
  }

  function setState(text) {
    $(".stream-state").textContent = text;
  }

  function render(frame) {
    const badge = $(".order-status");
    badge.textContent = frame.status;
    badge.className = `order-status badge ${frame.status}`;

    const item = document.createElement("li");
    item.dataset.status = frame.status;
    item.dataset.seq = String(frame.seq);
    const status = document.createElement("span");
    status.className = "status";
    status.textContent = frame.status;
    const time = document.createElement("time");
    time.dateTime = frame.occurredAt;
    time.textContent = new Date(frame.ts).toLocaleTimeString([], { hour12: false }) +
      "." + String(frame.ts % 1000).padStart(3, "0");
    item.append(status, time);
    $(".timeline").append(item);

    const data = frame.data || {};
    if (TERMINAL.has(frame.status)) {
      $(".cancel").hidden = true;
      if (request.type) setTimeout(loadResting, 500); // it left the resting orders, if it was one
    }
    if (frame.type === "OrderTriggered") {
      $(".trigger").textContent = `${fmt(data.triggerPrice)} on ${data.selectedDex} at ${data.marketAt}`;
    }
    if (frame.type === "OrderCancelRefused") $(".cancel-state").textContent = `cancel refused: ${data.cancelRefused}`;
    if (frame.status === "cancelled") $(".cancel-state").textContent = "cancelled";
    if (frame.status === "open") setTimeout(loadResting, 200);
    if (data.selectedDex) $(".venue").textContent = data.selectedDex;
    if (data.reason) $(".reason").textContent = data.reason;
    if (data.minAcceptablePrice !== undefined) $(".min-price").textContent = fmt(data.minAcceptablePrice);
    if (data.executedPrice !== undefined) $(".executed-price").textContent = fmt(data.executedPrice);
    if (data.txHash) $(".tx-hash").textContent = data.txHash;
    if (frame.status === "failed" || frame.status === "expired") $(".failure").textContent = data.error || frame.status;
    if (Array.isArray(data.quotes)) renderQuotes(data.quotes, data.selectedDex);
  }

  function renderQuotes(quotes, chosen) {
    const body = $(".quotes tbody");
    body.replaceChildren();
    for (const q of quotes) {
      const row = document.createElement("tr");
      row.dataset.dex = q.dex;
      if (q.dex === chosen) row.className = "chosen";
      for (const text of [q.dex, fmt(q.price), `${(q.fee * 100).toFixed(2)} %`, fmt(q.amountOut), q.dex === chosen ? "chosen" : ""]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      }
      body.append(row);
    }
  }

  connect();
}

// DELETE /api/orders/{id}: 202 means the order's router will answer (cancelled, or refused once submitted).
async function cancelOrder(orderId, stateEl) {
  stateEl.textContent = "cancelling…";
  try {
    const response = await fetch(`/api/orders/${orderId}`, { method: "DELETE", headers: authHeaders() });
    const answer = await response.json().catch(() => ({}));
    stateEl.textContent = response.status === 202
      ? (answer.cancel === "requested" ? "cancel requested" : answer.cancel || "cancel requested")
      : `${answer.error || "cancel failed"} (HTTP ${response.status})`;
  } catch (err) {
    stateEl.textContent = `could not reach the API: ${err}`;
  }
  setTimeout(loadResting, 1000);
}

const restingBody = document.querySelector("#resting-orders tbody");
const restingState = document.getElementById("resting-state");

async function loadResting() {
  try {
    const response = await fetch("/api/orders?status=open&limit=50", { headers: authHeaders() });
    if (response.status !== 200) {
      restingState.textContent = `resting orders not listed (HTTP ${response.status})`;
      return;
    }
    const { orders } = await response.json();
    restingBody.replaceChildren();
    for (const o of orders) {
      const row = document.createElement("tr");
      row.dataset.orderId = o.orderId;
      const cells = [o.orderId.slice(0, 8), o.type, `${o.baseToken}/${o.quoteToken}`, o.side, fmt(o.amountIn),
        fmt(o.limitPrice ?? o.maxPrice), o.expiresAt ? new Date(o.expiresAt).toLocaleTimeString() : "-"];
      for (const text of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.append(cell);
      }
      const action = document.createElement("td");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "cancel-resting";
      button.textContent = "Cancel";
      const state = document.createElement("span");
      state.className = "cancel-state";
      button.addEventListener("click", () => cancelOrder(o.orderId, state));
      action.append(button, " ", state);
      row.append(action);
      restingBody.append(row);
    }
    restingState.textContent = orders.length ? "" : "none";
  } catch (err) {
    restingState.textContent = `could not reach the API: ${err}`;
  }
}
document.getElementById("refresh-resting").addEventListener("click", loadResting);
loadResting();

function fmt(n) {
  return typeof n === "number" ? n.toLocaleString(undefined, { maximumFractionDigits: 6 }) : String(n);
}
