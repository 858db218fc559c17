"use client";
// The business's live metrics: every member's dashboard gets the workers' metrics_update
// (ui_update to the business), whoever asked for it, and beat's every minute.
import { useCallback, useEffect, useRef, useState } from "react";

import { useConnectionStatus } from "@/app/providers";
import { useBusinessId } from "@/components/auth";
import { useSubmitJob } from "@/components/jobs";
import { isUpdatePayload } from "@/hooks/insight.js";
import type { BusinessFigures } from "@/hooks/insight";
import { useUIEventListener } from "@/hooks/useUIEvents";
import { moneyByCurrency } from "@/lib/format";

const WINDOWS = [
  ["today", "Today"],
  ["7d", "7 days"],
  ["30d", "30 days"],
] as const;

export function MetricsDashboard() {
  const business = useBusinessId();
  const submit = useSubmitJob();
  const [metrics, setMetrics] = useState<BusinessFigures | null>(null);
  const [updates, setUpdates] = useState(0);

  useUIEventListener("ui-update", (data) => {
    if (isUpdatePayload(data, "metrics_update") && data.businessId === business) {
      setMetrics(data.metrics);
      setUpdates((n) => n + 1);
    }
  });

  const recalculate = useCallback(() => submit("/metrics/recalculate", {}, "metrics"), [submit]);

  // Fresh figures once the socket is live (an event published before the first connection
  // opened would not reach it); after that they arrive by themselves.
  const status = useConnectionStatus();
  const requested = useRef(false);
  useEffect(() => {
    if (status !== "open" || requested.current) return;
    requested.current = true;
    void recalculate();
  }, [status, recalculate]);

  return (
    <section className="card wide" data-business={business ?? ""} data-updates={updates}>
      <header className="row">
        <h2>Live metrics · {business}</h2>
        <button type="button" id="recalculate" onClick={() => void recalculate()}>
          Recalculate
        </button>
      </header>
      {metrics === null ? <p className="muted">Waiting for the first figures…</p> : null}
      {metrics ? (
        <>
          <div className="figures">
            {WINDOWS.map(([key, label]) => {
              const w = metrics[key];
              return (
                <div className="figure" key={key} data-window={key}>
                  <h3>{label}</h3>
                  <dl>
                    <dt>Orders</dt>
                    <dd data-k="orders">{w.orders}</dd>
                    <dt>Paid</dt>
                    <dd data-k="paid">{w.paid_orders}</dd>
                    <dt>Revenue</dt>
                    <dd data-k="revenue">{moneyByCurrency(w.revenue, "$0.00")}</dd>
                    <dt>Avg order</dt>
                    <dd data-k="aov">{moneyByCurrency(w.average_order_value)}</dd>
                    <dt>Paid rate</dt>
                    <dd data-k="rate">
                      {w.payment_success_rate === null ? "—" : `${Math.round(w.payment_success_rate * 100)}%`}
                    </dd>
                  </dl>
                </div>
              );
            })}
          </div>
          <p className="muted small">Computed {new Date(metrics.computed_at).toLocaleTimeString("en-US")}</p>
        </>
      ) : null}
    </section>
  );
}
