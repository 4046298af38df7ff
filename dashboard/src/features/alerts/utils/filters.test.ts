import { filtersFromParams, filtersToParams, filtersToQuery } from "@/features/alerts/utils/filters";

test("the address gives the filters; bad values are ignored", () => {
  const f = filtersFromParams(
    new URLSearchParams("status=escalated&severity=urgent&deviceId=a%20b&type=device_offline&page=3"),
  );
  expect(f).toMatchObject({ status: "escalated", severity: "", deviceId: "", type: "device_offline", page: 3 });
  expect(filtersFromParams(new URLSearchParams("")).status).toBe("all");
});

test("a custom range goes to the query as given; a relative one from now", () => {
  const custom = filtersFromParams(
    new URLSearchParams("from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&page=2"),
  );
  expect(custom.range).toBe("custom");
  expect(filtersToQuery(custom, 0)).toEqual({
    status: "all",
    limit: 25,
    offset: 25,
    from: "2026-01-01T00:00:00.000Z",
    to: "2026-01-02T00:00:00.000Z",
  });
  const now = Date.parse("2026-03-01T12:00:00Z");
  expect(filtersToQuery(filtersFromParams(new URLSearchParams("range=1h")), now).from).toBe(
    "2026-03-01T11:00:00.000Z",
  );
});

test("only what differs from the defaults goes back to the address, the open alert kept", () => {
  const f = filtersFromParams(new URLSearchParams("severity=low&range=7d"));
  expect(filtersToParams({ ...f, page: 1 }, new URLSearchParams("alert=5")).toString()).toBe(
    "alert=5&severity=low&range=7d",
  );
});
