// What this app reads from the job API and from the workers' ui_update / ui_modal events.

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

export type JobKind = "order" | "payment" | "metrics";
export type JobStatus = "queued" | "running" | "succeeded" | "failed";

/** ui_update from a worker while a job runs (domain/announcements.py `progress`). */
export interface JobProgress {
  type: "job_progress";
  jobId: string;
  kind: JobKind;
  percent: number;
  status: JobStatus;
}

export interface MetricsWindow {
  orders: number;
  paid_orders: number;
  revenue: Record<string, number>;
  average_order_value: Record<string, number>;
  payment_success_rate: number | null;
}

export interface Metrics {
  today: MetricsWindow;
  "7d": MetricsWindow;
  "30d": MetricsWindow;
  computed_at: string;
}

/** ui_update to every member of a business (domain/announcements.py `push_metrics`). */
export interface MetricsUpdate {
  type: "metrics_update";
  businessId: string;
  metrics: Metrics;
}

/** Any ui_update this app may see: the workers' two, or the seed's `{ orderId }`. */
export type UIUpdate = JobProgress | MetricsUpdate | { type?: undefined; orderId?: string };

export interface PaymentFailed {
  jobId: string;
  orderId: string | null;
  reason: string | null;
  declineCode: string | null;
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
