import { ModelLoadError } from '../errors.js';

/**
 * A restricted pickle reader. Loading a PyTorch checkpoint must never execute code, and in a
 * pickle code runs only through globals (GLOBAL/STACK_GLOBAL then REDUCE/NEWOBJ/BUILD). So here
 * no global is ever imported: every GLOBAL goes to the caller's allow-list (`PickleHooks`),
 * which either returns an inert marker or throws UnsafePickleError naming it; every call goes
 * back to the hooks, which build plain data. The machine is a loop over the input that consumes
 * at least one byte per opcode and checks every length against what is left, so malformed
 * input ends in a named error, never a hang or an out-of-bounds read.
 */

/** The pickle names a global outside the allow-list: the file wants to run code. */
export class UnsafePickleError extends ModelLoadError {}

/** An opcode this reader does not implement (not one torch.save emits for state dicts). */
export class UnknownPickleOpcodeError extends ModelLoadError {}

/** Structurally broken pickle: truncated, stack underflow, wrong operand types. */
export class PickleFormatError extends ModelLoadError {}

export class PyTuple {
  constructor(readonly items: readonly PyValue[]) {}
}

export class PyList {
  constructor(readonly items: PyValue[] = []) {}
}

/** dict and OrderedDict alike; keys kept in insertion order, later duplicates win on lookup. */
export class PyDict {
  readonly entries: [PyValue, PyValue][] = [];
  /** what BUILD set on it (an OrderedDict's `_metadata`), kept but never interpreted */
  state: PyValue = null;
}

/** A global the hooks allowed: a name only, never a live function. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** Objects the hooks construct (storages, tensors); the unpickler only moves them around. */
export abstract class PyExtension {}

export type PyValue = null | boolean | number | bigint | string | Uint8Array | PyTuple | PyList | PyDict | PyGlobal | PyExtension;

export interface PickleHooks {
  /** GLOBAL module.name: return a marker or throw UnsafePickleError. */
  findClass(module: string, name: string): PyValue;
  /** REDUCE / NEWOBJ of something findClass returned. */
  call(callable: PyValue, args: readonly PyValue[]): PyValue;
  /** BINPERSID: torch's reference to a tensor storage. */
  persistentLoad(pid: PyValue): PyValue;
}

export interface UnpickleResult {
  readonly value: PyValue;
  /** offset just after STOP (the legacy torch format puts several pickles back to back) */
  readonly end: number;
}

const MARK = Symbol('mark');
type StackItem = PyValue | typeof MARK;

const OPCODE_NAMES: Readonly<Record<number, string>> = {
  0x69: 'INST', 0x6f: 'OBJ', 0x50: 'PERSID', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x8f: 'ADDITEMS',
  0x90: 'EMPTY_SET', 0x91: 'FROZENSET', 0x92: 'NEWOBJ_EX', 0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

export function unpickle(data: Uint8Array, hooks: PickleHooks, start = 0, where = 'pickle'): UnpickleResult {
  return new Machine(data, hooks, start, where).run();
}

class Machine {
  private pos: number;
  private stack: StackItem[] = [];
  private readonly memo = new Map<number, PyValue>();
  private readonly view: DataView;
  private readonly text = new TextDecoder('utf-8', { fatal: true });

  constructor(private readonly data: Uint8Array, private readonly hooks: PickleHooks, start: number, private readonly where: string) {
    this.pos = start;
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  run(): UnpickleResult {
    for (;;) {
      const at = this.pos;
      const op = this.u8();
      switch (op) {
        case 0x80: { // PROTO
          const v = this.u8();
          if (v > 5) throw this.fail(`pickle protocol ${v} is newer than any Python writes`);
          break;
        }
        case 0x95: this.take(8); break; // FRAME: a length hint only
        case 0x2e: { // STOP
          const value = this.pop();
          return { value, end: this.pos };
        }
        case 0x28: this.stack.push(MARK); break;
        case 0x29: this.push(new PyTuple([])); break;
        case 0x5d: this.push(new PyList()); break;
        case 0x7d: this.push(new PyDict()); break;
        case 0x4e: this.push(null); break;
        case 0x88: this.push(true); break;
        case 0x89: this.push(false); break;
        case 0x4a: this.push(this.view.getInt32(this.take(4), true)); break; // BININT
        case 0x4b: this.push(this.u8()); break; // BININT1
        case 0x4d: this.push(this.view.getUint16(this.take(2), true)); break; // BININT2
        case 0x8a: this.push(this.long(this.u8())); break; // LONG1
        case 0x8b: this.push(this.long(this.length(this.view.getInt32(this.take(4), true)))); break; // LONG4
        case 0x47: this.push(this.view.getFloat64(this.take(8), false)); break; // BINFLOAT, big-endian
        case 0x49: this.push(this.textInt(this.line())); break; // INT (protocol 0)
        case 0x4c: this.push(this.textInt(this.line().replace(/L$/, ''))); break; // LONG (protocol 0)
        case 0x46: this.push(this.textFloat(this.line())); break; // FLOAT (protocol 0)
        case 0x58: this.push(this.utf8(this.length(this.view.getUint32(this.take(4), true)))); break; // BINUNICODE
        case 0x8c: this.push(this.utf8(this.u8())); break; // SHORT_BINUNICODE
        case 0x8d: this.push(this.utf8(this.length(this.u64()))); break; // BINUNICODE8
        case 0x55: this.push(this.latin1(this.u8())); break; // SHORT_BINSTRING (py2 str)
        case 0x54: this.push(this.latin1(this.length(this.view.getInt32(this.take(4), true)))); break; // BINSTRING
        case 0x43: this.push(this.bytes(this.u8())); break; // SHORT_BINBYTES
        case 0x42: this.push(this.bytes(this.length(this.view.getUint32(this.take(4), true)))); break; // BINBYTES
        case 0x8e: this.push(this.bytes(this.length(this.u64()))); break; // BINBYTES8
        case 0x63: { // GLOBAL "module\nname\n"
          const module = this.line();
          const name = this.line();
          this.push(this.hooks.findClass(module, name));
          break;
        }
        case 0x93: { // STACK_GLOBAL
          const name = this.pop();
          const module = this.pop();
          if (typeof module !== 'string' || typeof name !== 'string') throw this.fail('STACK_GLOBAL needs two strings');
          this.push(this.hooks.findClass(module, name));
          break;
        }
        case 0x71: this.memoPut(this.u8()); break; // BINPUT
        case 0x72: this.memoPut(this.view.getUint32(this.take(4), true)); break; // LONG_BINPUT
        case 0x94: this.memoPut(this.memo.size); break; // MEMOIZE
        case 0x70: this.memoPut(this.textIndex(this.line())); break; // PUT
        case 0x68: this.push(this.memoGet(this.u8())); break; // BINGET
        case 0x6a: this.push(this.memoGet(this.view.getUint32(this.take(4), true))); break; // LONG_BINGET
        case 0x67: this.push(this.memoGet(this.textIndex(this.line()))); break; // GET
        case 0x74: this.push(new PyTuple(this.popMark())); break; // TUPLE
        case 0x85: this.push(new PyTuple(this.popN(1))); break;
        case 0x86: this.push(new PyTuple(this.popN(2))); break;
        case 0x87: this.push(new PyTuple(this.popN(3))); break;
        case 0x6c: this.push(new PyList(this.popMark())); break; // LIST
        case 0x64: { // DICT
          const d = new PyDict();
          this.setItems(d, this.popMark());
          this.push(d);
          break;
        }
        case 0x61: { // APPEND
          const v = this.pop();
          this.list(this.top()).items.push(v);
          break;
        }
        case 0x65: { // APPENDS
          const items = this.popMark();
          const list = this.list(this.top()).items;
          // a loop, not push(...items): spreading a huge MARK frame overflows the call stack
          for (const item of items) list.push(item);
          break;
        }
        case 0x73: { // SETITEM
          const v = this.pop();
          const k = this.pop();
          this.dict(this.top()).entries.push([k, v]);
          break;
        }
        case 0x75: { // SETITEMS
          const items = this.popMark();
          this.setItems(this.dict(this.top()), items);
          break;
        }
        case 0x52: // REDUCE
        case 0x81: { // NEWOBJ: cls.__new__(cls, *args); for the allowed classes the same as a call
          const args = this.pop();
          const callable = this.pop();
          if (!(args instanceof PyTuple)) throw this.fail(`${op === 0x52 ? 'REDUCE' : 'NEWOBJ'} needs an argument tuple`);
          if (!(callable instanceof PyGlobal)) throw this.fail('REDUCE of something that is not an allowed global');
          this.push(this.hooks.call(callable, args.items));
          break;
        }
        case 0x62: { // BUILD: obj.__setstate__(state); only plain data is kept
          const state = this.pop();
          const target = this.top();
          if (target instanceof PyDict) target.state = state;
          else if (!(target instanceof PyExtension)) throw this.fail('BUILD on an object that is not a dict or tensor');
          break;
        }
        case 0x51: this.push(this.hooks.persistentLoad(this.pop())); break; // BINPERSID
        case 0x30: this.pop(); break; // POP
        case 0x31: this.popMark(); break; // POP_MARK
        case 0x32: this.push(this.top()); break; // DUP
        default: {
          const name = OPCODE_NAMES[op];
          throw new UnknownPickleOpcodeError(`${this.where}: opcode ${name ?? `0x${op.toString(16).padStart(2, '0')}`} at byte ${at} is not one a PyTorch state dict uses; the file is corrupt or not a checkpoint`);
        }
      }
    }
  }

  private fail(message: string): PickleFormatError {
    return new PickleFormatError(`${this.where}: ${message} (at byte ${this.pos}); the file is corrupt or not a PyTorch checkpoint`);
  }

  private take(n: number): number {
    if (n > this.data.length - this.pos) throw this.fail('unexpected end of pickle data');
    const at = this.pos;
    this.pos += n;
    return at;
  }

  private u8(): number {
    return this.data[this.take(1)] as number;
  }

  private u64(): number {
    const v = this.view.getBigUint64(this.take(8), true);
    return v > BigInt(this.data.length) ? this.data.length + 1 : Number(v);
  }

  /** A declared length: must fit in what is left, so no allocation exceeds the input. */
  private length(n: number): number {
    if (n < 0 || n > this.data.length - this.pos) throw this.fail(`length ${n} runs past the end of the pickle`);
    return n;
  }

  private line(): string {
    const end = this.data.indexOf(0x0a, this.pos);
    if (end < 0) throw this.fail('unterminated text operand');
    const s = this.latin1(end - this.pos);
    this.pos++;
    return s;
  }

  private utf8(n: number): string {
    const at = this.take(n);
    try {
      return this.text.decode(this.data.subarray(at, at + n));
    } catch {
      throw this.fail('invalid UTF-8 in a string');
    }
  }

  private latin1(n: number): string {
    const at = this.take(n);
    return Buffer.from(this.data.buffer, this.data.byteOffset + at, n).toString('latin1');
  }

  private bytes(n: number): Uint8Array {
    const at = this.take(n);
    return this.data.slice(at, at + n);
  }

  /** Little-endian two's complement of n bytes (LONG1/LONG4). */
  private long(n: number): number | bigint {
    const at = this.take(n);
    if (n === 0) return 0;
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(this.data[at + i] as number);
    if ((this.data[at + n - 1] as number) & 0x80) v -= 1n << BigInt(8 * n);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  private textInt(s: string): PyValue {
    if (s === '00') return false;
    if (s === '01') return true;
    if (!/^[-+]?\d{1,400}$/.test(s)) throw this.fail(`bad integer literal "${s.slice(0, 20)}"`);
    const v = BigInt(s);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }

  private textFloat(s: string): number {
    const v = Number(s);
    if (s.trim() === '' || Number.isNaN(v) && !/nan/i.test(s)) throw this.fail(`bad float literal "${s.slice(0, 20)}"`);
    return v;
  }

  private textIndex(s: string): number {
    if (!/^\d{1,10}$/.test(s)) throw this.fail(`bad memo index "${s.slice(0, 20)}"`);
    return Number(s);
  }

  private push(v: PyValue): void {
    this.stack.push(v);
  }

  private pop(): PyValue {
    const v = this.stack.pop();
    if (v === undefined) throw this.fail('stack underflow');
    if (v === MARK) throw this.fail('unexpected MARK on the stack');
    return v;
  }

  private top(): PyValue {
    const v = this.stack[this.stack.length - 1];
    if (v === undefined) throw this.fail('stack underflow');
    if (v === MARK) throw this.fail('unexpected MARK on the stack');
    return v;
  }

  private popN(n: number): PyValue[] {
    const out = new Array<PyValue>(n);
    for (let i = n - 1; i >= 0; i--) out[i] = this.pop();
    return out;
  }

  private popMark(): PyValue[] {
    const i = this.stack.lastIndexOf(MARK);
    if (i < 0) throw this.fail('no MARK to pop to');
    const items = this.stack.splice(i);
    items.shift();
    return items as PyValue[];
  }

  private memoPut(index: number): void {
    this.memo.set(index, this.top());
  }

  private memoGet(index: number): PyValue {
    const v = this.memo.get(index);
    if (v === undefined) throw this.fail(`memo ${index} read before it was written`);
    return v;
  }

  private list(v: PyValue): PyList {
    if (!(v instanceof PyList)) throw this.fail('APPEND to something that is not a list');
    return v;
  }

  private dict(v: PyValue): PyDict {
    if (!(v instanceof PyDict)) throw this.fail('SETITEM on something that is not a dict');
    return v;
  }

  private setItems(d: PyDict, items: PyValue[]): void {
    if (items.length % 2 !== 0) throw this.fail('odd number of items for a dict');
    for (let i = 0; i < items.length; i += 2) d.entries.push([items[i] as PyValue, items[i + 1] as PyValue]);
  }
}
