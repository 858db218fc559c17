"use client";
// The orders page: create an order, pay it with a card that succeeds or one that declines,
// and watch it all happen through Insight's events (progress bars, sonner toasts, the
// redirect to /orders?status=success, the payment_failed modal).
import { useCallback, useEffect, useState, type FormEvent } from "react";
import { toast } from "sonner";

import { useJobApi } from "@/components/auth";
import { useSubmitJob } from "@/components/jobs";
import { isUpdatePayload } from "@/hooks/insight.js";
import { useUIEventListener } from "@/hooks/useUIEvents";
import { money, reason } from "@/lib/format";
import { isPaymentFailed, type Order, type PaymentFailed } from "@/lib/types";

const ORDER = {
  items: [
    { sku: "COFFEE-1", name: "Coffee", quantity: 2, unit_amount: 450 },
    { sku: "CROISSANT", name: "Croissant", quantity: 1, unit_amount: 320 },
  ],
  currency: "usd",
};
// POST /orders/import takes 1 to 1,000 orders (docs/jobs.md, "Importing orders").
const IMPORT_MAX = 1000;

export function CreateOrder() {
  const submit = useSubmitJob();
  const [busy, setBusy] = useState(false);
  return (
    <section className="card">
      <h2>New order</h2>
      <p className="muted">2 × Coffee, 1 × Croissant — {money(2 * 450 + 320, "usd")}</p>
      <button
        type="button"
        id="create-order"
        disabled={busy}
        onClick={async () => {
          setBusy(true);
          await submit("/orders", ORDER, "order");
          setBusy(false);
        }}
      >
        Create order
      </button>
    </section>
  );
}

/** One job for many orders: one progress bar (done/total) and one toast when it ends. */
export function ImportOrders() {
  const submit = useSubmitJob();
  const [busy, setBusy] = useState(false);
  const start = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const count = Number(new FormData(event.currentTarget).get("count"));
    if (!Number.isInteger(count) || count < 1 || count > IMPORT_MAX) {
      toast.error("Import refused", { description: `from 1 to ${IMPORT_MAX} orders` });
      return;
    }
    setBusy(true);
    await submit("/orders/import", { orders: Array.from({ length: count }, () => ORDER) }, "import");
    setBusy(false);
  };
  return (
    <section className="card">
      <h2>Import orders</h2>
      <form id="import-form" className="import" onSubmit={(event) => void start(event)}>
        <label>
          Import{" "}
          <input id="import-count" name="count" type="number" min={1} max={IMPORT_MAX} defaultValue={100} required />{" "}
          orders
        </label>
        <button type="submit" id="import-orders" className="secondary" disabled={busy}>
          Import
        </button>
      </form>
      <p className="muted">One job: one progress bar counting the orders made, one toast at the end.</p>
    </section>
  );
}

function upsert(orders: Order[] | null, order: Order): Order[] {
  const rest = (orders ?? []).filter((o) => o.order_id !== order.order_id);
  return [order, ...rest].sort((a, b) => Number(b.order_id) - Number(a.order_id));
}

export function OrdersList() {
  const api = useJobApi();
  const submit = useSubmitJob();
  const [orders, setOrders] = useState<Order[] | null>(null);

  const reload = useCallback(async () => {
    try {
      setOrders(await api.get<Order[]>("/orders"));
    } catch (error) {
      toast.error("Could not load orders", { description: reason(error) });
    }
  }, [api]);

  const refreshOrder = useCallback(
    async (orderId: string) => {
      const order = await api.get<Order>(`/orders/${encodeURIComponent(orderId)}`);
      setOrders((current) => upsert(current, order));
    },
    [api],
  );

  useEffect(() => {
    void reload();
  }, [reload]);

  // As the seed's OrdersList: a ui-update about an order (the webhook's payment_update)
  // refreshes it in place; a finished order or payment job (the workers' job_progress at 100%)
  // reloads the list.
  useUIEventListener("ui-update", (data) => {
    if (isUpdatePayload(data, "payment_update")) {
      void refreshOrder(data.orderId);
    } else if (isUpdatePayload(data, "job_progress") && data.kind !== "metrics" && data.percent === 100) {
      void reload();
    }
  });

  const pay = (orderId: string, paymentMethod: string) =>
    submit("/payments", { order_id: orderId, payment_method: paymentMethod }, "payment");

  return (
    <section className="card wide">
      <h2>Your orders</h2>
      {orders === null ? <p className="muted">Loading…</p> : null}
      {orders?.length === 0 ? <p className="muted">No orders yet: create one.</p> : null}
      {orders?.length ? (
        <table>
          <thead>
            <tr>
              <th>Order</th>
              <th>Status</th>
              <th>Total</th>
              <th>Created</th>
              <th aria-label="actions" />
            </tr>
          </thead>
          <tbody>
            {orders.map((order) => (
              <tr key={order.order_id} data-order-id={order.order_id} data-status={order.status}>
                <td>#{order.order_id}</td>
                <td>
                  <span className={`pill ${order.status}`}>{order.status}</span>
                </td>
                <td>{money(order.total_amount, order.currency)}</td>
                <td>{new Date(order.created_at).toLocaleTimeString("en-US")}</td>
                <td className="actions">
                  {order.status === "created" ? (
                    <>
                      <button type="button" data-pay="pm_card_visa" onClick={() => pay(order.order_id, "pm_card_visa")}>
                        Pay with Visa
                      </button>
                      <button
                        type="button"
                        className="secondary"
                        data-pay="pm_card_chargeDeclined"
                        onClick={() => pay(order.order_id, "pm_card_chargeDeclined")}
                      >
                        Pay with a declined card
                      </button>
                    </>
                  ) : null}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}

/** The workers' `payment_failed` modal (ui_modal). */
export function PaymentFailedModal() {
  const [failure, setFailure] = useState<PaymentFailed | null>(null);
  useUIEventListener("ui-modal", (data) => {
    if (data.type === "payment_failed" && isPaymentFailed(data.payload)) setFailure(data.payload);
  });
  if (!failure) return null;
  return (
    <div className="backdrop">
      <div role="dialog" aria-modal="true" aria-labelledby="payment-failed-title" className="modal" data-modal="payment_failed">
        <h2 id="payment-failed-title">Payment failed</h2>
        <p>
          Order #{failure.orderId} was not paid: {failure.reason ?? "the payment failed"}
          {failure.declineCode ? ` (${failure.declineCode})` : ""}
        </p>
        <button type="button" onClick={() => setFailure(null)} autoFocus>
          Close
        </button>
      </div>
    </div>
  );
}
