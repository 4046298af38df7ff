import { downloadPng } from "@/components/plot";
import { downloadText, toCsv } from "@/utils/csv";

function stamp(): string {
  return new Date().toISOString().slice(0, 16).replace(/[:T]/g, "-");
}

export function fileName(name: string, ext: string): string {
  return `${name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "")}-${stamp()}.${ext}`;
}

/** PNG of a Plotly chart, found by its name. */
export function PngButton({ chart, disabled }: { chart: string; disabled?: boolean }) {
  return (
    <button
      type="button"
      className="secondary"
      disabled={disabled}
      onClick={() => void downloadPng(chart)}
      aria-label={`Export ${chart} as PNG`}
    >
      PNG
    </button>
  );
}

export function CsvButton({
  name,
  rows,
  columns,
}: {
  name: string;
  rows: Record<string, unknown>[];
  columns?: string[];
}) {
  return (
    <button
      type="button"
      className="secondary"
      disabled={!rows.length}
      onClick={() => downloadText(toCsv(rows, columns), fileName(name, "csv"))}
      aria-label={`Export ${name} as CSV`}
    >
      CSV
    </button>
  );
}
