import "@/features/system/system.css";

import { useGetHealthQuery } from "@/features/system/api/get-health";
import { errorMessage } from "@/lib/api-client";

const POLL_MS = 30_000;

function duration(s: number): string {
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d} d ${h} h`;
  if (h) return `${h} h ${m} min`;
  return `${m} min ${Math.floor(s % 60)} s`;
}

/** GET /api/health: the overall status, each dependency with its response time. */
export function SystemHealth() {
  const { data, error, isLoading } = useGetHealthQuery(undefined, { pollingInterval: POLL_MS });
  const overall = data?.status ?? (error ? "unreachable" : "unknown");
  return (
    <section className="panel system-health" aria-labelledby="system-health-heading">
      <div className="sys-head">
        <h2 id="system-health-heading">System health</h2>
        <span className={`health-pill health-${overall}`} data-testid="health-status">
          <span className="dot" aria-hidden /> {isLoading ? "checking…" : overall}
        </span>
      </div>
      {error ? (
        <p role="alert" className="error-text">
          Health could not be checked: {errorMessage(error)}
        </p>
      ) : null}
      {data ? (
        <>
          <table className="compact">
            <thead>
              <tr>
                <th scope="col">Dependency</th>
                <th scope="col">Status</th>
                <th scope="col" className="num">
                  Response
                </th>
              </tr>
            </thead>
            <tbody>
              {Object.entries(data.dependencies).map(([name, dep]) => (
                <tr key={name}>
                  <th scope="row">{name}</th>
                  <td className={`health-${dep.status}`} title={dep.error}>
                    {dep.status}
                  </td>
                  <td className="num">{dep.responseTime.toFixed(1)} ms</td>
                </tr>
              ))}
            </tbody>
          </table>
          <p className="muted small">
            up {duration(data.metrics.uptime)} · {data.metrics.requestsPerMinute} requests/min ·{" "}
            {(data.metrics.errorRate * 100).toFixed(1)} % errors · v{data.version}
          </p>
        </>
      ) : null}
    </section>
  );
}
