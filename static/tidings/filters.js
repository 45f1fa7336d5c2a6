/**
 * PostgREST-style filters (`gte.5`, `in.(a,"b, c")`, `is.null`) read and applied exactly as the
 * server reads them (feed/filters.py): values typed by column type, datetimes in UTC at
 * millisecond precision, `in.` lists split CSV-style, SQL semantics for nulls.
 */

import { FilterError } from "./errors.js";
import { parseDate, parseDatetime } from "./datetime.js";

const COMPARISONS = {
  eq: (order) => order === 0,
  neq: (order) => order !== 0,
  lt: (order) => order < 0,
  lte: (order) => order <= 0,
  gt: (order) => order > 0,
  gte: (order) => order >= 0,
};
const IS_VALUES = { null: null, true: true, false: false };
// Column types are not known yet: check the grammar only.
const UNTYPED = Symbol("untyped");
const INTEGER = /^[+-]?\d(?:_?\d)*$/;
const NUMBER = /^[+-]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d(?:_?\d)*)?$/;
// The spaces Python's int() and float() ignore around a number (not \x1c-\x1f, unlike strip()).
const SPACE = /^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;

function refusal(code, message, details) {
  return new FilterError(400, { error: code, message, details });
}

function invalid(message, details) {
  return refusal("invalid_filter", message, details);
}

/** Write a string as Python's repr() does, as the server's messages quote values. */
function pyRepr(text) {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of text) {
    const code = ch.codePointAt(0);
    if (ch === quote || ch === "\\") out += `\\${ch}`;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch !== " " && /[\p{C}\p{Z}]/u.test(ch)) {
      const [prefix, width] = code < 0x100 ? ["x", 2] : code < 0x10000 ? ["u", 4] : ["U", 8];
      out += `\\${prefix}${code.toString(16).padStart(width, "0")}`;
    } else out += ch;
  }
  return out + quote;
}

/** Split the inside of `in.(...)` like Python's csv reader with skipinitialspace; null if malformed. */
function splitItems(text) {
  const items = [];
  let field = "";
  let state = "start";
  for (const ch of text) {
    const newline = ch === "\n" || ch === "\r";
    // An unquoted line break ends the record: only more line breaks may follow it.
    if (state === "ended" && !newline) return null;
    if (state === "ended" || (newline && state !== "quoted")) state = "ended";
    else if (state === "quoted") {
      if (ch === '"') state = "quote";
      else field += ch;
    } else if (ch === ",") {
      items.push(field);
      [field, state] = ["", "start"];
    } else if (state === "start" && ch === '"') state = "quoted";
    else if (state === "quote" && ch === '"') [field, state] = [field + ch, "quoted"];
    else if (state !== "start" || ch !== " ") [field, state] = [field + ch, "field"];
  }
  items.push(field);
  return items.filter((item) => item !== "");
}

function untyped(text) {
  try {
    const value = JSON.parse(text);
    return value !== null && typeof value === "object" ? text : value;
  } catch {
    return text;
  }
}

function coerce(kind, text, column) {
  if (kind === null) return untyped(text);
  const misfit = () =>
    refusal("invalid_filter", `Filter value ${pyRepr(text)} does not fit column ${pyRepr(column)} (${kind}).`, {
      column,
      value: text,
    });
  const bare = text.replace(SPACE, "");
  try {
    if (kind === "integer") {
      if (!INTEGER.test(bare)) throw misfit();
      return Number(bare.replaceAll("_", ""));
    }
    if (kind === "number") {
      const number = NUMBER.test(bare) ? Number(bare.replaceAll("_", "")) : NaN;
      if (!Number.isFinite(number)) throw misfit();
      return number;
    }
    if (kind === "boolean") {
      if (text !== "true" && text !== "false") throw misfit();
      return text === "true";
    }
    if (kind === "datetime") return parseDatetime(text);
    if (kind === "date") return parseDate(text);
  } catch (error) {
    throw error instanceof FilterError ? error : misfit();
  }
  return text;
}

/** Return the type of a table's column, or throw the server's unknown_column refusal. */
function columnType(table, column) {
  const found = table.columns.find((c) => c.name === column);
  if (!found) {
    throw refusal("unknown_column", `Table ${table.name} has no column ${pyRepr(column)}.`, {
      table: table.name,
      column,
    });
  }
  return found.type;
}

/**
 * Parse `op.value` for a column into a condition `{column, op, value, test(row)}`, or throw a
 * FilterError worded as the server's 400. `table` is the table's description from
 * GET /api/tables (values typed by column), `null` for a custom topic (JSON scalars), or
 * UNTYPED to check the grammar alone.
 */
export function parseCondition(column, expression, table = UNTYPED) {
  const kind = table === UNTYPED ? UNTYPED : table === null ? null : columnType(table, column);
  const dot = expression.indexOf(".");
  const op = dot < 0 ? expression : expression.slice(0, dot);
  const text = dot < 0 ? "" : expression.slice(dot + 1);
  if (dot < 0) throw invalid(`Filter on ${pyRepr(column)} must look like op.value, e.g. eq.5.`, { column, filter: expression });
  if (!Object.hasOwn(COMPARISONS, op) && op !== "in" && op !== "is") {
    throw invalid(`Unknown filter operator ${pyRepr(op)}; use eq, neq, lt, lte, gt, gte, in or is.`, { column, op });
  }
  if (op === "is") {
    if (!Object.hasOwn(IS_VALUES, text)) throw invalid(`is. takes null, true or false, not ${pyRepr(text)}.`, { column, value: text });
    if (text !== "null" && kind !== UNTYPED && kind !== null && kind !== "boolean") {
      throw invalid(`is.${text} needs a boolean column; ${pyRepr(column)} is ${kind}.`, { column, value: text });
    }
    return condition(column, op, IS_VALUES[text]);
  }
  if (kind === "json") throw invalid(`Column ${pyRepr(column)} holds JSON; it can only be filtered with is.null.`, { column, op });
  const typed = (item) => (kind === UNTYPED ? item : coerce(kind, item, column));
  if (op === "in") {
    if (!(text.startsWith("(") && text.endsWith(")"))) throw invalid("in. takes a list like in.(1,2,3).", { column, value: text });
    const items = splitItems(text.slice(1, -1));
    if (items === null) throw invalid(`The in. list for ${pyRepr(column)} is malformed.`, { column, value: text });
    return condition(column, op, items.map(typed));
  }
  return condition(column, op, typed(text));
}

/** Compare two JSON values as Python does: -1, 0, 1, or null when they do not order. */
function compare(a, b) {
  const numeric = (v) => typeof v === "number" || typeof v === "boolean";
  if (numeric(a) && numeric(b)) return Math.sign(Number(a) - Number(b));
  if (typeof a !== "string" || typeof b !== "string") return null;
  // By code point, as Python and SQLite do; JavaScript's < compares UTF-16 units.
  const shorter = Math.min(a.length, b.length);
  let i = 0;
  while (i < shorter && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i === shorter ? Math.sign(a.length - b.length) : Math.sign(a.codePointAt(i) - b.codePointAt(i));
}

function condition(column, op, value) {
  const test = (row) => {
    if (row == null) return false;
    const actual = Object.hasOwn(row, column) ? (row[column] ?? null) : null;
    if (op === "is") return actual === value;
    if (actual === null) return false;
    if (op === "in") return value.some((item) => compare(actual, item) === 0);
    const order = compare(actual, value);
    // Values that do not order are unequal, as in Python.
    if (order === null) return op === "neq";
    return COMPARISONS[op](order);
  };
  return { column, op, value, test };
}

/** Parse a filter `{column: "op.value" | ["op.value", ...]}` into its conditions. */
export function parseFilter(filter = {}, table = UNTYPED) {
  return Object.entries(filter).flatMap(([column, tests]) =>
    [].concat(tests).map((expression) => parseCondition(column, expression, table)),
  );
}

/**
 * Tell whether a row passes every test of a filter. Give the table's description from
 * GET /api/tables to type values as the server does; without it values read as JSON scalars.
 */
export function matches(row, filter = {}, table = null) {
  return row != null && parseFilter(filter, table).every((c) => c.test(row));
}
