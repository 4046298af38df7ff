// What a panel shows for its query besides the data: the error, when the last fetch failed (the
// data it had stays on screen), and "Loading…" until the first answer.
import { errorMessage } from "@/lib/api-client";

export function QueryStatus({ error, loading }: { error: unknown; loading: boolean }) {
  return (
    <>
      {error ? (
        <p role="alert" className="error-text">
          {errorMessage(error)}
        </p>
      ) : null}
      {loading ? <p>Loading…</p> : null}
    </>
  );
}
