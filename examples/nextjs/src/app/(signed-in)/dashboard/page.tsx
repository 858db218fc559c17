import { MetricsDashboard } from "@/components/dashboard";
import { JobsPanel } from "@/components/jobs";

export default function DashboardPage() {
  return (
    <div className="grid">
      <MetricsDashboard />
      <JobsPanel />
    </div>
  );
}
