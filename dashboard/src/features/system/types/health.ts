/** GET /api/health (DESIGN.md 6): not enveloped; 503 with the same body when unhealthy. */
export interface DependencyHealth {
  status: "healthy" | "unhealthy" | string;
  responseTime: number; // ms
  error?: string;
}

export interface Health {
  status: "healthy" | "unhealthy" | string;
  timestamp: string;
  version: string;
  dependencies: Record<string, DependencyHealth>;
  metrics: { uptime: number; requestsPerMinute: number; errorRate: number };
}
