// What this app reads from the job API and from the workers' ui_modal. The events' own types
// (job_progress, metrics_update, the demo's ui_confetti, ...) are generated: @/hooks/insight.

import type { JsonValue } from "@/hooks/insight";

export interface DemoUser {
  id: string;
  name: string;
  business_id: string;
}

export interface JobAccepted {
  job_id: string;
  status: "queued";
  status_url: string;
}

export type JobKind = "order" | "import" | "payment" | "metrics";

export interface PaymentFailed {
  jobId: string;
  orderId: string | null;
  reason: string | null;
  declineCode: string | null;
}

/** A ui_modal's payload is any JSON: this one is a payment_failed's when its keys say so. */
export function isPaymentFailed(payload: JsonValue): payload is JsonValue & PaymentFailed {
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) return false;
  const text = (key: string) => payload[key] === null || typeof payload[key] === "string";
  return typeof payload.jobId === "string" && ["orderId", "reason", "declineCode"].every(text);
}

export interface OrderItem {
  sku: string;
  name: string;
  quantity: number;
  unit_amount: number;
}

export interface Order {
  order_id: string;
  status: "created" | "paid";
  currency: string;
  total_amount: number;
  business_id: string | null;
  items: OrderItem[];
  created_at: string;
}
