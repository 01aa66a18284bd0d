import type { Scheduler } from '../engine/scheduler.js';
import type { ServerMetrics } from '../metrics.js';
import type { DownloadJobs } from '../models/downloadJobs.js';
import type { ModelManager } from '../models/modelManager.js';

/** What route handlers share; one per server, never module-level state. */
export interface RouteDeps {
  readonly models: ModelManager;
  readonly scheduler: Scheduler;
  readonly metrics: ServerMetrics;
  readonly downloads: DownloadJobs;
  readonly startedAt: number;
}
