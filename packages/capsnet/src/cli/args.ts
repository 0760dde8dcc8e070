/**
 * The command line's parsers, shared by every command: numbers, name lists and the `--device` option (its choices
 * from the runtime's device table). Every numeric flag of every `capsnet` command is parsed once, here, strictly,
 * by the type of the field it ends up in. A value that is not written as that type (`abc`, `1e3` or `1.5` for an
 * integer, `-5`, `0x10`, an empty string) or that lies outside the field's range (int32 for Triton's counts, uint32
 * for seeds, JS safe integers for byte sizes and uint64 fields) is a usage error naming the flag and its range:
 * commander prints it as one line (`error: option '--seed <n>' argument 'abc' is invalid. --seed must be ...`)
 * and exits with status 1, before anything runs.
 *
 * Each parser is registered with its rule (`numericRule`), so a test can find every numeric flag of every command
 * and feed it bad values, and so a flag added with an ad-hoc parser is noticed.
 */
import { MAX_ROUTING_ITERATIONS } from '@capsnet-onnx/core';
import { DEVICE_TABLE, type DeviceRow, autoOrder, nodeDeviceNames } from '@capsnet-onnx/runtime/internal';
import { InvalidArgumentError, Option } from 'commander';

/** Largest int32 (protobuf int32 fields such as Triton's max_batch_size and instance count; ONNX Runtime's thread counts). */
export const INT32_MAX = 2 ** 31 - 1;
/** Largest uint32 (seeds: the core's Rng keeps 32 bits, so a larger seed would alias a smaller one). */
export const UINT32_MAX = 2 ** 32 - 1;
/** Longest setTimeout delay in milliseconds (Node clamps longer ones to 1 ms, which would fire at once). */
export const TIMER_MAX_MS = 2 ** 31 - 1;

/** What a numeric flag takes, for messages and for the table-driven test. */
export interface NumericRule {
  flag: string;
  kind: 'integer' | 'number' | 'bytes' | 'integer list' | 'time';
  min: number;
  max: number;
  /** Whether min and max themselves are allowed. */
  minInclusive: boolean;
  maxInclusive: boolean;
  /** The range as the error message states it, e.g. "an integer from 1 to 2147483647 (Triton's int32)". */
  expected: string;
}

const RULES = new WeakMap<(value: string) => unknown, NumericRule>();

/** The rule of a parser made here, or undefined for any other function (a flag parsed some other way). */
export function numericRule(parser: unknown): NumericRule | undefined {
  return typeof parser === 'function' ? RULES.get(parser as (value: string) => unknown) : undefined;
}

function registered<T>(rule: NumericRule, parse: (value: string) => T): (value: string) => T {
  RULES.set(parse, rule);
  return parse;
}

function refuse(rule: NumericRule, value: string): never {
  throw new InvalidArgumentError(`${rule.flag} must be ${rule.expected}, got "${value}"`);
}

const DIGITS = /^[0-9]+$/;
/** A plain decimal, optionally with an exponent (5e-4 is how people write small weights); no sign, no hex, no spaces. */
const DECIMAL = /^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;

/**
 * An integer flag in [min, max]: digits only (no sign, exponent, fraction, hex or spaces). `field` names the type
 * that sets `max` in the message, e.g. "Triton's int32". Values are compared as BigInt, so 99999999999 is refused
 * rather than rounded or wrapped.
 */
export function integer(flag: string, range: { min: number; max?: number; field?: string }): (value: string) => number {
  const { min } = range;
  const max = range.max ?? Number.MAX_SAFE_INTEGER;
  const field = range.field ? ` (${range.field})` : '';
  const rule: NumericRule = {
    flag,
    kind: 'integer',
    min,
    max,
    minInclusive: true,
    maxInclusive: true,
    expected: `an integer from ${min} to ${max}${field}`,
  };
  return registered(rule, (value: string) => {
    if (!DIGITS.test(value)) refuse(rule, value);
    const n = BigInt(value);
    if (n < BigInt(min) || n > BigInt(max)) refuse(rule, value);
    return Number(n);
  });
}

/** A count of at least 1 that ends up in an int32 (or smaller) field: epochs, batch sizes, limits, threads... */
export function positiveInt(flag: string, max = INT32_MAX): (value: string) => number {
  return integer(flag, { min: 1, max });
}

/** A count that may be 0 (0 meaning none or off, as the flag's help says). */
export function nonNegativeInt(flag: string, max = INT32_MAX): (value: string) => number {
  return integer(flag, { min: 0, max });
}

/**
 * Routing iterations, 1 to MAX_ROUTING_ITERATIONS (core/routing.ts): each one is unrolled into the graph, so an
 * int32-sized count would run until memory ran out instead of failing.
 */
export function routingIterations(flag: string): (value: string) => number {
  return integer(flag, { min: 1, max: MAX_ROUTING_ITERATIONS, field: "the paper's is 3; each iteration is unrolled into the graph" });
}

/** A seed: an integer 0..4294967295, the Rng's 32 bits (a larger one would silently alias a smaller seed). */
export function seed(flag: string): (value: string) => number {
  return integer(flag, { min: 0, max: UINT32_MAX, field: 'a uint32' });
}

/** A TCP port, 0-65535 (0: any free port). */
export function port(flag: string): (value: string) => number {
  return integer(flag, { min: 0, max: 65535 });
}

/**
 * A real number in a range: plain decimal (an exponent allowed: 5e-4), finite, no sign. `minExclusive` /
 * `maxExclusive` open either end, e.g. (0, 1] for a fraction.
 */
export function decimal(
  flag: string,
  range: { min: number; max: number; minExclusive?: boolean; maxExclusive?: boolean; unit?: string },
): (value: string) => number {
  const { min, max } = range;
  const open = range.minExclusive ? '(' : '[';
  const close = range.maxExclusive ? ')' : ']';
  const rule: NumericRule = {
    flag,
    kind: 'number',
    min,
    max,
    minInclusive: !range.minExclusive,
    maxInclusive: !range.maxExclusive,
    expected:
      max === Number.MAX_VALUE
        ? `a number ${range.minExclusive ? '>' : '>='} ${min}${range.unit ? ` (${range.unit})` : ''}`
        : `a number in ${open}${min}, ${max}${close}${range.unit ? ` (${range.unit})` : ''}`,
  };
  return registered(rule, (value: string) => {
    if (!DECIMAL.test(value)) refuse(rule, value);
    const n = Number(value);
    if (!Number.isFinite(n)) refuse(rule, value);
    if (range.minExclusive ? n <= min : n < min) refuse(rule, value);
    if (range.maxExclusive ? n >= max : n > max) refuse(rule, value);
    return n;
  });
}

/** A number >= 0 (weights, factors). */
export function nonNegativeNumber(flag: string, unit?: string): (value: string) => number {
  return decimal(flag, { min: 0, max: Number.MAX_VALUE, ...(unit ? { unit } : {}) });
}

/** A number > 0 (rates). */
export function positiveNumber(flag: string): (value: string) => number {
  return decimal(flag, { min: 0, max: Number.MAX_VALUE, minExclusive: true });
}

/** A duration in `unit` (ms or s), 0 up to what a Node timer can wait (about 24.8 days). */
export function duration(flag: string, unit: 'ms' | 's'): (value: string) => number {
  return decimal(flag, { min: 0, max: unit === 'ms' ? TIMER_MAX_MS : Math.floor(TIMER_MAX_MS / 1000), unit: unit === 'ms' ? 'milliseconds' : 'seconds' });
}

const SIZE = /^([0-9]+(?:\.[0-9]+)?)(b|k|kb|kib|m|mb|mib|g|gb|gib)?$/i;
const UNIT_BYTES: Record<string, number> = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/**
 * A byte size: "4mb", "512kb", "1.5mb" or a whole number of bytes "1048576" (k, m, g: powers of 1,024), from `min`
 * bytes to the largest safe integer (sizes are uint64 fields; a JavaScript number is exact up to 2^53 - 1).
 */
export function byteSize(flag: string, min = 1): (value: string) => number {
  const max = Number.MAX_SAFE_INTEGER;
  const rule: NumericRule = {
    flag,
    kind: 'bytes',
    min,
    max,
    minInclusive: true,
    maxInclusive: true,
    expected: `a size from ${min} bytes to ${max} bytes, written like 4mb, 512kb or 1048576`,
  };
  return registered(rule, (value: string) => {
    const match = SIZE.exec(value);
    if (!match) refuse(rule, value);
    const unit = (match[2] ?? 'b').toLowerCase()[0]!;
    if (unit === 'b' && match[1]!.includes('.')) refuse(rule, value); // a fraction of a byte
    const bytes = Math.round(Number(match[1]) * UNIT_BYTES[unit]!);
    if (!Number.isSafeInteger(bytes) || bytes < min || bytes > max) refuse(rule, value);
    return bytes;
  });
}

const TIME = /^([0-9]+(?:\.[0-9]+)?)(s|sec|m|min|h)?$/i;

/**
 * A span of time in seconds, written "90s", "5m", "1h", "1.5h" or plain seconds ("300", "0"), at most what a Node
 * timer can wait (about 24.8 days).
 */
export function timeSpan(flag: string): (value: string) => number {
  const max = Math.floor(TIMER_MAX_MS / 1000);
  const rule: NumericRule = {
    flag,
    kind: 'time',
    min: 0,
    max,
    minInclusive: true,
    maxInclusive: true,
    expected: `a duration like 90s, 5m or 1h (or seconds, 0 for none), at most ${max} s`,
  };
  return registered(rule, (value: string) => {
    const match = TIME.exec(value);
    if (!match) refuse(rule, value);
    const unit = (match[2] ?? 's').toLowerCase();
    const seconds = Number(match[1]) * (unit.startsWith('h') ? 3600 : unit.startsWith('m') ? 60 : 1);
    if (!(seconds <= max)) refuse(rule, value);
    return seconds;
  });
}

/** Comma-separated integers, each in [min, max], e.g. --digits 0,3,7; at least one. */
export function integerList(flag: string, range: { min: number; max?: number; example: string }): (value: string) => number[] {
  const max = range.max ?? INT32_MAX;
  const rule: NumericRule = {
    flag,
    kind: 'integer list',
    min: range.min,
    max,
    minInclusive: true,
    maxInclusive: true,
    expected: `comma-separated integers from ${range.min} to ${max}, e.g. ${range.example}`,
  };
  return registered(rule, (value: string) => {
    const items = value.split(',');
    if (items.length === 0 || items.some((s) => !DIGITS.test(s))) refuse(rule, value);
    const numbers = items.map((s) => BigInt(s));
    if (numbers.some((n) => n < BigInt(range.min) || n > BigInt(max))) refuse(rule, value);
    return numbers.map(Number);
  });
}

/** A capsule length in [0, 1) below which no class counts as present (a length of 1 would never be reached). */
export function presenceThreshold(flag: string): (value: string) => number {
  return decimal(flag, { min: 0, max: 1, maxExclusive: true });
}

/** A fraction in (0, 1], e.g. an accuracy to reach. */
export function fraction(flag: string): (value: string) => number {
  return decimal(flag, { min: 0, max: 1, minExclusive: true });
}

/**
 * A comma-separated list of names from `names` (or `all`, every one), e.g. `capsnet parity --devices node-cpu,node-wasm`;
 * an unknown or missing name is a usage error listing the choices.
 */
export function nameList(flag: string, names: readonly string[], what: string): (value: string) => string[] {
  return (value: string) => {
    const picked = value
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    if (picked.length === 1 && picked[0] === 'all') return [...names];
    const unknown = picked.filter((n) => !names.includes(n));
    if (picked.length === 0 || unknown.length) {
      throw new InvalidArgumentError(
        `${flag} takes comma-separated ${what} from ${names.join(', ')} (or all)${unknown.length ? `; unknown: ${unknown.join(', ')}` : ''}`,
      );
    }
    return picked;
  };
}

/**
 * `--device`: `auto` or a device of the runtime's device table that runs in Node (onnxruntime-node's, and
 * onnxruntime-web's wasm), the same choices for every command that runs a model.
 */
export function deviceOption(rows: readonly DeviceRow[] = DEVICE_TABLE): Option {
  return new Option('--device <name>', `ONNX Runtime execution provider (auto: the first of ${autoOrder('node', rows).join(', ')} that works here)`)
    .choices(['auto', ...nodeDeviceNames(rows)])
    .default('auto');
}

/** Prints the one-line note for a flag kept under its old name. */
export function deprecatedFlag(command: string, old: string, now: string): void {
  console.error(`capsnet ${command}: ${old} is deprecated, use ${now} (it takes the same values)`);
}
