"use client";

import { useConnectionStatus } from "@/app/providers";

export function ConnectionBadge() {
  const status = useConnectionStatus();
  return (
    <span className="status" data-connection={status} title="Insight WebSocket">
      {status === "open" ? "live" : status}
    </span>
  );
}
