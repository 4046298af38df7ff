// The alerts page's main area: filters, counts by severity, the table with pages, and CSV
// exports (this page of rows, built here; or the server's full CSV for the device and time
// range). Filters and page are in the address.
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import toast from "react-hot-toast";
import { useSearchParams } from "react-router-dom";

import { useAlertHistoryCsvMutation } from "@/features/alerts/api/get-alert-history-csv";
import { useAlertsListQuery } from "@/features/alerts/api/get-alerts";
import { AlertFiltersForm } from "@/features/alerts/components/alert-filters";
import { AlertsTable, Pagination } from "@/features/alerts/components/alerts-table";
import { useAlertLiveSync } from "@/features/alerts/hooks/use-alert-live-sync";
import { useAlertParam } from "@/features/alerts/hooks/use-alert-param";
import { useMinute } from "@/features/alerts/hooks/use-minute";
import { SEVERITIES, type AlertListMeta } from "@/features/alerts/types";
import {
  PAGE_SIZE,
  filtersFromParams,
  filtersToParams,
  filtersToQuery,
  type AlertFilters,
} from "@/features/alerts/utils/filters";
import { errorMessage } from "@/lib/api-client";
import type { Alert } from "@/types/api";
import { downloadText, toCsv } from "@/utils/csv";

import "@/features/alerts/alerts.css";

export const CSV_COLUMNS: (keyof Alert)[] = [
  "id",
  "deviceId",
  "type",
  "severity",
  "status",
  "message",
  "value",
  "threshold",
  "lastValue",
  "count",
  "triggeredAt",
  "acknowledgedAt",
  "acknowledgedBy",
  "escalatedAt",
  "resolvedAt",
  "resolvedBy",
  "silenced",
  "flapping",
];

function stamp(): string {
  return new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
}

export function SeverityCounts({ meta }: { meta: AlertListMeta | undefined }) {
  return (
    <ul className="severity-counts" aria-label="Alerts by severity">
      {SEVERITIES.map((s) => (
        <li key={s} className={`sev-count sev-bg-${s}`}>
          <span className="sev-count-n">{meta?.[`${s}Alerts`] ?? "–"}</span> {s}
        </li>
      ))}
    </ul>
  );
}

export function AlertsBrowser() {
  useAlertLiveSync();
  const [params, setParams] = useSearchParams();
  const filters = useMemo(() => filtersFromParams(params), [params]);
  const now = useMinute();
  const query = useMemo(() => filtersToQuery(filters, now), [filters, now]);
  const invalid = Boolean(filters.from && filters.to && filters.from >= filters.to);
  const { data, error, isLoading, isFetching, refetch } = useAlertsListQuery(query, { skip: invalid });
  const [, openAlert] = useAlertParam();
  const [downloadCsv, csv] = useAlertHistoryCsvMutation();
  const [seen, setSeen] = useState<string[]>([]);

  // Two changes before the page re-renders (a fast hand, a test robot) must both count: the
  // second builds on the first, not on the address the last render saw.
  // (Kept until the address shows it, and at most a second.)
  const pending = useRef<{ params: URLSearchParams; at: number } | null>(null);
  useEffect(() => {
    if (pending.current?.params.toString() === params.toString()) pending.current = null;
  }, [params]);
  const setFilters = useCallback(
    (change: Partial<AlertFilters>) =>
      setParams((p) => {
        const now = Date.now();
        const base = pending.current && now - pending.current.at < 1000 ? pending.current.params : p;
        const current = filtersFromParams(base);
        const next = { ...current, ...change, page: "page" in change ? (change.page ?? 1) : 1 };
        const params = filtersToParams(next, base);
        pending.current = { params, at: now };
        return params;
      }),
    [setParams],
  );

  // Device ids seen in results, for the device filter's suggestions.
  const ids = data?.alerts.map((a) => a.deviceId) ?? [];
  if (ids.some((d) => !seen.includes(d))) setSeen([...new Set([...seen, ...ids])].sort().slice(0, 500));

  const total = data?.meta.totalAlerts ?? 0;
  const pages = Math.ceil(total / PAGE_SIZE);

  async function serverCsv() {
    try {
      const text = await downloadCsv({
        deviceId: filters.deviceId || undefined,
        from: query.from,
        to: query.to,
      }).unwrap();
      downloadText(text, `alerts-history-${stamp()}.csv`);
    } catch (e) {
      toast.error(`The CSV could not be downloaded: ${errorMessage(e)}`);
    } finally {
      csv.reset();
    }
  }

  return (
    <section className="panel alerts-browser" aria-labelledby="alerts-browser-title">
      <div className="row section-head">
        <h2 id="alerts-browser-title">Alerts</h2>
        <SeverityCounts meta={data?.meta} />
        <span className="spacer" />
        <button type="button" className="secondary" onClick={() => void refetch()} disabled={isFetching}>
          Refresh
        </button>
        <button
          type="button"
          className="secondary"
          disabled={!data?.alerts.length}
          onClick={() =>
            downloadText(
              toCsv(data?.alerts as unknown as Record<string, unknown>[], CSV_COLUMNS),
              `alerts-page-${filters.page}-${stamp()}.csv`,
            )
          }
        >
          Export table CSV
        </button>
        <button
          type="button"
          className="secondary"
          disabled={csv.isLoading}
          onClick={() => void serverCsv()}
          title="Every alert for the device filter and time range (default: the last 7 days), from the server"
        >
          {csv.isLoading ? "Downloading…" : "Download history CSV"}
        </button>
      </div>
      <AlertFiltersForm value={filters} onChange={setFilters} deviceIds={seen} />
      {error ? (
        <p role="alert" className="error-text">
          Alerts could not be loaded: {errorMessage(error)}
        </p>
      ) : null}
      {isLoading ? <p>Loading alerts…</p> : null}
      {data ? (
        <>
          <AlertsTable
            alerts={data.alerts}
            caption="Alerts matching the filters, newest first"
            onOpen={openAlert}
            busy={isFetching}
          />
          <Pagination
            page={filters.page}
            pages={pages}
            total={total}
            onPage={(page) => setFilters({ page })}
            label="Alert pages"
            more={Boolean(data.meta.countsCapped) && data.alerts.length === PAGE_SIZE}
          />
        </>
      ) : null}
    </section>
  );
}
