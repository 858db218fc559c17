"use client";
// The app's own event in the page: insight.js dispatches `ui_confetti` as the window
// CustomEvent "ui-confetti", and the hook's listener gets the frame typed (Celebration) from
// the generated declarations, with no cast.
import { useState } from "react";
import { toast } from "sonner";

import type { Celebration, FrameContext } from "@/hooks/insight";
import { useUIEventListener } from "@/hooks/useUIEvents";

export function Celebrations() {
  const [last, setLast] = useState<(Celebration & FrameContext) | null>(null);
  useUIEventListener("ui-confetti", (frame) => setLast(frame));

  const celebrate = async () => {
    const response = await fetch("/api/celebrate", { method: "POST", cache: "no-store" });
    if (!response.ok) toast.error("Could not celebrate", { description: `${response.status}` });
  };

  return (
    <div className="celebrations">
      <button type="button" className="secondary" id="celebrate" onClick={() => void celebrate()}>
        Celebrate with the team
      </button>
      {last ? (
        <p role="status" className="celebration" data-by={last.by} key={last.id}>
          🎉 {last.by}: {last.message}
        </p>
      ) : null}
    </div>
  );
}
