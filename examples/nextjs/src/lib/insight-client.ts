// The browser's side of the session: Insight tokens from this app's own server (never from
// a URL), and calls to the job API with the current one. The job API answers this origin
// cross-origin because it is in the services' ALLOWED_ORIGINS.
import { insightFetch } from "../hooks/insight.js";
import type { JobAccepted } from "./types";

export const API_URL = (process.env.NEXT_PUBLIC_INSIGHT_API ?? "http://127.0.0.1:8000").replace(
  /\/$/,
  "",
);

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let latest: { user: string; token: string } | null = null;

/** A fresh token for the signed-in user: the hook's getToken (and renewals) call this. */
export async function fetchInsightToken(): Promise<string> {
  const response = await fetch("/api/insight-token", { method: "POST", cache: "no-store" });
  if (!response.ok) throw new ApiError(response.status, `token refused (${response.status})`);
  const body = (await response.json()) as { token: string; user: string };
  latest = { user: body.user, token: body.token };
  return body.token;
}

async function tokenFor(user: string): Promise<string> {
  if (latest?.user === user) return latest.token;
  await fetchInsightToken();
  if (latest?.user !== user) throw new ApiError(401, "signed in as someone else: reload the page");
  return latest.token;
}

function describe(detail: unknown): string {
  if (typeof detail === "string") return detail;
  return JSON.stringify(detail);
}

async function call<T>(user: string, method: "GET" | "POST", path: string, body?: unknown): Promise<T> {
  // insightFetch names this tab (Insight-Client): a job's redirect and modal come back here only.
  const send = async (token: string) =>
    insightFetch(`${API_URL}/api/v1${path}`, {
      method,
      cache: "no-store",
      headers: {
        Authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  let response = await send(await tokenFor(user));
  if (response.status === 401) {
    latest = null; // expired: one fresh token, once
    response = await send(await tokenFor(user));
  }
  const payload: unknown = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = (payload as { detail?: unknown } | null)?.detail;
    throw new ApiError(response.status, detail ? describe(detail) : response.statusText);
  }
  return payload as T;
}

/** The job routes that start a job (each answers 202 with a JobAccepted). */
export type JobRoute = "/orders" | "/orders/import" | "/payments" | "/metrics/recalculate";

export interface JobApi {
  get<T>(path: string): Promise<T>;
  submit(path: JobRoute, body: unknown): Promise<JobAccepted>;
  /** Ask a job to stop (409: it has finished; 404: not the caller's). How it ends, its own
   * job_progress says: `cancelled`, or as it would have past its point of no return. */
  cancel(jobId: string): Promise<void>;
}

export function jobApi(user: string): JobApi {
  return {
    get: <T,>(path: string) => call<T>(user, "GET", path),
    submit: (path, body) => call<JobAccepted>(user, "POST", path, body),
    cancel: async (jobId) => {
      await call<unknown>(user, "POST", `/jobs/${encodeURIComponent(jobId)}/cancel`);
    },
  };
}
