#!/usr/bin/env node
// Publish a toast to one user through Insight's HTTP publish API (POST /api/v1/publish).
// Plain Node.js 18 or newer: the global fetch, no dependencies, nothing to install.
//
//   INSIGHT_API_URL=http://127.0.0.1:8000 INSIGHT_PUBLISH_KEY=<one of PUBLISH_API_KEYS> \
//     node publish.mjs 42 "Report ready" "March is ready" success
//
// Prints the event id: the `id` of the frame at the user's sockets starts with it.
// Every attempt sends the same Idempotency-Key, so a retry (after a timeout, a lost
// connection or a 503) publishes the toast once, however many attempts it takes.

import { randomUUID } from "node:crypto";

const ATTEMPTS = 3;
const TIMEOUT_MS = 10_000;

const api = (process.env.INSIGHT_API_URL ?? "http://127.0.0.1:8000").replace(/\/+$/, "");
const key = process.env.INSIGHT_PUBLISH_KEY;
if (!key) {
  console.error("set INSIGHT_PUBLISH_KEY to one of the job API's PUBLISH_API_KEYS");
  process.exit(2);
}

const [
  user = "42",
  title = "Hello from Node.js",
  description = "Published over HTTP",
  variant = "info", // success, error, warning or info
] = process.argv.slice(2);

const body = JSON.stringify({
  to: { user },
  event: { type: "ui_toast", title, description, variant },
});
const idempotencyKey = process.env.INSIGHT_IDEMPOTENCY_KEY ?? randomUUID();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function publish() {
  for (let attempt = 1; ; attempt++) {
    let response;
    try {
      response = await fetch(`${api}/api/v1/publish`, {
        method: "POST",
        headers: {
          Authorization: `Bearer ${key}`,
          "Content-Type": "application/json",
          "Idempotency-Key": idempotencyKey,
        },
        body,
        signal: AbortSignal.timeout(TIMEOUT_MS),
      });
    } catch (error) {
      // The toast may or may not be in: the same key makes trying again safe.
      if (attempt >= ATTEMPTS) throw error;
      await sleep(250 * attempt);
      continue;
    }
    if (response.ok) return (await response.json()).id;
    const refusal = await response.text();
    if (response.status === 503 && attempt < ATTEMPTS) {
      const seconds = Number(response.headers.get("retry-after"));
      await sleep(1000 * (Number.isFinite(seconds) ? Math.min(Math.max(seconds, 0), 30) : 1));
      continue;
    }
    // 401/403: the key; 413: the body's size; 422: `detail` names the field. Not retried.
    throw new Error(`HTTP ${response.status}: ${refusal}`);
  }
}

try {
  console.log(await publish());
} catch (error) {
  console.error(`publish failed: ${error.message}`);
  process.exit(1);
}
