// React bindings with the seed's signatures, for a Next.js app: copy this file and insight.js
// (with insight.d.ts) into src/hooks/, then call useUIEvents() once in your providers.
//
//   const { isConnected } = useUIEvents({ getToken: () => fetchToken() });
//   useUIEventListener<{ orderId: string }>("ui-update", (data) => refreshOrder(data.orderId));
"use client";

import { useEffect, useRef, useState } from "react";
import { toast } from "sonner";

import { connectUIEvents } from "./insight.js";
import type { ConnectOptions, ConnectionStatus, UIEventsHandle } from "./insight";

const DEFAULT_URL = process.env.NEXT_PUBLIC_INSIGHT_WS ?? "ws://127.0.0.1:8001/api/v1/insight";

export function useUIEvents(options: Partial<ConnectOptions> = {}): {
  isConnected: boolean;
  status: ConnectionStatus;
} {
  const [status, setStatus] = useState<ConnectionStatus>("idle");
  const latest = useRef(options);
  latest.current = options;

  useEffect(() => {
    const handle: UIEventsHandle = connectUIEvents({
      url: DEFAULT_URL,
      // Toasts through sonner's <Toaster />, as in the seed; the rest keeps insight.js defaults.
      onToast: (frame) => {
        const show = toast[frame.variant] ?? toast;
        show(frame.title, { description: frame.description });
      },
      ...latest.current,
      getToken: latest.current.getToken,
      onStatus: (next, detail) => {
        setStatus(next);
        latest.current.onStatus?.(next, detail);
      },
    } as ConnectOptions);
    return () => handle.close();
  }, []);

  return { isConnected: status === "open", status };
}

export function useUIEventListener<T>(
  eventType: "ui-update" | "ui-modal",
  handler: (data: T) => void,
): void {
  const latest = useRef(handler);
  latest.current = handler;
  useEffect(() => {
    const listener = (event: Event) => latest.current((event as CustomEvent<T>).detail);
    window.addEventListener(eventType, listener);
    return () => window.removeEventListener(eventType, listener);
  }, [eventType]);
}
