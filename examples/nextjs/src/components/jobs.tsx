"use client";
// Job progress: every job this page submitted or heard of, drawn from the workers'
// `job_progress` ui_updates (a bar per job, 10% -> 100%; an import's also counts its orders,
// done/total), with a Cancel button while the job has not finished.
import { createContext, useCallback, useContext, useMemo, useState, type ReactNode } from "react";
import { toast } from "sonner";

import { useJobApi } from "@/components/auth";
import { isUpdatePayload } from "@/hooks/insight.js";
import type { JobProgress } from "@/hooks/insight";
import { useUIEventListener } from "@/hooks/useUIEvents";
import { reason } from "@/lib/format";
import type { JobRoute } from "@/lib/insight-client";
import type { JobAccepted, JobKind } from "@/lib/types";

type JobRow = Pick<JobProgress, "jobId" | "kind" | "percent" | "status" | "done" | "total">;

const JobsContext = createContext<{ jobs: JobRow[]; track: (job: JobAccepted, kind: JobKind) => void }>({
  jobs: [],
  track: () => {},
});

const rank: Record<JobProgress["status"], number> = {
  queued: 0,
  running: 1,
  succeeded: 2,
  failed: 2,
  cancelled: 2,
};

function finished(status: JobProgress["status"]): boolean {
  return rank[status] === 2;
}

function merge(jobs: JobRow[], next: JobRow): JobRow[] {
  const current = jobs.find((job) => job.jobId === next.jobId);
  if (!current) return [next, ...jobs].slice(0, 8);
  // Never move backwards (the API's "queued" may arrive after the worker's first update), and
  // a finished job stays as it ended.
  if (finished(current.status) || rank[next.status] < rank[current.status] || next.percent < current.percent) {
    return jobs;
  }
  return jobs.map((job) => (job.jobId === next.jobId ? next : job));
}

export function JobsProvider({ children }: { children: ReactNode }) {
  const [jobs, setJobs] = useState<JobRow[]>([]);
  useUIEventListener("ui-update", (data) => {
    if (!isUpdatePayload(data, "job_progress")) return;
    const { jobId, kind, percent, status, done, total } = data;
    setJobs((rows) => merge(rows, { jobId, kind, percent, status, done, total }));
  });
  const track = useCallback((job: JobAccepted, kind: JobKind) => {
    setJobs((rows) => merge(rows, { jobId: job.job_id, kind, percent: 0, status: job.status }));
  }, []);
  const value = useMemo(() => ({ jobs, track }), [jobs, track]);
  return <JobsContext.Provider value={value}>{children}</JobsContext.Provider>;
}

export function useJobs(): (job: JobAccepted, kind: JobKind) => void {
  return useContext(JobsContext).track;
}

/** Submit a job and track its row; a refusal becomes an error toast. Every job the pages
 * start goes through here, and so through the job API's one client (insight-client.ts). */
export function useSubmitJob(): (path: JobRoute, body: unknown, kind: JobKind) => Promise<void> {
  const api = useJobApi();
  const track = useJobs();
  return useCallback(
    async (path, body, kind) => {
      try {
        track(await api.submit(path, body), kind);
      } catch (error) {
        toast.error("Request refused", { description: reason(error) });
      }
    },
    [api, track],
  );
}

function JobItem({ job }: { job: JobRow }) {
  const api = useJobApi();
  const [asked, setAsked] = useState(false);
  const counted = job.total !== undefined && job.total !== null;
  const cancel = async () => {
    setAsked(true);
    try {
      await api.cancel(job.jobId);
    } catch (error) {
      toast.error("Cancel refused", { description: reason(error) });
      setAsked(false);
    }
  };
  return (
    <li
      className="job"
      data-job-id={job.jobId}
      data-kind={job.kind}
      data-status={job.status}
      data-done={counted ? (job.done ?? 0) : undefined}
      data-total={counted ? job.total : undefined}
    >
      <header>
        <b>{job.kind}</b>
        <span className="muted">
          {job.status} · {job.percent}%{counted ? ` · ${job.done ?? 0}/${job.total}` : ""}
        </span>
        {finished(job.status) ? null : (
          <button type="button" className="link cancel" disabled={asked} onClick={() => void cancel()}>
            Cancel
          </button>
        )}
      </header>
      <div
        className="bar"
        role="progressbar"
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={job.percent}
        aria-label={`${job.kind} job`}
      >
        <div style={{ width: `${job.percent}%` }} />
      </div>
    </li>
  );
}

export function JobsPanel() {
  const { jobs } = useContext(JobsContext);
  return (
    <section className="card" aria-labelledby="jobs-title">
      <h2 id="jobs-title">Jobs</h2>
      {jobs.length === 0 ? <p className="muted">Jobs you start show their progress here.</p> : null}
      <ul className="jobs">
        {jobs.map((job) => (
          <JobItem key={job.jobId} job={job} />
        ))}
      </ul>
    </section>
  );
}
