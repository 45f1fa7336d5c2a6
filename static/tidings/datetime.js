/**
 * ISO 8601 dates and datetimes read the way the server reads them (Python's `fromisoformat`),
 * written in the feed's JSON form: UTC, milliseconds, `Z`.
 */

const DATE = /^(\d{4})(?:-(\d{2})-(\d{2})|(\d{2})(\d{2})|(-?)W(\d{2})(?:\6(\d))?)/;
const DAY_MS = 86_400_000;

function invalid(text) {
  return new RangeError(`Invalid isoformat string: ${text}`);
}

function daysIn(year, month) {
  return new Date(dayMs(year, month + 1, 0)).getUTCDate();
}

/** Return the UTC midnight of a calendar day in ms (years below 100 included). */
function dayMs(year, month, day) {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  return date.getTime();
}

function weekDayMs(year, week, weekday, text) {
  const jan4 = dayMs(year, 1, 4);
  const weekOne = jan4 - ((new Date(jan4).getUTCDay() + 6) % 7) * DAY_MS;
  const nextWeekOne = dayMs(year + 1, 1, 4) - ((new Date(dayMs(year + 1, 1, 4)).getUTCDay() + 6) % 7) * DAY_MS;
  const weeks = (nextWeekOne - weekOne) / (7 * DAY_MS);
  if (week < 1 || week > weeks || weekday < 1 || weekday > 7) throw invalid(text);
  return weekOne + ((week - 1) * 7 + weekday - 1) * DAY_MS;
}

/** Read the date at the start of `text`; return its UTC midnight in ms and its length. */
function readDate(text) {
  const match = DATE.exec(text);
  if (!match) throw invalid(text);
  const year = Number(match[1]);
  if (year < 1) throw invalid(text);
  if (match[7] !== undefined) {
    return { ms: weekDayMs(year, Number(match[7]), Number(match[8] ?? 1), text), length: match[0].length };
  }
  const month = Number(match[2] ?? match[4]);
  const day = Number(match[3] ?? match[5]);
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) throw invalid(text);
  return { ms: dayMs(year, month, day), length: match[0].length };
}

/**
 * Read `HH[:MM[:SS[.ffffff]]]` (or without colons) as CPython's parse_hh_mm_ss_ff does, quirks
 * included; return `{fields: [hour, minute, second], micros, rest}`, `rest` telling whether text
 * was left over (which only an offset after it excuses).
 */
function readTime(text, whole) {
  const values = [0, 0, 0];
  let p = 0;
  let separated = true;
  let fraction = false;
  for (let i = 0; i < 3; i++) {
    if (!/^\d\d/.test(text.slice(p, p + 2))) throw invalid(whole);
    values[i] = Number(text.slice(p, p + 2));
    p += 2;
    const c = text[p++];
    if (i === 0) separated = c === ":";
    if (p >= text.length) return { fields: values, micros: 0, rest: p === text.length };
    if (separated && c === ":") continue;
    if (c === "." || c === ",") {
      fraction = true;
      break;
    }
    if (separated) throw invalid(whole);
    p--;
  }
  // Without separators the fraction may follow the seconds directly ("09301555" is 09:30:15.55).
  const digits = text.slice(p, p + 6);
  if (!/^\d*$/.test(digits) || (!fraction && !digits)) throw invalid(whole);
  let end = p + digits.length;
  while (/\d/.test(text[end] ?? "")) end++;
  return { fields: values, micros: Number(digits.padEnd(6, "0")), rest: end < text.length };
}

function toMicros({ fields: [hour, minute, second], micros }) {
  return ((hour * 60 + minute) * 60 + second) * 1_000_000 + micros;
}

/** Read a UTC offset `±HH[:MM[:SS[.ffffff]]]` as Python does (like a time); return microseconds. */
function readOffset(text, whole) {
  const offset = readTime(text.slice(1), whole);
  // Python checks only the whole offset, not its fields ("+01:60" is two hours).
  if (offset.rest || toMicros(offset) >= DAY_MS * 1000) throw invalid(whole);
  return text[0] === "-" ? -toMicros(offset) : toMicros(offset);
}

function pad(number, width) {
  return String(number).padStart(width, "0");
}

/** Format ms since the epoch as the feed's datetime form, `2026-01-01T09:30:00.500Z`. */
export function isoDatetime(ms) {
  const date = new Date(Math.floor(ms));
  if (!(date.getUTCFullYear() >= 1 && date.getUTCFullYear() <= 9999)) throw new RangeError("year is out of range");
  const day = `${pad(date.getUTCFullYear(), 4)}-${pad(date.getUTCMonth() + 1, 2)}-${pad(date.getUTCDate(), 2)}`;
  const time = `${pad(date.getUTCHours(), 2)}:${pad(date.getUTCMinutes(), 2)}:${pad(date.getUTCSeconds(), 2)}`;
  return `${day}T${time}.${pad(date.getUTCMilliseconds(), 3)}Z`;
}

/** Read an ISO 8601 datetime or date; return it as UTC at millisecond precision, in JSON form. */
export function parseDatetime(text) {
  const whole = text.replaceAll("Z", "+00:00");
  const { ms: day, length } = readDate(whole);
  if (length === whole.length) return isoDatetime(day);
  const rest = whole.slice(length + 1);
  if (!rest) throw invalid(text);
  const sign = rest.search(/[+-]/);
  const time = readTime(sign < 0 ? rest : rest.slice(0, sign), text);
  const [hour, minute, second] = time.fields;
  if ((time.rest && sign < 0) || hour > 23 || minute > 59 || second > 59) throw invalid(text);
  const offset = sign < 0 ? 0 : readOffset(rest.slice(sign), text);
  // In microseconds, then down to milliseconds: the server shifts by the offset first.
  return isoDatetime(day + Math.floor((toMicros(time) - offset) / 1000));
}

/** Read an ISO 8601 calendar or week date; return it as `YYYY-MM-DD`. */
export function parseDate(text) {
  const { ms, length } = readDate(text);
  if (length !== text.length) throw invalid(text);
  return isoDatetime(ms).slice(0, 10);
}
