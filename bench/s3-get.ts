// CPU cost of one S3 GET on the embedded store: s3rver's process and the AWS SDK client, 2,000 GETs of 26 KB at
// parallelism 16 (what a cam-worker pays per image when it reads one object per image).
// Run: node --import tsx bench/s3-get.ts
import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ObjectStore, mapLimit, startS3 } from '@camflow/common';

const s3 = await startS3();
const store = new ObjectStore({ bucket: s3.bucket, endpoint: s3.endpoint, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } } as never);
await store.ensureBucket();
const body = Buffer.alloc(26_000, 7);
const keys = Array.from({ length: 2000 }, (_, i) => `images/128/x/${i}.png`);
await mapLimit(keys, 16, (k) => store.put(k, body, 'image/png'));
const pid = Number(execSync(`pgrep -f 's3-server-main.mjs ${new URL(s3.endpoint).port}' | head -1`).toString().trim());
const cpuMs = () => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10; // utime + stime, clock ticks of 10 ms
};
const server0 = cpuMs();
const client0 = process.cpuUsage();
const t0 = performance.now();
await mapLimit(keys, 16, (k) => store.get(k));
const seconds = (performance.now() - t0) / 1000;
const client = process.cpuUsage(client0);
process.stdout.write(`${JSON.stringify({ s3_get: { gets_per_s: keys.length / seconds, s3rver_cpu_ms_per_get: (cpuMs() - server0) / keys.length, client_cpu_ms_per_get: (client.user + client.system) / 1000 / keys.length } })}\n`);
await s3.stop();
process.exit(0);
