import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { eventually, publishUntrained, runCli, startCluster, syntheticFolder, type Cluster } from '../helpers/cluster.ts';

// A real OTLP/HTTP receiver: every span the processes export, with its service.
type Span = { service: string; traceId: string; spanId: string; parentSpanId?: string; name: string };
const spans: Span[] = [];
let collector: Server;
let endpoint: string;
let c: Cluster;

before(async () => {
  collector = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      if (req.url === '/v1/traces') {
        const payload = JSON.parse(body) as { resourceSpans: { resource: { attributes: { key: string; value: { stringValue?: string } }[] }; scopeSpans: { spans: Omit<Span, 'service'>[] }[] }[] };
        for (const rs of payload.resourceSpans) {
          const service = rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '?';
          for (const ss of rs.scopeSpans) for (const s of ss.spans) spans.push({ service, traceId: s.traceId, spanId: s.spanId, ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}), name: s.name });
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
  endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
  c = await startCluster();
  await publishUntrained(c.ctx);
});

after(async () => {
  await c?.close();
  collector?.close();
});

test('with OTEL_EXPORTER_OTLP_ENDPOINT set, one trace runs from `camflow submit` through the chunk and finalization workers in other processes', async () => {
  await syntheticFolder(c.dir, 3, 61);
  const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint };
  const worker = c.spawnWorker('cam', otel);
  const run = await runCli(c, ['submit', join(c.dir, 'batch-61'), '--wait', '--json'], otel);
  assert.equal(run.code, 0, run.stderr);
  const submit = await eventually('the submission span', async () => spans.find((s) => s.name === 'camflow.submit' && s.service === 'camflow-cli'), 30_000);
  // The workers' spans arrive within their exporter's delay (1 s), chunk and finalization spans possibly in separate
  // exports (under load the chunk's came first and the check ran before the finalization's arrived): wait for both.
  const inTrace = await eventually(
    'chunk and finalization spans in the submit trace',
    async () => {
      const mine = spans.filter((s) => s.traceId === submit.traceId && s.service === 'camflow-worker-cam');
      return mine.some((s) => /cam/.test(s.name)) && mine.some((s) => /batch/.test(s.name)) ? mine : undefined;
    },
    30_000,
  ).catch((error: Error) => {
    throw new Error(`${error.message}; spans seen: ${JSON.stringify(spans.map((s) => [s.service, s.name, s.traceId.slice(0, 8), s.parentSpanId?.slice(0, 8)]))}`);
  });
  const names = [...new Set(inTrace.map((s) => s.name))];
  assert.ok(names.some((n) => /cam/.test(n)) && names.some((n) => /batch/.test(n)), `chunk and finalization spans in the trace: ${names.join(', ')}`);
  // Without the variable, nothing is exported: a batch submitted without it adds no span.
  const before = spans.length;
  const quiet = await runCli(c, ['submit', join(c.dir, 'batch-61'), '--wait', '--json']);
  assert.equal(quiet.code, 0, quiet.stderr);
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal(spans.filter((s) => s.service === 'camflow-cli').length, spans.slice(0, before).filter((s) => s.service === 'camflow-cli').length, 'no CLI span without the variable');
  worker.kill('SIGTERM');
  await worker.exited;
});
