import { HOUR_CHOICES } from "@/features/analytics/types";

export function hoursLabel(h: number): string {
  return h % 24 === 0 && h > 24 ? `${h / 24} days` : `${h} hours`;
}

export function HoursPicker({ value, onChange }: { value: number; onChange: (hours: number) => void }) {
  return (
    <label className="hours-picker">
      Period
      <select value={value} onChange={(e) => onChange(Number(e.target.value))}>
        {HOUR_CHOICES.map((h) => (
          <option key={h} value={h}>
            Last {hoursLabel(h)}
          </option>
        ))}
      </select>
    </label>
  );
}
