"use client";
// Job progress: every job this page submitted or heard of, drawn from the workers'
// `job_progress` ui_updates (a bar per job, 10% -> 100%).
import { createContext, useCallback, useContext, useMemo, useState, type ReactNode } from "react";

import { isUpdatePayload } from "@/hooks/insight.js";
import type { JobProgress } from "@/hooks/insight";
import { useUIEventListener } from "@/hooks/useUIEvents";
import type { JobAccepted, JobKind } from "@/lib/types";

type JobRow = Pick<JobProgress, "jobId" | "kind" | "percent" | "status">;

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

function merge(jobs: JobRow[], next: JobRow): JobRow[] {
  const current = jobs.find((job) => job.jobId === next.jobId);
  if (!current) return [next, ...jobs].slice(0, 8);
  // Never move backwards (the API's "queued" may arrive after the worker's first update).
  if (rank[next.status] < rank[current.status] || next.percent < current.percent) return jobs;
  return jobs.map((job) => (job.jobId === next.jobId ? next : job));
}

export function JobsProvider({ children }: { children: ReactNode }) {
  const [jobs, setJobs] = useState<JobRow[]>([]);
  useUIEventListener("ui-update", (data) => {
    if (!isUpdatePayload(data, "job_progress")) return;
    const { jobId, kind, percent, status } = data;
    setJobs((rows) => merge(rows, { jobId, kind, percent, status }));
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

export function JobsPanel() {
  const { jobs } = useContext(JobsContext);
  return (
    <section className="card" aria-labelledby="jobs-title">
      <h2 id="jobs-title">Jobs</h2>
      {jobs.length === 0 ? <p className="muted">Jobs you start show their progress here.</p> : null}
      <ul className="jobs">
        {jobs.map((job) => (
          <li key={job.jobId} className="job" data-job-id={job.jobId} data-kind={job.kind} data-status={job.status}>
            <header>
              <b>{job.kind}</b>
              <span className="muted">
                {job.status} · {job.percent}%
              </span>
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
        ))}
      </ul>
    </section>
  );
}
