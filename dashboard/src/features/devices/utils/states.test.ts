import { describe, expect, it } from "vitest";

import { displayValue, stateAxis, stateLabels } from "@/features/devices/utils/states";

describe("states", () => {
  it("labels the MQTT devices' binary channels", () => {
    expect(displayValue("door", 1, "open")).toBe("open");
    expect(displayValue("door", 0, "open")).toBe("closed");
    expect(displayValue("strike", 1)).toBe("released");
    expect(displayValue("siren", 0)).toBe("off");
    expect(displayValue("motion", 1)).toBe("detected");
    expect(displayValue("button", 1)).toBe("pressed");
    expect(displayValue("access_read", 1, "read")).toBe("read");
  });

  it("leaves numbers as numbers, and no value as a dash", () => {
    expect(displayValue("temperature", 21.5, "celsius")).toBe("21.50 celsius");
    expect(displayValue("door", null)).toBe("–");
    expect(stateLabels("temperature")).toBeNull();
  });

  it("draws a state as steps with labelled ticks", () => {
    const axis = stateAxis("door");
    expect(axis?.line.shape).toBe("hv");
    expect(axis?.yaxis.ticktext).toEqual(["closed", "open"]);
    expect(stateAxis("pressure")).toBeNull();
  });
});
