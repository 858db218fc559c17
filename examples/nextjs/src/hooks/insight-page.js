// Insight's side of the page, beside insight.js (which re-exports `tabId`, `insightFetch` and
// `isUpdatePayload`): the tab's id, a fetch that names the tab, application events as window
// events.

export function defaultStorage() {
  try {
    return window.sessionStorage;
  } catch {
    return null; // storage disabled: resume only within this page's lifetime
  }
}

// The tab's id: made once per tab and kept in sessionStorage, so a reload keeps it. Sockets
// carry it as `client=`, and `insightFetch` as the `Insight-Client` header of the app's job API
// calls: a job started from this tab sends its redirect and its modal to this tab only.
const TAB_KEY = "insight:tab";
const TAB_ID = /^[A-Za-z0-9_-]{1,64}$/;
let pageTab = null; // without storage: one id for this page's lifetime

function newTabId() {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function tabId(storage = defaultStorage()) {
  const kept = storage ? storage.getItem(TAB_KEY) : pageTab;
  if (kept && TAB_ID.test(kept)) return kept;
  const made = newTabId();
  if (storage) storage.setItem(TAB_KEY, made);
  else pageTab = made;
  return made;
}

// `fetch`, with this tab's id in the `Insight-Client` header.
export function insightFetch(input, init = {}) {
  const headers = new Headers(init.headers || (input instanceof Request ? input.headers : undefined));
  headers.set("Insight-Client", tabId());
  return fetch(input, { ...init, headers });
}

// An application's own event (declared in INSIGHT_EVENT_MODULES) of type `x_y` becomes the
// window CustomEvent `x-y` with the frame as detail, as the seed's listeners are reached. A type
// of another shape (a control frame this client predates) is ignored: the page is not told.
const APP_EVENT_TYPE = /^[a-z][a-z0-9_]{0,63}$/;

export function dispatchAppEvent(frame) {
  const type = frame.type;
  if (typeof type !== "string" || !APP_EVENT_TYPE.test(type) || type.startsWith("insight_")) {
    console.debug("insight: ignored a frame of unknown type", String(type).slice(0, 80));
    return;
  }
  window.dispatchEvent(new CustomEvent(type.replace(/_/g, "-"), { detail: frame }));
}

// Whether a ui_update's data is the declared payload `type` (the publisher validated it).
export function isUpdatePayload(data, type) {
  return data !== null && typeof data === "object" && !Array.isArray(data) && data.type === type;
}
