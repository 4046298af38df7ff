// For the device page: that device's alerts, all statuses, newest first, with pages; the
// same rows (and Acknowledge/Resolve for operators) as the alerts page.
import { useState } from "react";
import { Link } from "react-router-dom";

import { QueryStatus } from "@/components/query-status";
import { useAlertsListQuery } from "@/features/alerts/api/get-alerts";
import { AlertDetailFromUrl } from "@/features/alerts/components/alert-detail-dialog";
import { AlertsTable, Pagination } from "@/features/alerts/components/alerts-table";
import { useAlertLiveSync } from "@/features/alerts/hooks/use-alert-live-sync";
import { useAlertParam } from "@/features/alerts/hooks/use-alert-param";

import "@/features/alerts/alerts.css";

const PAGE = 10;

export function DeviceAlertHistory({ deviceId }: { deviceId: string }) {
  useAlertLiveSync();
  const [page, setPage] = useState(1);
  const [shownFor, setShownFor] = useState(deviceId);
  if (shownFor !== deviceId) {
    setShownFor(deviceId);
    setPage(1);
  }
  const { data, error, isLoading, isFetching } = useAlertsListQuery({
    status: "all",
    deviceId,
    limit: PAGE,
    offset: (page - 1) * PAGE,
  });
  const [, openAlert] = useAlertParam();
  const total = data?.meta.totalAlerts ?? 0;
  return (
    <section className="panel device-alerts" aria-labelledby="device-alerts-title">
      <div className="row section-head">
        <h2 id="device-alerts-title">Alert history</h2>
        <span className="spacer" />
        <Link to={`/alerts?deviceId=${encodeURIComponent(deviceId)}`}>On the alerts page →</Link>
      </div>
      <QueryStatus error={error} loading={isLoading} />
      {data ? (
        <>
          <AlertsTable
            alerts={data.alerts}
            caption={`Alerts of ${deviceId}, newest first`}
            onOpen={openAlert}
            showDevice={false}
            busy={isFetching}
          />
          {total > PAGE ? (
            <Pagination
              page={page}
              pages={Math.ceil(total / PAGE)}
              total={total}
              onPage={setPage}
              label={`Alert pages of ${deviceId}`}
            />
          ) : null}
        </>
      ) : null}
      <AlertDetailFromUrl />
    </section>
  );
}
