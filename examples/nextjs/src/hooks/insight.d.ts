// Generated from the declared events by `insight schema`. Do not edit by hand.

export type JsonValue =
  | string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** A business's figures for today (UTC), the last 7 days and the last 30 days. */
export interface BusinessFigures {
  today: MetricsWindow;
  "7d": MetricsWindow;
  "30d": MetricsWindow;
  computed_at: string;
}

/** Someone in the business asked every member's page to celebrate (confetti). */
export interface Celebration {
  type: "ui_confetti";
  by: string;
  message: string;
}

/** How far a job is: sent while it runs and once more with its terminal status. */
export interface JobProgress {
  type: "job_progress";
  jobId: string;
  kind: string;
  status: "queued" | "running" | "succeeded" | "failed" | "cancelled";
  percent: number;
  done?: number | null;
  total?: number | null;
  etaSeconds?: number | null;
  attempt?: number | null;
}

/** A business's figures, freshly computed, for its dashboards. */
export interface MetricsUpdate {
  type: "metrics_update";
  businessId: string;
  metrics: BusinessFigures;
}

/** A business's figures over one window; money per currency, in minor units. */
export interface MetricsWindow {
  orders: number;
  paid_orders: number;
  revenue: { [key: string]: number };
  average_order_value: { [key: string]: number };
  payment_success_rate: number | null;
}

/** Open a modal dialog. */
export interface Modal {
  type: "ui_modal";
  data: ModalContent;
}

/** Which modal to open and what to show in it. */
export interface ModalContent {
  type: string;
  payload: JsonValue;
}

/** An order changed: its job created it, or a payment paid it. The page updates its row
without asking the API again. */
export interface OrderUpdate {
  type: "order_update";
  orderId: string;
  status: "created" | "paid";
}

/** A payment's state moved (a Stripe webhook): its owner's page shows the new state. */
export interface PaymentUpdate {
  type: "payment_update";
  paymentId: string;
  orderId: string;
  jobId: string;
  status: string;
}

/** Navigate the browser to `target`. */
export interface Redirect {
  type: "ui_redirect";
  target: string;
}

/** Reload the current page. */
export interface Refresh {
  type: "ui_refresh";
}

/** Show a toast notification. */
export interface Toast {
  type: "ui_toast";
  title: string;
  description: string;
  variant: "success" | "error" | "warning" | "info";
}

/** Hand arbitrary JSON to the page's `ui-update` listeners. */
export interface Update {
  type: "ui_update";
  data: UpdateData;
}

/** Keys every event frame may carry beside its own: `id` (the connection's resume cursor, which starts with the event's own id) and what it is about. */
export interface FrameContext {
  id: string;
  jobId?: string;
  requestId?: string;
}

export type UpdatePayload = JobProgress | MetricsUpdate | PaymentUpdate | OrderUpdate;

export type UpdateData = UpdatePayload | JsonValue;

export type UIEvent = Celebration | Modal | Redirect | Refresh | Toast | Update;

export type UIFrame = UIEvent & FrameContext;

/** The connection is live (after any replay). Its `id` is a valid `since` even if no
event ever arrives, so a client that drops before its first event resumes without a hole. */
export interface ReadyFrame {
  type: "insight_ready";
  id: string;
}

/** Sent before a replay when events after `since` are gone from the log (trimmed, the log
lost, or a failover that lost writes): reload state rather than trust the replay. */
export interface GapFrame {
  type: "insight_gap";
  since: string;
}

export type ServerFrame = UIFrame | ReadyFrame | GapFrame;

export type ConnectionStatus =
  | "idle" | "connecting" | "open" | "reconnecting" | "closed" | "unauthorized" | "refused";

export type Transport = "websocket" | "sse";

export interface ConnectOptions {
  /** ws(s)://host/api/v1/insight */
  url: string;
  /** A fixed token; prefer getToken, which is called again after a 4401. */
  token?: string;
  /** Called for the first token, after a 4401, and shortly before `exp` to renew in band. */
  getToken?: () => Promise<string> | string;
  channel?: "ui_events";
  onToast?: (toast: Toast & FrameContext) => void;
  onRedirect?: (target: string, frame: Redirect & FrameContext) => void;
  onRefresh?: (frame: Refresh & FrameContext) => void;
  onUpdate?: (data: UpdateData, frame: Update & FrameContext) => void;
  onModal?: (data: ModalContent, frame: Modal & FrameContext) => void;
  onGap?: (since: string) => void;
  /**
   * `detail` has the close code when one explains the status: "reconnecting" after 4429 (this
   * user has too many sockets open: the client waits longer each time); "unauthorized" after
   * 4401 without getToken (reason "revoked": the user was disconnected by the server).
   */
  onStatus?: (
    status: ConnectionStatus,
    detail?: { code?: number; reason?: string; transport?: Transport },
  ) => void;
  /**
   * "auto" (default): a WebSocket, and Server-Sent Events after `fallbackAfter` (2) attempts
   * that never open, trying the WebSocket again after `retryWebSocketMs` (5 min); "sse" forces
   * SSE (a ticket from POST .../insight/tickets, renewed by reopening before `exp`).
   */
  transport?: "auto" | Transport;
  fallbackAfter?: number;
  retryWebSocketMs?: number;
  /** Where the resume cursor is kept (default: sessionStorage). */
  storage?: Pick<Storage, "getItem" | "setItem"> | null;
  storageKey?: string;
  minDelayMs?: number;
  maxDelayMs?: number;
  /** This tab's id (default: `tabId()`): a job it starts sends its redirect and modal here. */
  client?: string;
}

export interface UIEventsHandle {
  close(): void;
  readonly status: ConnectionStatus;
  readonly cursor: string | null;
  /** The tab id the sockets carry as `client=`. */
  readonly client: string;
}

export function connectUIEvents(options: ConnectOptions): UIEventsHandle;

/** This tab's id, made once and kept in sessionStorage (a reload keeps it). */
export function tabId(storage?: Pick<Storage, "getItem" | "setItem"> | null): string;

/** `fetch` with this tab's id as the `Insight-Client` header: use it for the job API. */
export function insightFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;

/** The window CustomEvents insight.js dispatches, and what each carries as `detail`. */
export interface UIEventMap {
  "ui-update": UpdateData;
  "ui-modal": ModalContent;
  "ui-toast": Toast & FrameContext;
  "ui-gap": { since: string };
  "ui-confetti": Celebration & FrameContext;
}

/** Whether a ui_update's data is the declared payload `type` (the publisher validated it). */
export function isUpdatePayload<K extends UpdatePayload["type"]>(
  data: UpdateData,
  type: K,
): data is Extract<UpdatePayload, { type: K }>;
