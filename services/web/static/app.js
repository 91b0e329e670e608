// The order page: POST an order, then follow its frames on the WebSocket the answer names (wsUrl).
// Frames: {orderId, seq, type, status, ts, occurredAt, data}. A dropped stream resumes with ?fromSeq=<last seq>.
// Under AUTH=keys the user pastes an API key: it goes with the POST as `Authorization: Bearer <key>` and with
// the WebSocket as the subprotocol `bearer.<key>` (a browser cannot set headers on a WebSocket). It is kept
// in sessionStorage: this tab only, gone when it closes.
"use strict";

const RESUMABLE = new Set([1001, 1006, 1011, 1012, 1013]);
const MAX_RETRIES = 8;

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
    const body = {
      side: form.side.value,
      baseToken: form.baseToken.value,
      quoteToken: form.quoteToken.value,
      amountIn: Number(form.amountIn.value),
    };
    if (form.slippageBps.value !== "") body.slippageBps = Number(form.slippageBps.value);
    const headers = { "Content-Type": "application/json" };
    if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
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
  $(".pair").textContent = `${request.side} ${request.amountIn} ${request.side === "sell" ? request.baseToken : request.quoteToken}` +
    ` (${request.baseToken}/${request.quoteToken})`;
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
    if (data.selectedDex) $(".venue").textContent = data.selectedDex;
    if (data.reason) $(".reason").textContent = data.reason;
    if (data.minAcceptablePrice !== undefined) $(".min-price").textContent = fmt(data.minAcceptablePrice);
    if (data.executedPrice !== undefined) $(".executed-price").textContent = fmt(data.executedPrice);
    if (data.txHash) $(".tx-hash").textContent = data.txHash;
    if (frame.status === "failed") $(".failure").textContent = data.error || "failed";
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

function fmt(n) {
  return typeof n === "number" ? n.toLocaleString(undefined, { maximumFractionDigits: 6 }) : String(n);
}
