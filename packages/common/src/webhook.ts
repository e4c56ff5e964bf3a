import { createHmac } from 'node:crypto';
import type { Logger } from 'pino';

/**
 * Pure: the signature of a webhook delivery, `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` with the shared
 * secret. A receiver recomputes it over the raw body and the `X-Camflow-Timestamp` header, compares in constant
 * time, and refuses old timestamps (replays).
 */
export function webhookSignature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

/**
 * POST `payload` as JSON to `url`, signed when a secret is set; up to `attempts` tries (5 s each, backoff 1 s, 4 s…).
 * Never throws: a receiver that is down must not fail the batch (its results are already written). Delivery is at
 * least once (a finalization that runs again calls again): receivers deduplicate by `batchId`.
 */
export async function deliverWebhook(url: string, payload: unknown, secret: string | undefined, log: Logger, attempts = 3): Promise<{ origin: string; delivered: boolean; attempts: number; error?: string }> {
  const body = JSON.stringify(payload);
  const origin = new URL(url).origin;
  let error = '';
  for (let i = 0; i < attempts; i++) {
    const timestamp = String(Math.floor(Date.now() / 1000));
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'camflow-webhook', 'x-camflow-timestamp': timestamp, ...(secret ? { 'x-camflow-signature': webhookSignature(secret, timestamp, body) } : {}) },
        body,
        signal: AbortSignal.timeout(5000),
      });
      if (res.ok) return { origin, delivered: true, attempts: i + 1 };
      error = `HTTP ${res.status}`;
      log.warn({ url: origin, status: res.status, attempt: i + 1 }, 'webhook answered with an error');
    } catch (e) {
      // fetch says "fetch failed"; what failed is in its cause (ECONNREFUSED, a certificate, a timeout).
      error = fetchFailure(e);
      log.warn({ url: origin, err: error, attempt: i + 1 }, 'webhook not delivered');
    }
    if (i + 1 < attempts) await new Promise((r) => setTimeout(r, 1000 * 4 ** i));
  }
  log.error({ url: origin, attempts, err: error }, `webhook not delivered after ${attempts} attempts (${error}): the batch is complete, its receiver was not told`);
  return { origin, delivered: false, attempts, error };
}

/** Pure: a failed fetch in words, with the cause's code: "fetch failed (ECONNREFUSED)". */
export function fetchFailure(error: unknown): string {
  const e = error as Error & { cause?: { code?: string; message?: string } };
  const cause = e.cause?.code ?? e.cause?.message;
  return cause && !e.message.includes(cause) ? `${e.message} (${cause})` : e.message;
}
