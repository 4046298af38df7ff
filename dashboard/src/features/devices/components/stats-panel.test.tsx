import { render, screen, within } from "@testing-library/react";

import { StatsPanel } from "@/features/devices/components/stats-panel";
import { windowStats } from "@/features/devices/testing/fixtures";

function row(name: string) {
  return within(screen.getByRole("row", { name: new RegExp(`^${name}`) }));
}

test("1 h and 24 h figures side by side", () => {
  render(
    <StatsPanel
      unit="celsius"
      stats1h={windowStats({ count: 1800, avg: 50.25, min: 21.5, max: 79.75, std: 3.125, median: 49.5, trend: "increasing", slopePerHour: 1.5 })}
      stats24h={windowStats({ count: 43_200, avg: 48, min: 15.125, max: 120.5, std: 10, median: 47, trend: "decreasing", slopePerHour: -0.25 })}
    />,
  );
  expect(screen.getByRole("columnheader", { name: "Last hour" })).toBeInTheDocument();
  const cells = (name: string) => row(name).getAllByRole("cell").map((c) => c.textContent);
  expect(cells("Readings")).toEqual(["1,800", "43,200"]);
  expect(cells("Average")).toEqual(["50.25 celsius", "48.00 celsius"]);
  expect(cells("Minimum")).toEqual(["21.50 celsius", "15.13 celsius"]);
  expect(cells("Maximum")).toEqual(["79.75 celsius", "120.5 celsius"]);
  expect(cells("Std deviation")).toEqual(["3.13 celsius", "10.00 celsius"]);
  expect(cells("Median")).toEqual(["49.50 celsius", "47.00 celsius"]);
  expect(cells("Trend")[0]).toMatch(/increasing \(\+1\.50 celsius\/h\)/);
  expect(cells("Trend")[1]).toMatch(/decreasing \(-0\.25 celsius\/h\)/);
});

test("a window without statistics shows dashes; none at all says so", () => {
  const { rerender } = render(<StatsPanel unit={null} stats1h={null} stats24h={windowStats({ count: 3, avg: 1 })} />);
  expect(row("Average").getAllByRole("cell").map((c) => c.textContent)).toEqual(["–", "1.00"]);
  rerender(<StatsPanel unit={null} stats1h={null} stats24h={null} />);
  expect(screen.getByText(/No statistics yet/)).toBeInTheDocument();
});
