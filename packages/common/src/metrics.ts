import { createServer, type Server } from 'node:http';
import type { Worker } from 'bullmq';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Prometheus metrics of one camflow process (prom-client). The API serves its registry at `/metrics`; worker
 * processes serve theirs on `METRICS_PORT` when it is set (each process is scraped on its own, as Prometheus
 * expects). Names and labels are stable: dashboards and alerts are written against them.
 */
export interface ProcessMetrics {
  registry: Registry;
  /** Wall time of finished jobs, by queue (cam chunks, batch finalizations, training runs). */
  jobSeconds: Histogram<'queue'>;
  /** Jobs that failed an attempt, and those that failed for good, by queue. */
  jobFailures: Counter<'queue' | 'final'>;
  /** Jobs found stalled (their worker died or blocked its event loop) and handed on, by queue. */
  jobStalls: Counter<'queue'>;
  /** Images localized (`ok`) or refused with a reason (`failed`) by this process: rate() gives images/s. */
  images: Counter<'status'>;
  /** The model versions loaded by this process and the engine serving them (value 1). */
  modelLoaded: Gauge<'version' | 'engine'>;
}

export function createProcessMetrics(role: string): ProcessMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ role });
  // Node's process metrics under their standard names (process_cpu_seconds_total, nodejs_eventloop_lag_seconds…), which
  // stock dashboards and alerts look for; `role` tells camflow's processes apart.
  collectDefaultMetrics({ register: registry });
  const metrics: ProcessMetrics = {
    registry,
    jobSeconds: new Histogram({ name: 'camflow_job_duration_seconds', help: 'Wall time of finished jobs', labelNames: ['queue'], buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600], registers: [registry] }),
    jobFailures: new Counter({ name: 'camflow_job_failures_total', help: 'Failed job attempts (final="true": no attempts left)', labelNames: ['queue', 'final'], registers: [registry] }),
    jobStalls: new Counter({ name: 'camflow_job_stalls_total', help: 'Jobs found stalled and handed to another worker', labelNames: ['queue'], registers: [registry] }),
    images: new Counter({ name: 'camflow_images_total', help: 'Images processed by this process, by outcome', labelNames: ['status'], registers: [registry] }),
    modelLoaded: new Gauge({ name: 'camflow_model_loaded', help: 'Model versions loaded, with the engine serving them', labelNames: ['version', 'engine'], registers: [registry] }),
  };
  // A counter is there at 0 before its first event: an alert on rate() tells "none" from "not scraped".
  for (const status of ['ok', 'failed']) metrics.images.inc({ status }, 0);
  return metrics;
}

/** Count a BullMQ worker's finished, failed and stalled jobs under `queue`. */
export function instrumentWorker(metrics: ProcessMetrics, worker: Worker, queue: string): void {
  for (const final of ['false', 'true']) metrics.jobFailures.inc({ queue, final }, 0);
  metrics.jobStalls.inc({ queue }, 0);
  worker.on('completed', (job) => {
    if (job.processedOn && job.finishedOn) metrics.jobSeconds.observe({ queue }, (job.finishedOn - job.processedOn) / 1000);
  });
  worker.on('failed', (job) => {
    const final = !job || job.attemptsMade >= (job.opts.attempts ?? 1) || Boolean(job.finishedOn);
    metrics.jobFailures.inc({ queue, final: String(final) });
  });
  worker.on('stalled', () => metrics.jobStalls.inc({ queue }));
}

/** Serve `registry` at `http://host:port/metrics` (worker processes). */
export async function serveMetrics(registry: Registry, port: number, host = '0.0.0.0'): Promise<Server> {
  const server = createServer((req, res) => {
    if ((req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    registry
      .metrics()
      .then((body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body))
      .catch((error: Error) => res.writeHead(500).end(error.message));
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, () => resolve()));
  return server;
}
