import { useEffect, useState } from "react";

const MINUTE = 60_000;

function minute(): number {
  return Math.floor(Date.now() / MINUTE) * MINUTE;
}

/** The current time rounded down to the minute, updated each minute (stable between). */
export function useMinute(): number {
  const [now, setNow] = useState(minute);
  useEffect(() => {
    const timer = setInterval(() => setNow(minute()), 5_000);
    return () => clearInterval(timer);
  }, []);
  return now;
}
