// The object's own limits (docs/relay.md, "Limits") and the token buckets that enforce the rates.

export const MAX_NODE_MESSAGE = 65536;
/** An HTTP stream's request body, carried to the bridge as one DATA: so no more than a DATA can hold. */
export const MAX_HTTP_BODY = 65536;
export const MAX_STREAMS = 256;
export const MAX_STREAMS_PER_TOKEN = 8;
export const MAX_TOKENS = 4096;

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
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.perSecond);
    this.last = now;
    if (this.tokens < amount) return false;
    this.tokens -= amount;
    return true;
  }
}

/** The three rates kept per routing token, across all of that token's streams. */
export class TokenRates {
  readonly messages: TokenBucket;
  readonly bytes: TokenBucket;
  readonly opens: TokenBucket;

  constructor(now: number) {
    this.messages = new TokenBucket(200, 400, now);
    this.bytes = new TokenBucket(8 * MiB, 16 * MiB, now);
    this.opens = new TokenBucket(10, 20, now);
  }
}
