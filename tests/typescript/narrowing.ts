// Compiled by tests/test_typescript.py against the declarations `insight schema` generates for
// the test application (tests/app_events/declared.py): its own events narrow on `type`, the
// typed ui_update payloads narrow with isUpdatePayload, the hook's listener is typed by event
// name. Each @ts-expect-error line must be an error, so declarations that are too loose fail.
import type { CartUpdated, UIFrame, UpdateData } from "./insight";
import { isUpdatePayload } from "./insight.js";
import { useUIEventListener } from "./useUIEvents";

export function describe(frame: UIFrame): string {
  switch (frame.type) {
    case "cart_updated":
      return `${frame.cartId}: ${frame.items.toFixed(0)} items`;
    case "ui_confetti":
      return frame.colors.join(", ");
    case "cart_abandoned":
      return frame.actor; // a field of its Python base class
    case "cart_snapshot":
      return `${frame.n}: ${frame.lines.length}`;

    case "ui_toast":
      return `${frame.variant}: ${frame.title}`;
    case "ui_update":
      return progress(frame.data);
    case "ui_redirect":
      return frame.target;
    case "ui_modal":
      return frame.data.type;
    case "ui_refresh":
      return "refresh";
    default: {
      const unhandled: never = frame; // every declared type is handled above
      return unhandled;
    }
  }
}

function progress(data: UpdateData): string {
  if (isUpdatePayload(data, "job_progress")) {
    const percent: number = data.percent;
    return `${data.jobId} ${data.status} ${percent}%${data.done == null ? "" : ` (${data.done})`}`;
  }
  if (isUpdatePayload(data, "inventory_changed")) return `${data.sku}: ${data.left} left`;
  // @ts-expect-error no payload of this type is declared
  if (isUpdatePayload(data, "cart_updated")) return "";
  return "";
}

export function useCartBadge(render: (items: number) => void): void {
  useUIEventListener("cart-updated", (frame) => {
    const id: string = frame.id;
    render(frame.items);
    void id;
  });
  useUIEventListener("ui-confetti", (frame) => frame.colors.forEach((color) => color.trim()));
  useUIEventListener("ui-update", (data) => {
    if (isUpdatePayload(data, "metrics_update")) render(Object.keys(data.metrics).length);
  });
  // The seed's form still compiles: the data's type given by the caller.
  useUIEventListener<{ orderId: string }>("ui-update", (data) => data.orderId.trim());
  // @ts-expect-error an event nobody declared has no listener type
  useUIEventListener("cart-emptied", () => undefined);
  useUIEventListener("cart-updated", (frame) => {
    // @ts-expect-error `items` is a number
    const items: string = frame.items;
    void items;
  });
}

// @ts-expect-error a CartUpdated has no title
export const title = (cart: CartUpdated): string => cart.title;
