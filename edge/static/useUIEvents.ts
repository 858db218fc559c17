// React bindings with the seed's signatures, for a Next.js app: copy this file and insight.js
// (with insight.d.ts) into src/hooks/, then call useUIEvents() once in your providers.
//
//   const { isConnected } = useUIEvents();   // as the seed's providers.tsx does
//   useUIEventListener<{ orderId: string }>("ui-update", (data) => refreshOrder(data.orderId));
//
// Without options, the token comes from the app's own server side: POST to
// NEXT_PUBLIC_INSIGHT_TOKEN_URL (default /api/insight-token, same origin, with its cookies),
// which answers {"token": "<JWT>"}; pass getToken to get it elsewhere. The seed's console lines
// appear when the socket is live.
"use client";

import { useEffect, useRef, useState } from "react";
import { toast } from "sonner";

import { connectUIEvents } from "./insight.js";
import type { ConnectOptions, ConnectionStatus, UIEventMap, UIEventsHandle } from "./insight";

const DEFAULT_URL = process.env.NEXT_PUBLIC_INSIGHT_WS ?? "ws://127.0.0.1:8001/api/v1/insight";
const TOKEN_URL = process.env.NEXT_PUBLIC_INSIGHT_TOKEN_URL ?? "/api/insight-token";

/** The default token source: the app's server, never a URL the token would travel in. */
async function fetchToken(): Promise<string> {
  const response = await fetch(TOKEN_URL, {
    method: "POST",
    credentials: "same-origin",
    cache: "no-store",
  });
  if (!response.ok) throw new Error(`insight token: ${response.status}`);
  const body = (await response.json()) as { token?: unknown };
  if (typeof body.token !== "string") throw new Error("insight token: no token in the answer");
  return body.token;
}

export function useUIEvents(options: Partial<ConnectOptions> = {}): {
  isConnected: boolean;
  status: ConnectionStatus;
} {
  const [status, setStatus] = useState<ConnectionStatus>("idle");
  const latest = useRef(options);
  latest.current = options;

  useEffect(() => {
    let active = false;
    const handle: UIEventsHandle = connectUIEvents({
      url: DEFAULT_URL,
      // Toasts through sonner's <Toaster />, as in the seed; the rest keeps insight.js defaults.
      onToast: (frame) => {
        const show = toast[frame.variant] ?? toast;
        show(frame.title, { description: frame.description });
      },
      ...latest.current,
      getToken: latest.current.getToken ?? (latest.current.token ? undefined : fetchToken),
      onStatus: (next, detail) => {
        setStatus(next);
        if (next === "open") {
          console.log("✅ UI Events WebSocket connected");
          if (!active) console.log("✅ UI Events system active");
          active = true;
        }
        latest.current.onStatus?.(next, detail);
      },
    } as ConnectOptions);
    return () => handle.close();
  }, []);

  return { isConnected: status === "open", status };
}

/**
 * A listener of the window CustomEvents insight.js dispatches, typed by name from the declared
 * events (`UIEventMap` in insight.d.ts): `useUIEventListener("cart-updated", (frame) => ...)`.
 * The seed's form, with the data's type given (`useUIEventListener<T>("ui-update", ...)`),
 * still works.
 */
export function useUIEventListener<K extends keyof UIEventMap>(
  eventType: K,
  handler: (detail: UIEventMap[K]) => void,
): void;
export function useUIEventListener<T>(
  eventType: "ui-update" | "ui-modal",
  handler: (data: T) => void,
): void;
export function useUIEventListener(
  eventType: string,
  handler: (detail: unknown) => void,
): void {
  const latest = useRef(handler);
  latest.current = handler;
  useEffect(() => {
    const listener = (event: Event) => latest.current((event as CustomEvent<unknown>).detail);
    window.addEventListener(eventType, listener);
    return () => window.removeEventListener(eventType, listener);
  }, [eventType]);
}
