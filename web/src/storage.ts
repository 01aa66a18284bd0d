/**
 * localStorage with a typed reader: every stored value is parsed and checked by the caller's
 * `read`, so a hand-edited or older value falls back to the default instead of breaking the UI.
 */
const PREFIX = 'qllama.';

export function load<T>(key: string, read: (raw: unknown) => T | null, fallback: T): T {
  try {
    const text = localStorage.getItem(PREFIX + key);
    if (text === null) return fallback;
    return read(JSON.parse(text)) ?? fallback;
  } catch {
    return fallback;
  }
}

export function save(key: string, value: unknown): void {
  try {
    localStorage.setItem(PREFIX + key, JSON.stringify(value));
  } catch {
    // storage full or disabled: the UI keeps working for this session
  }
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
