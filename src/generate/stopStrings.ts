/**
 * Finds stop strings in text that arrives in pieces (one decoded token at a time).
 *
 * Text that could still turn into a stop string is held back; everything before it is released
 * at once. When a stop string completes, the text before it is released and the stop string
 * itself (and anything after it) never is. So `### Human:` ends a StableVicuna reply unseen
 * even when the tokens split it as "###", " Human", ":"; and "##" followed by "x" releases "##x".
 */
export interface StopPush {
  /** Text that is now final and may be shown. */
  readonly text: string;
  /** The stop string that matched, or null while generation may go on. */
  readonly stop: string | null;
}

export class StopStringMatcher {
  private readonly stops: readonly string[];
  private held = '';
  private stopped: string | null = null;

  /** Empty strings are ignored (they would stop before the first character). */
  constructor(stops: readonly string[]) {
    this.stops = [...new Set(stops.filter((s) => s.length > 0))];
  }

  /** The stop string that ended the text, if any. */
  get matched(): string | null {
    return this.stopped;
  }

  /** Text held back because it may be the start of a stop string. */
  get pending(): string {
    return this.held;
  }

  push(text: string): StopPush {
    if (this.stopped !== null) return { text: '', stop: this.stopped };
    const buf = this.held + text;
    // earliest complete match wins: everything before it is output, the rest is dropped
    let at = -1;
    let which: string | null = null;
    for (const s of this.stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (at < 0 || i < at)) {
        at = i;
        which = s;
      }
    }
    if (which !== null) {
      this.stopped = which;
      this.held = '';
      return { text: buf.slice(0, at), stop: which };
    }
    const keep = this.longestPartialSuffix(buf);
    this.held = buf.slice(buf.length - keep);
    return { text: buf.slice(0, buf.length - keep), stop: null };
  }

  /** End of text: nothing can complete any more, so held text is released. */
  flush(): string {
    const rest = this.held;
    this.held = '';
    return rest;
  }

  /** Length of the longest suffix of `buf` that is a proper prefix of some stop string. */
  private longestPartialSuffix(buf: string): number {
    let best = 0;
    for (const s of this.stops) {
      const max = Math.min(s.length - 1, buf.length);
      for (let len = max; len > best; len--) {
        if (buf.endsWith(s.slice(0, len))) {
          best = len;
          break;
        }
      }
    }
    return best;
  }
}
