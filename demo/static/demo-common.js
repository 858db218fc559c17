// What both demo pages share: who the visitor is, the job API, toasts, and the live connection.
import { connectUIEvents, insightFetch } from "/static/insight.js";

const params = new URLSearchParams(window.location.search);
// Visible to browser tests: the frames seen, how often a token was fetched, the status.
export const state = (window.insightDemo = { frames: [], tokenFetches: 0, status: "idle" });

export async function loadConfig() {
  const response = await fetch("/demo/config");
  return response.json();
}

export function currentUser(config) {
  const chosen = params.get("user") || window.sessionStorage.getItem("insight:demo-user");
  const user = config.users.find((u) => u.id === chosen) || config.users[0];
  window.sessionStorage.setItem("insight:demo-user", user.id);
  return user;
}

export function chooseUser(id) {
  window.sessionStorage.setItem("insight:demo-user", id);
  const next = new URL(window.location.href);
  next.searchParams.set("user", id);
  window.location.assign(next);
}

let token = null;

export async function getToken(user) {
  state.tokenFetches += 1;
  const ttl = Number(params.get("ttl") || 900);
  const response = await fetch("/demo/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user: user.id, ttl }),
  });
  if (!response.ok) throw new Error(`demo token refused (${response.status})`);
  token = (await response.json()).token;
  return token;
}

export async function api(config, user, method, path, body) {
  if (!token) await getToken(user);
  const send = () =>
    // insightFetch names this tab (Insight-Client): a payment's redirect comes back here only.
    insightFetch(`${config.apiUrl}/api/v1${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  let response = await send();
  if (response.status === 401) {
    await getToken(user); // expired: a fresh one, once
    response = await send();
  }
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(payload.detail ? JSON.stringify(payload.detail) : response.statusText);
  return payload;
}

export function showToast({ title, description, variant, jobId }) {
  const box = document.createElement("div");
  box.className = `toast ${variant}`;
  box.dataset.variant = variant;
  if (jobId) box.dataset.jobId = jobId;
  const heading = document.createElement("strong");
  heading.textContent = title;
  const text = document.createElement("span");
  text.textContent = description;
  box.append(heading, text);
  document.getElementById("toasts").prepend(box);
  setTimeout(() => box.remove(), 8000);
}

function log(frame) {
  state.frames.push(frame);
  const pane = document.getElementById("log");
  if (!pane) return;
  pane.textContent = `${JSON.stringify(frame)}\n${pane.textContent}`.slice(0, 6000);
}

export function connect(user, handlers = {}) {
  const statusBadge = document.getElementById("status");
  return connectUIEvents({
    url: `${window.location.protocol === "https:" ? "wss" : "ws"}://${window.location.host}/api/v1/insight`,
    getToken: () => getToken(user),
    storageKey: `insight:cursor:${user.id}`,
    onStatus: (status) => {
      state.status = status;
      statusBadge.dataset.status = status;
      statusBadge.textContent = status;
    },
    onToast: (frame) => {
      log(frame);
      showToast(frame);
    },
    onUpdate: (data, frame) => {
      log(frame);
      window.dispatchEvent(new CustomEvent("ui-update", { detail: data }));
    },
    onModal: (data, frame) => {
      log(frame);
      window.dispatchEvent(new CustomEvent("ui-modal", { detail: data }));
    },
    onRedirect: (target, frame) => {
      log(frame);
      const next = new URL(target, window.location.origin);
      next.searchParams.set("user", user.id);
      window.location.assign(next);
    },
    onRefresh: (frame) => {
      log(frame);
      window.location.reload();
    },
    ...handlers,
  });
}
