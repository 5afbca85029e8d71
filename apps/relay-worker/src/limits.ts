// The object's own limits (docs/relay.md, "Limits") and the token buckets that enforce the rates.

export const MAX_NODE_MESSAGE = 65536;
/** An HTTP stream's request body, carried to the bridge as one DATA: so no more than a DATA can hold. */
export const MAX_HTTP_BODY = 65536;
export const MAX_STREAMS = 256;
export const MAX_STREAMS_PER_TOKEN = 8;
export const MAX_TOKENS = 4096;
/**
 * The wait a refusal for a cap on streams open at once asks for (`Retry-After`): a place frees when any
 * stream ends, which the object cannot foretell, so it names a short wait that a client lengthens as it backs off.
 */
export const CAP_RETRY_MS = 1000;

const MiB = 1024 * 1024;

/** Holds up to `burst` tokens and gains `perSecond` a second; `take` spends them or refuses. */
export class TokenBucket {
  private tokens: number;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
    private last: number,
  ) {
    this.tokens = burst;
  }

  take(amount: number, now: number): boolean {
    this.refill(now);
    if (this.tokens < amount) return false;
    this.tokens -= amount;
    return true;
  }

  /** How long from `now` until `amount` could be taken (0 if it could be now). */
  waitMs(amount: number, now: number): number {
    this.refill(now);
    return Math.max(0, Math.ceil(((amount - this.tokens) / this.perSecond) * 1000));
  }

  private refill(now: number): void {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.perSecond);
    this.last = now;
  }
}

/**
 * The three rates kept per routing token, across all of that token's streams. `opens` counts the streams
 * that start something costly at the bridge (a node stream's TLS handshake, a pairing step); a sealed call
 * (`POST /v1/chat`) on a paired route is one message of `messages` instead, so that an app's ordinary calls
 * never meet the limit on openings.
 */
export class TokenRates {
  readonly messages: TokenBucket;
  readonly bytes: TokenBucket;
  readonly opens: TokenBucket;

  constructor(now: number) {
    this.messages = new TokenBucket(200, 400, now);
    this.bytes = new TokenBucket(8 * MiB, 16 * MiB, now);
    this.opens = new TokenBucket(10, 20, now);
  }

  /**
   * Takes one message of `size` bytes, or says how long until it could be taken (ms), taking nothing then.
   */
  message(size: number, now: number): number {
    const wait = Math.max(this.messages.waitMs(1, now), this.bytes.waitMs(size, now));
    if (wait === 0) {
      this.messages.take(1, now);
      this.bytes.take(size, now);
    }
    return wait;
  }
}
