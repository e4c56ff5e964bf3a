import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';

type Service = {
  command?: string[];
  image?: string;
  profiles?: string[];
  build?: { target?: string };
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  volumes?: string[];
  working_dir?: string;
  deploy?: { replicas?: number; resources?: { reservations?: { devices?: { driver: string; capabilities: string[] }[] } } };
};

const raw = await readFile(new URL('../../docker-compose.yml', import.meta.url), 'utf8');
const compose = parse(raw, { merge: true }) as { services: Record<string, Service>; configs: Record<string, { content: string }> };
const dockerfile = await readFile(new URL('../../Dockerfile', import.meta.url), 'utf8');
const s = compose.services;
/** Compose's interpolation of a variable that may be unset (empty then). */
const optional = (name: string) => `\${${name}:-}`;

test('docker-compose.yml: redis (AOF, noeviction), SeaweedFS pinned as the S3 store (not MinIO), API, CPU trainer and workers by default', () => {
  assert.ok(s.redis && s.seaweedfs && s.api && s.trainer && s['cam-worker']);
  assert.ok(!JSON.stringify(compose).toLowerCase().includes('minio/'), 'no MinIO image');
  assert.ok(s.redis.command!.join(' ').includes('--appendonly yes'));
  assert.ok(s.redis.command!.join(' ').includes('--maxmemory-policy noeviction'));
  assert.match(s.seaweedfs.image!, /^chrislusf\/seaweedfs:\d+\.\d+$/, 'pinned, not latest');
  assert.ok(s.seaweedfs.command!.includes('-s3'));
  const identities = JSON.parse(compose.configs['s3-identities']!.content.replace(/\$\{(\w+):-([^}]*)\}/g, '$2'));
  assert.equal(identities.identities[0].credentials[0].accessKey, 'camflow');
  assert.equal(s['cam-worker'].environment!.S3_ENDPOINT, 'http://seaweedfs:8333');
  assert.deepEqual(s.api.command, ['serve']);
  // The API refuses to start without a token itself (exit 78); a `${API_TOKEN:?}` here would stop every `docker compose
  // run --rm cli …` too, since Compose interpolates the whole file for any command.
  assert.equal(s.api.environment!.API_TOKEN, optional('API_TOKEN'));
  assert.ok(!raw.includes(':?'), 'no variable is required to interpolate the file');
  assert.match(s.api.healthcheck!.test.join(' '), /\/readyz/, 'the API is healthy when Redis and S3 answer it');
  // The S3 gateway camflow uses (8333), not only SeaweedFS's master, gates the services that depend on it.
  assert.match(s.seaweedfs.healthcheck!.test.join(' '), /8333/);
  // Webhooks are signed and each worker's metrics served: the variables the README says to set are set.
  assert.equal(s['cam-worker'].environment!.WEBHOOK_SECRET, optional('WEBHOOK_SECRET'));
  for (const name of ['cam-worker', 'cam-worker-gpu']) assert.match(s[name]!.environment!.METRICS_PORT ?? '', /^\d+$/, name);
  // The CLI can write what it makes (download, eval reports) somewhere the host sees, and runs from there.
  assert.ok(s.cli!.volumes!.includes('./out:/out') && s.cli!.volumes!.includes('./data:/data:ro'));
  assert.equal(s.cli!.working_dir, '/out');
  assert.match(dockerfile, /mkdir -p \/out && chown node:node \/out/);
  assert.match(dockerfile, /ENTRYPOINT \["node", "--import", "\/app\/node_modules\/tsx\/dist\/loader\.mjs", "\/app\/packages\/cli\/src\/main\.ts"\]/, 'absolute: the CLI runs from any working directory');
  assert.deepEqual(s.trainer.command, ['worker', 'trainer']);
  assert.deepEqual(s['cam-worker'].command, ['worker', 'cam']);
  assert.ok((s['cam-worker'].deploy?.replicas ?? 0) >= 2);
  for (const name of ['api', 'trainer', 'cam-worker']) {
    assert.equal(s[name]!.build?.target, 'cpu', `${name} uses the CPU image`);
    assert.equal(s[name]!.deploy?.resources, undefined, `${name} reserves no GPU (it must start on a host without one)`);
  }
});

test('docker-compose.yml: the gpu profile runs GPU images with the graphics capability Dawn needs', () => {
  for (const name of ['trainer-gpu', 'cam-worker-gpu']) {
    const g = s[name]!;
    assert.deepEqual(g.profiles, ['gpu']);
    assert.equal(g.build?.target, 'gpu');
    const device = g.deploy?.resources?.reservations?.devices?.[0];
    assert.equal(device?.driver, 'nvidia');
    assert.ok(device?.capabilities.includes('graphics'), 'Vulkan (WebGPU) needs the graphics capability');
  }
  assert.equal(s['trainer-gpu']!.environment!.TF_BACKEND, 'webgpu');
  assert.match(s['cam-worker-gpu']!.environment!.CAM_EXECUTION_PROVIDERS!, /^webgpu/);
  // One process's JavaScript CAM post-processing, not the GPU, limits a GPU cam-worker: several share the GPU.
  assert.ok((s['cam-worker-gpu']!.deploy?.replicas ?? 0) >= 8, 'GPU cam-workers: several processes per GPU');
  assert.equal(s['cam-worker-gpu']!.environment!.CAM_THREADS, '1');
});

test('Dockerfile: a CPU and a GPU target; the GPU one has the Vulkan loader, GLVND and the driver capabilities; ORT CUDA is a build argument', () => {
  assert.match(dockerfile, /AS cpu\b/);
  assert.match(dockerfile, /AS gpu\b/);
  for (const lib of ['libvulkan1', 'libglvnd0', 'libegl1', 'libgl1', 'libglx0', 'libopengl0', 'libgles2']) assert.ok(dockerfile.includes(lib), lib);
  assert.match(dockerfile, /NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics/);
  assert.match(dockerfile, /ARG ORT_CUDA=0/);
  assert.match(dockerfile, /onnxruntime_node_install=cuda12/);
});
