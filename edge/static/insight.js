// Insight browser client: a dependency-free ES module, served by the edge at /static/insight.js.
//
//   import { connectUIEvents } from "/static/insight.js";
//   const handle = connectUIEvents({ url: "ws://host/api/v1/insight", getToken });
//
// It reconnects by itself (exponential backoff with full jitter, capped), resumes with `since`
// (the last cursor is kept in sessionStorage, so a reload resumes too), never hands the same
// event to the page twice, asks for a new token after 4401 instead of retrying a dead one (also
// after 4401 `revoked`: the user was disconnected by the server, and getToken fails once they
// are logged out), honours the edge's 1012 (reconnect now) and 1013 (reconnect later), and
// after 4429 (the user has too many sockets open, in other tabs) waits long before trying again,
// seconds growing to maxDelayMs, never less than half of each step. With getToken, it renews
// the session in band shortly before the token's `exp` (a fresh token sent as an `auth`
// message on the open socket), so a long-lived page never drops its socket. By default it does what
// the seed's useUIEvents hook does: redirect sets the location, refresh reloads, and ui_update
// and ui_modal become window CustomEvents 'ui-update' and 'ui-modal' with the data as detail.
// Where WebSockets never open, it falls back to Server-Sent Events, driven as a socket
// (insight-wire.js), and renewed by reopening with a fresh ticket; `transport: "sse"` forces it.

import { ABNORMAL, FATAL_CODES, SERVER_RESTARTING, TOO_MANY_CONNECTIONS } from "./insight-wire.js";
import { defaultStorage, dispatchAppEvent, tabId } from "./insight-page.js";

export { insightFetch, isUpdatePayload, tabId } from "./insight-page.js";
import { TRY_AGAIN_LATER, UNAUTHORIZED, openStream, streamUrls } from "./insight-wire.js";

// A frame's id is the connection's whole resume cursor after that frame: one component per
// log it listens to (`<kind><epoch>.<micros>-<n>`, kind u, b or a), joined by "_", the
// component of the frame's own event first. Numbers are compared as decimal strings, since
// they may exceed what a JavaScript number holds exactly.
function parseComponent(component) {
  const match = /^([uba])([0-9]+)\.([0-9]+)-([0-9]+)$/.exec(component);
  return match ? { kind: match[1], epoch: match[2], micros: match[3], seq: match[4] } : null;
}

function compareDecimal(a, b) {
  return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
}

// Whether the event a frame carries is one this client has not seen, given its cursor.
function isNew(id, cursor) {
  const own = parseComponent(String(id).split("_")[0]);
  if (!own || !cursor) return true;
  const known = String(cursor).split("_").map(parseComponent).find((c) => c && c.kind === own.kind);
  if (!known || known.epoch !== own.epoch) return true;
  return (compareDecimal(own.micros, known.micros) || compareDecimal(own.seq, known.seq)) > 0;
}

// How long a token is good for, in ms from when it was obtained (null when it does not say).
// From `exp - iat` when the token has `iat`, so a client clock that is off does not matter.
function tokenLifetimeMs(token) {
  try {
    const part = String(token).split(".")[1];
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, "=")));
    if (typeof claims.exp !== "number") return null;
    const issued = typeof claims.iat === "number" ? claims.iat * 1000 : Date.now();
    return claims.exp * 1000 - issued;
  } catch {
    return null;
  }
}

// Renew when a fifth of the lifetime is left, at most a minute before `exp`.
function renewalDelayMs(lifetimeMs) {
  return Math.max(0, lifetimeMs - Math.min(60000, lifetimeMs / 5));
}

const defaults = {
  onRedirect: (target) => window.location.assign(target),
  onRefresh: () => window.location.reload(),
  onUpdate: (data) => window.dispatchEvent(new CustomEvent("ui-update", { detail: data })),
  onModal: (data) => window.dispatchEvent(new CustomEvent("ui-modal", { detail: data })),
  onToast: (toast) => window.dispatchEvent(new CustomEvent("ui-toast", { detail: toast })),
  onGap: (since) => window.dispatchEvent(new CustomEvent("ui-gap", { detail: { since } })),
};

export function connectUIEvents(options) {
  const {
    url,
    token,
    getToken,
    channel = "ui_events",
    onStatus = () => {},
    storage = defaultStorage(),
    storageKey = "insight:cursor",
    minDelayMs = 250,
    maxDelayMs = 30000,
    WebSocketImpl = globalThis.WebSocket,
    transport: forced = "auto",
    fallbackAfter = 2,
    retryWebSocketMs = 5 * 60000,
    EventSourceImpl = globalThis.EventSource,
    fetchImpl = (...args) => globalThis.fetch(...args),
  } = options;
  const client = options.client || tabId(storage);
  if (!url) throw new Error("connectUIEvents: url is required");
  if (!token && !getToken) throw new Error("connectUIEvents: token or getToken is required");
  const handlers = {
    ui_redirect: (f) => (options.onRedirect || defaults.onRedirect)(f.target, f),
    ui_refresh: (f) => (options.onRefresh || defaults.onRefresh)(f),
    ui_update: (f) => (options.onUpdate || defaults.onUpdate)(f.data, f),
    ui_modal: (f) => (options.onModal || defaults.onModal)(f.data, f),
    ui_toast: (f) => (options.onToast || defaults.onToast)(f),
  };

  let socket = null;
  let status = "idle";
  let closedByUser = false;
  let attempt = 0;
  let timer = null;
  let renewal = null;
  let currentToken = token || null;
  let needFreshToken = !token;
  let cursor = storage ? storage.getItem(storageKey) : null;
  let transport = forced === "sse" ? "sse" : "websocket";
  let unopened = 0; // WebSocket attempts in a row that never reached `open`
  let retryWebSocketAt = 0;

  function setStatus(next, detail) {
    status = next;
    onStatus(next, { ...detail, transport });
  }

  function chooseTransport() {
    if (forced !== "auto") return forced === "sse" ? "sse" : "websocket";
    if (unopened < fallbackAfter || !EventSourceImpl) return "websocket";
    if (transport === "websocket") {
      retryWebSocketAt = Date.now() + retryWebSocketMs; // it failed again: SSE for a while
      return "sse";
    }
    if (Date.now() < retryWebSocketAt) return "sse";
    unopened = fallbackAfter - 1; // one more try; if it fails too, back to SSE at once
    return "websocket";
  }

  function remember(id) {
    cursor = id;
    if (storage) storage.setItem(storageKey, id);
  }

  function schedule(delayMs) {
    clearTimeout(timer);
    timer = setTimeout(open, delayMs);
  }

  // In-band renewal: shortly before the token expires, send a fresh one on the open socket.
  // A failed getToken is retried while time is left; past `exp` the edge closes with 4401
  // and the usual path (a new token, then reconnect with `since`) takes over.
  function scheduleRenewal(ws, token) {
    clearTimeout(renewal);
    const lifetime = getToken ? tokenLifetimeMs(token) : null;
    if (lifetime === null || lifetime <= 0) return;
    const obtained = Date.now();
    const renewIn = renewalDelayMs(lifetime);
    renewal = setTimeout(async function renew() {
      let fresh;
      try {
        fresh = await getToken();
      } catch {
        const left = obtained + lifetime - Date.now();
        if (left > 1000 && socket === ws) renewal = setTimeout(renew, Math.min(5000, left / 2));
        return;
      }
      if (socket !== ws || ws.readyState !== 1) return;
      currentToken = fresh;
      // A stream cannot renew in band: reopen it now, with the fresh token and the cursor.
      if (transport === "sse") return ws.close(SERVER_RESTARTING, "renewal");
      ws.send(JSON.stringify({ type: "auth", token: fresh }));
      scheduleRenewal(ws, fresh);
    }, renewIn);
  }

  function backoff() {
    // Full jitter: a random delay up to the exponential cap, so a crowd does not return at once.
    const cap = Math.min(maxDelayMs, minDelayMs * 2 ** attempt);
    attempt += 1;
    return Math.random() * cap;
  }

  function patientBackoff() {
    // Equal jitter: at least half the exponential cap, so a refused client never retries soon.
    const cap = Math.min(maxDelayMs, minDelayMs * 2 ** attempt);
    attempt += 1;
    return cap / 2 + (Math.random() * cap) / 2;
  }

  async function open() {
    if (closedByUser) return;
    transport = chooseTransport();
    setStatus(attempt === 0 ? "connecting" : "reconnecting");
    if (needFreshToken) {
      try {
        currentToken = await getToken();
        needFreshToken = false;
      } catch (error) {
        setStatus("reconnecting", { reason: "getToken failed" });
        schedule(backoff());
        return;
      }
    }
    const query = new URLSearchParams({ channel, client });
    if (cursor) query.set("since", cursor);
    const target = `${url}${url.includes("?") ? "&" : "?"}${query}`;
    // The token travels as a subprotocol (or buys a ticket), never in the URL, so it stays
    // out of access logs.
    const ws =
      transport === "sse"
        ? openStream(streamUrls(url), query, currentToken, { EventSourceImpl, fetchImpl })
        : new WebSocketImpl(target, ["insight", `insight.bearer.${currentToken}`]);
    socket = ws;
    const opening = currentToken;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      if (transport === "websocket") unopened = 0;
      scheduleRenewal(ws, opening);
    };
    ws.onmessage = (message) => {
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (frame.type === "insight_ready") {
        attempt = 0;
        if (frame.id) remember(frame.id);
        setStatus("open");
        return;
      }
      if (frame.type === "insight_gap") {
        (options.onGap || defaults.onGap)(frame.since);
        return;
      }
      if (frame.id) {
        if (!isNew(frame.id, cursor)) return; // seen already
        remember(frame.id);
      }
      const handle = handlers[frame.type];
      if (handle) handle(frame);
      else dispatchAppEvent(frame);
    };
    ws.onclose = (event) => {
      if (socket !== ws) return;
      socket = null;
      clearTimeout(renewal);
      if (closedByUser) return setStatus("closed");
      if (!opened && event.code === ABNORMAL && transport === "websocket" && forced === "auto") {
        unopened += 1; // the upgrade itself failed: a refusal of the edge would have opened
        if (unopened === fallbackAfter) return schedule(0); // to SSE now
      }
      if (FATAL_CODES.has(event.code)) {
        return setStatus("refused", { code: event.code, reason: event.reason });
      }
      if (event.code === UNAUTHORIZED) {
        // reason "revoked": disconnected by the server; getToken decides whether to go on.
        if (!getToken) return setStatus("unauthorized", { code: event.code, reason: event.reason });
        needFreshToken = true; // never retry the dead token
        attempt = Math.min(attempt, 1);
        return schedule(backoff());
      }
      if (event.code === SERVER_RESTARTING) {
        attempt = 0;
        return schedule(Math.random() * minDelayMs); // another instance takes us now
      }
      if (event.code === TOO_MANY_CONNECTIONS) {
        attempt = Math.max(attempt, 4); // 16 x minDelayMs first: other sockets must close
        setStatus("reconnecting", { code: event.code, reason: event.reason });
        return schedule(patientBackoff());
      }
      if (event.code === TRY_AGAIN_LATER) attempt = Math.max(attempt, 3);
      schedule(backoff());
    };
  }

  open();
  return {
    close() {
      closedByUser = true;
      clearTimeout(timer);
      clearTimeout(renewal);
      if (socket) socket.close(1000);
      setStatus("closed");
    },
    get status() {
      return status;
    },
    get cursor() {
      return cursor;
    },
    client,
  };
}
