// A device card's sparkline opens with the device's recent readings (fetched while the card is
// on screen only), then goes on with the live ones: no gap, no double.
import { act, screen, waitFor } from "@testing-library/react";
import { http, HttpResponse } from "msw";

import { DeviceCard } from "@/features/devices/components/device-card";
import { deviceSummary, historyAnswer, sensorData } from "@/features/devices/testing/fixtures";
import { batch } from "@/lib/live/slice";
import { renderWithApp } from "@/test/render";
import { server } from "@/test/server";

// jsdom has no IntersectionObserver: a stand-in the test drives (set before the cards' module
// reads it, so the cards use it and start off screen).
const io = vi.hoisted(() => {
  const observed = new Set<Element>();
  let notify: ((entries: { target: Element; isIntersecting: boolean }[]) => void) | null = null;
  class FakeObserver {
    constructor(cb: (entries: { target: Element; isIntersecting: boolean }[]) => void) {
      notify = cb;
    }
    observe(el: Element) {
      observed.add(el);
    }
    unobserve(el: Element) {
      observed.delete(el);
    }
    disconnect() {
      observed.clear();
    }
  }
  globalThis.IntersectionObserver = FakeObserver as unknown as typeof IntersectionObserver;
  return {
    observed,
    /** The card of ``deviceId`` comes on screen (true) or leaves it (false). */
    show(deviceId: string, visible = true) {
      const el = [...observed].find((e) => e.getAttribute("aria-label") === deviceId);
      if (!el || !notify) throw new Error(`${deviceId} is not observed`);
      notify([{ target: el, isIntersecting: visible }]);
    },
  };
});

const now = Date.now();
const S = 1000;

/** /history of every device: ``answers[id]`` (the same for every request), each request kept;
 * ``gate`` holds the answers back until it resolves. */
function serveHistory(answers: Record<string, [number, number][]>, gate?: Promise<void>) {
  const asked: { deviceId: string; from: string | null; limit: string | null }[] = [];
  server.use(
    http.get("/api/devices/:id/history", async ({ request, params }) => {
      const deviceId = String(params.id);
      const q = new URL(request.url).searchParams;
      asked.push({ deviceId, from: q.get("from"), limit: q.get("limit") });
      if (gate) await gate;
      return HttpResponse.json(historyAnswer(deviceId, q.get("from"), answers[deviceId] ?? []));
    }),
  );
  return asked;
}

/** The sparkline's points (x, y pairs) of a card. */
function spark(deviceId: string): string[] {
  const line = screen.getByRole("article", { name: deviceId }).querySelector("polyline");
  return line ? line.getAttribute("points")!.split(" ") : [];
}

/** Readings every second, ``n`` of them ending ``endAgo`` ms before now, values 0..n-1. */
const series = (n: number, endAgo: number): [number, number][] =>
  Array.from({ length: n }, (_, i) => [now - endAgo - (n - 1 - i) * S, i]);

test("a card on screen asks for its recent readings and draws them at once, before any live event", async () => {
  const asked = serveHistory({ "device-001": series(30, 2 * S) });
  renderWithApp(<DeviceCard device={deviceSummary({ intervalMs: 1000 })} intervalMs={1000} />);
  expect(spark("device-001")).toEqual([]); // off screen: nothing yet
  act(() => io.show("device-001"));
  await waitFor(() => expect(spark("device-001")).toHaveLength(30));
  expect(asked[0]!.deviceId).toBe("device-001");
  // A short window: the sparkline's 90 points at 1.5 x the interval, a bounded answer.
  const windowMs = now - Date.parse(asked[0]!.from!);
  expect(windowMs).toBeGreaterThanOrEqual(90 * S);
  expect(windowMs).toBeLessThan(10 * 60 * S);
  expect(Number(asked[0]!.limit)).toBeLessThanOrEqual(1000);
});

test("a card off screen asks for nothing", async () => {
  const asked = serveHistory({ "device-001": series(10, 2 * S), "device-002": series(10, 2 * S) });
  renderWithApp(
    <>
      <DeviceCard device={deviceSummary({ deviceId: "device-001" })} intervalMs={1000} />
      <DeviceCard device={deviceSummary({ deviceId: "device-002" })} intervalMs={1000} />
    </>,
  );
  act(() => io.show("device-001"));
  await waitFor(() => expect(spark("device-001")).toHaveLength(10));
  // device-001's answer is drawn, so its request went out and came back; device-002's never did.
  expect(asked.map((a) => a.deviceId)).toEqual(["device-001"]);
  expect(spark("device-002")).toEqual([]);

  // On screen and off again: it asked once, when it came; leaving asks nothing more.
  act(() => io.show("device-002"));
  await waitFor(() => expect(spark("device-002")).toHaveLength(10));
  act(() => io.show("device-002", false));
  expect(asked.filter((a) => a.deviceId === "device-002")).toHaveLength(1);
});

test("live events that arrive while the history is fetched are kept, the seam has no double", async () => {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  // The history: 20 readings, the last 3 s ago; live: the last two of them again, then 3 new.
  const history = series(20, 3 * S);
  const asked = serveHistory({ "device-001": history }, gate);
  const { store } = renderWithApp(<DeviceCard device={deviceSummary()} intervalMs={1000} />);
  act(() => io.show("device-001"));
  await waitFor(() => expect(asked).toHaveLength(1));
  const [t18, t19] = [history[18]![0], history[19]![0]];
  act(() => {
    store.dispatch(
      batch([
        sensorData("device-001", 18, t18),
        sensorData("device-001", 19, t19),
        sensorData("device-001", 20, t19 + S),
        sensorData("device-001", 21, t19 + 2 * S),
        sensorData("device-001", 22, t19 + 3 * S),
      ]),
    );
  });
  expect(spark("device-001")).toHaveLength(5); // live only, while the history is on its way
  act(() => open());
  await waitFor(() => expect(spark("device-001")).toHaveLength(23)); // 20 + 3 new, each once
  // The line runs left to right: every x after the one before (no point twice, none out of order).
  const xs = spark("device-001").map((p) => Number(p.split(",")[0]));
  expect(xs[0]).toBe(0);
  expect(xs.at(-1)).toBe(100);
  for (let i = 1; i < xs.length; i++) expect(xs[i]!).toBeGreaterThan(xs[i - 1]!);
});
