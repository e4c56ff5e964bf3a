// Runs s3rver (an S3-compatible server) as its own process: `node s3-server-main.mjs <port> <dir> <bucket>`.
// Plain JavaScript so that it starts without a TypeScript loader (fast restarts in fault tests).
import S3rver from 's3rver';

const [portArg, directory, bucket] = process.argv.slice(2);
const server = new S3rver({
  port: Number(portArg),
  address: '127.0.0.1',
  directory,
  silent: true,
  configureBuckets: bucket ? [{ name: bucket, configs: [] }] : [],
});
await server.run();
process.stdout.write('ready\n');
const stop = () => server.close().finally(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// A parent killed with SIGKILL cannot stop us: notice being orphaned (re-parented) and stop by ourselves.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) stop();
}, 1000).unref();
