import { SpanStatusCode, trace, type Attributes } from '@opentelemetry/api';
import type { Telemetry } from 'bullmq';
import type { Logger } from './logger.js';

/**
 * Optional OpenTelemetry tracing. With `OTEL_EXPORTER_OTLP_ENDPOINT` set, `startTracing` registers a tracer provider
 * that sends spans (OTLP/HTTP JSON, batched) to the collector, and `bullTelemetry()` gives every BullMQ queue, flow
 * and worker `bullmq-otel`, which carries the trace context inside each job: a submission, the jobs it enqueues and
 * the workers that process them (in other processes, on other hosts) make one trace. Unset: nothing is loaded and
 * `withSpan` costs a no-op span.
 */
let telemetry: Telemetry | undefined;
let shutdown: (() => Promise<void>) | undefined;

export async function startTracing(endpoint: string | undefined, serviceName: string, log?: Logger): Promise<void> {
  if (!endpoint || shutdown) return;
  const [{ TracerProvider, BatchSpanProcessor }, { OTLPTraceExporter }, { resourceFromAttributes }, { AsyncLocalStorageContextManager }, { BullMQOtel }, api, { W3CTraceContextPropagator }] = await Promise.all([
    import('@opentelemetry/sdk-trace'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/context-async-hooks'),
    import('bullmq-otel'),
    import('@opentelemetry/api'),
    import('@opentelemetry/core'),
  ]);
  const exporter = new OTLPTraceExporter({ url: `${endpoint.replace(/\/$/, '')}/v1/traces` });
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': serviceName, 'service.namespace': 'camflow' }),
    spanProcessors: [new BatchSpanProcessor({ exporter, scheduledDelayMillis: 1000 })],
  });
  api.context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  api.trace.setGlobalTracerProvider(provider);
  // The trace context travels inside each job's options as W3C `traceparent`: the worker's span continues the trace.
  api.propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  telemetry = new BullMQOtel({ tracerName: 'camflow' }) as unknown as Telemetry;
  shutdown = async () => {
    await provider.forceFlush().catch(() => undefined);
    await provider.shutdown().catch(() => undefined);
  };
  // The collector's address only (no credentials are ever put in it by camflow).
  log?.info({ service: serviceName, collector: new URL(endpoint).host }, 'OpenTelemetry tracing on');
}

/** BullMQ options that turn tracing on for a queue, flow or worker (empty when tracing is off). */
export const bullTelemetry = (): { telemetry?: Telemetry } => (telemetry ? { telemetry } : {});

/** Send the spans still buffered (short-lived commands call it before they exit). */
export async function stopTracing(): Promise<void> {
  const s = shutdown;
  shutdown = undefined;
  telemetry = undefined;
  await s?.();
}

/** Run `fn` inside a span named `name` (a child of the active one); errors are recorded on it. */
export async function withSpan<T>(name: string, attributes: Attributes, fn: (span: { setAttributes(attributes: Attributes): unknown }) => Promise<T>): Promise<T> {
  return trace.getTracer('camflow').startActiveSpan(name, { attributes }, async (span) => {
    try {
      const out = await fn(span);
      return out;
    } catch (error) {
      span.recordException(error as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
      throw error;
    } finally {
      span.end();
    }
  });
}
