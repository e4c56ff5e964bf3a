import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { z } from 'zod';
import { ConfigError, InvalidParameterError, createLogger, decimal, parseDecimal, keys, loadConfig, parseWith, camJobSchema, camOptionsSchema, trainJobSchema, isConnectionError, redisOutageLog, routeConsoleWarnings } from '@camflow/common';
import { safeMemberName, sourceProblem } from '@camflow/ingest';
import { resolveSplitBy, splitIndices } from '@camflow/trainer';
import { collapseEpoch, collapseReason } from '@camflow/trainer';

test('config has working defaults and parses numbers and booleans', () => {
  const c = loadConfig({ CAM_CHUNK_SIZE: '64', S3_FORCE_PATH_STYLE: 'false' });
  assert.equal(c.CAM_CHUNK_SIZE, 64);
  assert.equal(c.S3_FORCE_PATH_STYLE, false);
  assert.equal(c.REDIS_URL, 'redis://127.0.0.1:6379');
});

test('QUEUE_PREFIX may be a Redis Cluster hash tag, as the README advises (`{camflow}`: every queue key in one slot)', () => {
  assert.equal(loadConfig({ QUEUE_PREFIX: '{camflow}' }).QUEUE_PREFIX, '{camflow}');
  assert.equal(loadConfig({ QUEUE_PREFIX: 'lab_2' }).QUEUE_PREFIX, 'lab_2');
  for (const bad of ['{camflow', 'cam:flow', '{}', 'a{b}']) assert.throws(() => loadConfig({ QUEUE_PREFIX: bad }), (e: unknown) => e instanceof ConfigError && e.variable === 'QUEUE_PREFIX', bad);
});

test('numbers typed as text are read as written: decimal only, never "" as 0 or 0x1 as 1', () => {
  for (const [text, n] of [['12', 12], ['-0.3', -0.3], ['.5', 0.5], ['1e-3', 0.001], [' 2 ', 2]] as const) assert.equal(parseDecimal(text), n, text);
  for (const text of ['', ' ', '0x1', '1_000', 'Infinity', '1e400', '1,5', '2x']) assert.equal(parseDecimal(text), undefined, text);
  const fraction = z.object({ fraction: decimal(z.number().gt(0).lte(1)) });
  assert.deepEqual(parseWith(fraction, { fraction: '0.3' }, 'fields'), { fraction: 0.3 });
  assert.deepEqual(parseWith(fraction, { fraction: 0.3 }, 'fields'), { fraction: 0.3 });
  assert.throws(() => parseWith(fraction, { fraction: '' }, 'fields'), (e: unknown) => e instanceof InvalidParameterError && e.message === 'Expected number for fields.fraction but received ""');
});

test('a malformed variable fails with one line naming it', () => {
  for (const [variable, value] of [['CAM_CHUNK_SIZE', 'lots'], ['REDIS_URL', 'not a url'], ['S3_BUCKET', 'A'], ['LOG_LEVEL', 'loud']] as const) {
    assert.throws(
      () => loadConfig({ [variable]: value }),
      (e: unknown) => e instanceof ConfigError && e.variable === variable && e.message.startsWith(`config: ${variable}:`) && !e.message.includes('\n'),
    );
  }
});

test('a number variable is read as decimal digits only: hex, separators, fractions and blanks are refused, naming the variable', () => {
  assert.equal(loadConfig({ API_PORT: '8081' }).API_PORT, 8081);
  assert.equal(loadConfig({ CAM_CHUNK_SIZE: ' 128 ' }).CAM_CHUNK_SIZE, 128);
  assert.equal(loadConfig({ CAM_THREADS: '0' }).CAM_THREADS, 0);
  assert.equal(loadConfig({ METRICS_PORT: '9464' }).METRICS_PORT, 9464);
  for (const [variable, value] of [['API_PORT', '0x1F90'], ['CAM_CHUNK_SIZE', '12abc'], ['MAX_FILE_BYTES', '64_000'], ['CAM_CONCURRENCY', '2.5'], ['TRAIN_THREADS', ' '], ['METRICS_PORT', '0b1']] as const) {
    assert.throws(
      () => loadConfig({ [variable]: value }),
      (e: unknown) => e instanceof ConfigError && e.variable === variable && e.message.includes(`(got ${JSON.stringify(value)})`),
      `${variable}=${JSON.stringify(value)}`,
    );
  }
  // Out of range still says the range.
  assert.throws(() => loadConfig({ CAM_CHUNK_SIZE: '20000' }), /CAM_CHUNK_SIZE: .*10000/);
});

test('logs redact credentials and tokens', () => {
  const lines: string[] = [];
  const sink = new Writable({ write: (chunk, _enc, cb) => (lines.push(String(chunk)), cb()) });
  const log = createLogger({ level: 'info', destination: sink });
  log.info({ credentials: { accessKeyId: 'AKIAXXX', secretAccessKey: 'supersecret' }, token: 'bearer-123', s3: { secretAccessKey: 'another' } }, 'hello');
  const text = lines.join('');
  assert.ok(text.includes('hello'));
  for (const secret of ['AKIAXXX', 'supersecret', 'bearer-123', 'another']) assert.ok(!text.includes(secret), `${secret} leaked: ${text}`);
});

test('object keys derive from hashes and ids and refuse path tricks', () => {
  const sha = 'ab'.repeat(32);
  assert.equal(keys.original(sha, 'png'), `originals/ab/${sha}.png`);
  assert.equal(keys.resultJson('b1', 'i0000001'), 'results/b1/i0000001.json');
  assert.throws(() => keys.resultJson('../etc', 'x'), InvalidParameterError);
  assert.throws(() => keys.original('../../passwd', 'png'), /sha256/);
  assert.throws(() => keys.datasetManifest('a/b', 'v1'), /dataset/);
});

test('archive member and upload names resolve ../ as a path does, never above the root, and lose absolute prefixes (metadata only)', () => {
  assert.equal(safeMemberName('../../etc/passwd'), 'etc/passwd');
  assert.equal(safeMemberName('/abs/x.png'), 'abs/x.png');
  // The folder a name ends in is the class eval reads: `Parasitized/../Uninfected/x.png` is an Uninfected cell.
  assert.equal(safeMemberName('Parasitized/../Uninfected/x.png'), 'Uninfected/x.png');
  assert.equal(safeMemberName('a/b/../c.png'), 'a/c.png');
  assert.equal(safeMemberName('a\\..\\b.png'), 'b.png');
  assert.equal(safeMemberName('a/./b/../../../c.png'), 'c.png');
});

test('job payloads are validated with errors naming the field', () => {
  assert.throws(
    () => parseWith(camJobSchema, { batchId: 'b1', chunk: 0, modelVersion: 'm1', items: [], options: {} }, 'cam job'),
    (e: unknown) => e instanceof InvalidParameterError && e.field === 'cam job.items',
  );
});

test('a group split never puts one patient on both sides; an item split is stratified', () => {
  const items = Array.from({ length: 200 }, (_, i) => ({ label: i % 2, group: `C${i % 17}` }));
  const g = splitIndices(items, 0.2, 1, 'group');
  const trainGroups = new Set(g.train.map((i) => items[i]!.group));
  assert.ok(g.validation.length > 0 && g.train.length > 0);
  assert.ok(g.validation.every((i) => !trainGroups.has(items[i]!.group)));
  assert.equal(g.train.length + g.validation.length, 200);
  const s = splitIndices(items, 0.2, 1, 'item');
  assert.equal(s.validation.filter((i) => items[i]!.label === 0).length, 20);
  assert.equal(s.validation.filter((i) => items[i]!.label === 1).length, 20);
  assert.deepEqual(splitIndices(items, 0.2, 1, 'group'), g, 'seeded: same split every time');
});

test('the default split is by patient whenever patients hold several images', () => {
  const patients = Array.from({ length: 10 }, (_, i) => ({ group: `C${i % 3}` }));
  const own = Array.from({ length: 10 }, (_, i) => ({ group: `img${i}` }));
  assert.equal(resolveSplitBy(patients, 'auto'), 'group');
  assert.equal(resolveSplitBy(own, 'auto'), 'item', 'one image per group: nothing to keep together');
  assert.equal(resolveSplitBy(patients.map(() => ({ group: 'C1' })), 'auto'), 'item', 'one group cannot be split');
  assert.equal(resolveSplitBy(patients, 'item'), 'item', 'an explicit choice stands');
  assert.equal(trainJobSchema.parse({ dataset: 'cells' }).splitBy, 'auto');
});

test('collapse detection: dead features, constant predictions and chance accuracy', () => {
  const base = { epoch: 3, loss: 0.69, valLoss: 0.69, valAccuracy: 0.9, dominantShare: 0.5, featureMean: 0.3, seconds: 1 };
  assert.equal(collapseReason(base, 0.5), undefined);
  assert.match(collapseReason({ ...base, featureMean: 0 }, 0.5)!, /dead ReLU/);
  assert.match(collapseReason({ ...base, dominantShare: 1 }, 0.5)!, /constant predictions/);
  assert.match(collapseReason({ ...base, valAccuracy: 0.5 }, 0.5)!, /chance/);
  // The message gives the majority share it compared with, not the accuracy as if it were that share.
  assert.match(collapseReason({ ...base, valAccuracy: 0.686 }, 0.853)!, /validation accuracy 0\.686 not above the majority class's share \(0\.853\)/);
  // Learning (training loss well below ln 2) but not yet generalising to new patients: not a collapse.
  assert.equal(collapseReason({ ...base, loss: 0.6, valAccuracy: 0.41 }, 0.57), undefined);
});

test('a run at chance counts as collapsed only after enough optimizer steps, however few images an epoch holds', () => {
  // The seed's 24,558 training images: 768 steps an epoch, the collapse patience (2 epochs) decides.
  assert.equal(collapseEpoch(2, 24_558, 32), 2);
  // The NIH dev set's 1,700 training cells: 54 steps an epoch; the seed's net sits at chance for 200-300 steps.
  assert.equal(collapseEpoch(2, 1700, 32), 12);
  assert.ok(collapseEpoch(2, 1700, 32) * Math.ceil(1700 / 32) >= 600);
  assert.equal(collapseEpoch(20, 1700, 32), 20, 'a longer patience stands');
});

test("a schema's refusal reads as one sentence: the expectation without zod's lead, the value, and for a mistyped choice the one meant", () => {
  const message = (schema: unknown, value: unknown, what: string) => {
    try {
      parseWith(schema as never, value, what);
    } catch (e) {
      return (e as Error).message;
    }
    return 'accepted';
  };
  // A value that was not given is said so, not printed as JavaScript's `undefined`.
  assert.equal(new InvalidParameterError('--boxes', 'a boxes.json', undefined).message, 'Expected a boxes.json for --boxes but received nothing');
  // What was found is said whole (here the detail past 80 characters is the point), a pasted blob cut at 300.
  const found = 'b20261129T032120-5023028c0ffe: 41 of the source\'s images not in it (Parasitized/a.png, Parasitized/b.png), 41 images not in the source (Parasitized/copy-a.png)';
  assert.equal(new InvalidParameterError('--batch', 'a batch of these images', found).message, `Expected a batch of these images for --batch but received ${JSON.stringify(found)}`);
  assert.equal(new InvalidParameterError('--key', 'a key', 'k'.repeat(1000)).message, `Expected a key for --key but received "${'k'.repeat(297)}..."`);
  assert.equal(message(camOptionsSchema, { kind: 'field' }, '--options'), 'Expected one of "auto"|"cells"|"fields" (did you mean "fields"?) for --options.kind but received "field"');
  assert.equal(message(trainJobSchema, { dataset: 'x', epochs: 0 }, 'train job'), 'Expected number to be >0 for train job.epochs but received 0');
  assert.equal(message(trainJobSchema, { dataset: 'x', epochs: 'a' }, 'train job'), 'Expected number for train job.epochs but received "a"');
  assert.equal(message(camOptionsSchema, { kind: 'zzz' }, '--options'), 'Expected one of "auto"|"cells"|"fields" for --options.kind but received "zzz"');
  // An unknown field: the value received is the field, with the known ones and the one meant.
  assert.match(message(trainJobSchema.strict(), { dataset: 'x', epoch: 3 }, 'body'), /^Expected known fields only \(dataset, .*epochs.*\); did you mean "epochs"\? for body but received "epoch"$/);
});

test('a source store that cannot be listed is named with the setting that decides it, for every process that lists it', () => {
  const named = (name: string, message: string, code?: string) => Object.assign(new Error(message), { name, ...(code ? { code } : {}) });
  assert.equal(
    sourceProblem(named('CredentialsProviderError', 'Could not load credentials from any providers'), 'AWS S3 (us-east-1)'),
    'AWS S3 (us-east-1) needs credentials: set SOURCE_AWS_ACCESS_KEY_ID and SOURCE_AWS_SECRET_ACCESS_KEY in the environment of each process that lists it — the submitting command or API server (`camflow serve`) and every ingest worker (`camflow worker ingest`, `camflow dev`) read their own',
  );
  // Refused keys that were not SOURCE_AWS_* (the SDK's chain found some, perhaps camflow's own): said.
  assert.match(sourceProblem(named('InvalidAccessKeyId', 'no such key'), 'S3 at http://lab:9000', false), /check SOURCE_AWS_ACCESS_KEY_ID and SOURCE_AWS_SECRET_ACCESS_KEY \(none is set here: the AWS SDK's default chain was used/);
  assert.equal(sourceProblem('a string thrown', 'AWS S3 (us-east-1)'), 'AWS S3 (us-east-1): a string thrown');
  assert.match(sourceProblem(named('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist'), 'S3 at http://lab:9000'), /^S3 at http:\/\/lab:9000 refused these credentials \(InvalidAccessKeyId\): check SOURCE_AWS_ACCESS_KEY_ID/);
  assert.equal(sourceProblem(named('NoSuchBucket', 'The specified bucket does not exist'), 'S3 at http://lab:9000'), "no such bucket (asked S3 at http://lab:9000; the bucket is the URL's first part, SOURCE_S3_ENDPOINT names the store)");
  assert.match(sourceProblem(named('Error', 'getaddrinfo ENOTFOUND s3.us-east-1.amazonaws.com', 'ENOTFOUND'), 'AWS S3 (us-east-1)'), /^AWS S3 \(us-east-1\) does not answer \(ENOTFOUND\): check SOURCE_S3_ENDPOINT/);
  assert.equal(sourceProblem(named('SlowDown', 'Please reduce your request rate'), 'AWS S3 (eu-west-1)'), 'AWS S3 (eu-west-1): Please reduce your request rate');
});

test('a Redis outage is one line when it starts and one when every client that lost it is back; other errors each get theirs', () => {
  const lines: { level: number; msg: string; downSeconds?: number; repeatedErrors?: number }[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(String(chunk)));
      cb();
    },
  });
  let clock = 1000;
  const outage = redisOutageLog(createLogger({ level: 'info', destination: sink }), () => clock);
  const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6391'), { code: 'ECONNREFUSED' });
  const [worker, subscriber] = [{}, {}];
  outage.ready(worker); // the first connection: nothing to say
  for (let i = 0; i < 72; i++) outage.error(i % 2 ? refused : new Error('Connection is closed.'), { queue: 'cam' }, i % 3 ? worker : subscriber);
  clock += 18_000;
  outage.ready(subscriber); // one client back, the other not yet: not over
  assert.equal(lines.length, 1);
  outage.ready(worker);
  outage.ready(worker); // its second connection: said once
  outage.error(new Error('ERR unknown command'), { queue: 'cam' }, worker);
  assert.deepEqual(lines.map((l) => [l.level, l.msg]), [
    [50, 'Redis stopped answering (Connection is closed.): jobs wait; every connection is retried until it answers'],
    [40, 'Redis answers again after 18 s: work goes on'],
    [50, 'worker error'],
  ]);
  assert.deepEqual([lines[1]!.downSeconds, lines[1]!.repeatedErrors], [18, 71]);
  // A job whose lock expired meanwhile, finished here: said in words (BullMQ's text is "Missing lock for job …").
  outage.error(new Error('Missing lock for job b1-c1. moveToFinished'), { queue: 'cam' }, worker);
  assert.equal(lines.pop()!.msg, 'job b1-c1 finished here after its lock had expired (Redis away or this process blocked longer than JOB_LOCK_MS): another worker runs it again; its results are written idempotently');
  // A second outage is said again.
  outage.error(refused, {}, subscriber);
  outage.ready(subscriber);
  assert.deepEqual(lines.slice(3).map((l) => l.level), [50, 40]);
  assert.equal(isConnectionError(refused), true);
  assert.equal(isConnectionError(new Error('ERR unknown command')), false);
});

test("a library's console warning reaches the log once, as JSON (BullMQ warns about the eviction policy per connection)", () => {
  const lines: { level: number; msg: string; from?: string }[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(String(chunk)));
      cb();
    },
  });
  const restore = routeConsoleWarnings(createLogger({ level: 'info', destination: sink }), { json: true });
  try {
    for (let i = 0; i < 7; i++) console.warn('IMPORTANT! Eviction policy is %s. It should be "noeviction"', 'allkeys-lru');
    console.warn('another warning');
  } finally {
    restore();
  }
  assert.deepEqual(lines.map((l) => [l.level, l.from, l.msg]), [
    [40, 'console', 'IMPORTANT! Eviction policy is allkeys-lru. It should be "noeviction"'],
    [40, 'console', 'another warning'],
  ]);
});
