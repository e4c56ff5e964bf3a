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
export async function deliverWebhook(url: string, payload: unknown, secret: string | undefined, log: Logger, attempts = 3): Promise<boolean> {
  const body = JSON.stringify(payload);
  for (let i = 0; i < attempts; i++) {
    const timestamp = String(Math.floor(Date.now() / 1000));
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'camflow-webhook', 'x-camflow-timestamp': timestamp, ...(secret ? { 'x-camflow-signature': webhookSignature(secret, timestamp, body) } : {}) },
        body,
        signal: AbortSignal.timeout(5000),
      });
      if (res.ok) return true;
      log.warn({ url: new URL(url).origin, status: res.status, attempt: i + 1 }, 'webhook answered with an error');
    } catch (error) {
      log.warn({ url: new URL(url).origin, err: (error as Error).message, attempt: i + 1 }, 'webhook not delivered');
    }
    if (i + 1 < attempts) await new Promise((r) => setTimeout(r, 1000 * 4 ** i));
  }
  return false;
}
