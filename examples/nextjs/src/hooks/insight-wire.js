// Insight's wire, for insight.js (which imports it from beside itself): the close codes the
// edge ends a session with, and the Server-Sent Events transport (docs/sse.md). Where WebSockets
// cannot open (a proxy that refuses the upgrade), insight.js falls back to SSE after
// `fallbackAfter` attempts that never reach `open`, and tries the WebSocket again after
// `retryWebSocketMs`. A stream is opened with a one-stream ticket bought with the token, so no
// JWT is ever in a URL, and is driven exactly as a socket: the same resume, dedupe, close codes
// and backoff; its renewal reopens it with a fresh ticket and the cursor before `exp`.

export const FATAL_CODES = new Set([4400, 4403]); // the request itself is wrong: retrying cannot help
export const UNAUTHORIZED = 4401;
export const SERVER_RESTARTING = 1012;
export const TRY_AGAIN_LATER = 1013;
export const TOO_MANY_CONNECTIONS = 4429;
export const ABNORMAL = 1006; // closed without a code: the network, or a refusal a browser hides

// The SSE endpoints beside a socket URL: ws(s)://host/api/v1/insight -> http(s)://host/...
export function streamUrls(url) {
  const base = url.split("?")[0].replace(/^ws(s?):/, "http$1:").replace(/\/$/, "");
  return { sse: `${base}/sse`, tickets: `${base}/tickets` };
}

// An SSE stream dressed as the WebSocket `open` drives: onopen, onmessage, onclose({code,
// reason}) and readyState. The server's `insight_close` message carries the code a socket
// would have closed with; a stream lost or refused without one closes 1006. EventSource's own
// reconnect is never used: its ticket is spent, so `open` reconnects with a fresh one.
export function openStream(urls, query, token, { EventSourceImpl, fetchImpl }) {
  const stream = { readyState: 0, onopen: null, onmessage: null, onclose: null };
  let source = null;
  function end(code, reason) {
    if (stream.readyState === 3) return;
    stream.readyState = 3;
    if (source) source.close();
    if (stream.onclose) stream.onclose({ code, reason });
  }
  stream.close = (code = 1000, reason = "") => end(code, reason);
  stream.send = () => {}; // nothing travels upstream on a stream
  (async () => {
    let answer;
    try {
      answer = await fetchImpl(urls.tickets, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}` },
      });
    } catch {
      return end(ABNORMAL, "ticket request failed");
    }
    if (answer.status === 401) return end(UNAUTHORIZED, "unauthorized");
    if (!answer.ok) return end(TRY_AGAIN_LATER, `ticket refused: ${answer.status}`);
    const { ticket } = await answer.json();
    if (stream.readyState === 3) return;
    query.set("ticket", ticket);
    source = new EventSourceImpl(`${urls.sse}?${query}`);
    source.onopen = () => {
      stream.readyState = 1;
      if (stream.onopen) stream.onopen();
    };
    source.onmessage = (message) => stream.onmessage && stream.onmessage({ data: message.data });
    source.addEventListener("insight_close", (message) => {
      let closing = {};
      try {
        closing = JSON.parse(message.data);
      } catch {}
      end(closing.code || ABNORMAL, closing.reason || "");
    });
    source.onerror = () => end(ABNORMAL, "stream lost");
  })();
  return stream;
}
