// What the console makes of stored lines: the item each line holds, the
// numeric fields it can plot, the time it carries, and the images in it.
// Pure functions, no DOM.

// One stored line -> {seq, line, value, ok}; `value` is the parsed JSON
// (undefined when the line is not JSON, which a store never holds but a
// console should survive).
export function parseLine(line, seq) {
  try {
    return {seq, line, value: JSON.parse(line), ok: true};
  } catch (e) {
    return {seq, line, value: undefined, ok: false};
  }
}

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

// The numeric fields of an item, as [name, number] pairs: a bare number is
// "value"; an object's number fields, one level of nesting as "outer.inner";
// `timestamp` is the x axis, not a series.
export function numericFields(value) {
  if (typeof value === 'number' && Number.isFinite(value)) return [['value', value]];
  if (!isPlainObject(value)) return [];
  const fields = [];
  for (const [name, field] of Object.entries(value)) {
    if (name === 'timestamp') continue;
    if (typeof field === 'number' && Number.isFinite(field)) {
      fields.push([name, field]);
    } else if (isPlainObject(field)) {
      for (const [inner, x] of Object.entries(field))
        if (typeof x === 'number' && Number.isFinite(x)) fields.push([`${name}.${inner}`, x]);
    }
  }
  return fields;
}

// The item's time in milliseconds since the epoch, from its `timestamp`
// field: a number of seconds (or of milliseconds when it is that large),
// or a date string; null when it has none.
export function itemTime(value) {
  if (!isPlainObject(value) || !('timestamp' in value)) return null;
  const t = value.timestamp;
  if (typeof t === 'number' && Number.isFinite(t)) return t > 1e11 ? t : t * 1000;
  if (typeof t === 'string') {
    const parsed = Date.parse(t);
    if (!Number.isNaN(parsed)) return parsed;
    if (/^\d+(\.\d+)?$/.test(t)) return itemTime({timestamp: Number(t)});
  }
  return null;
}

const DATA_URL = /^data:image\/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/]+=*$/;
const BASE64 = /^[A-Za-z0-9+/]+=*$/;

// A data: URL for `text` when it is an image: a base64 data: URL of PNG,
// JPEG, GIF or WebP, or bare base64 whose bytes start like a PNG or JPEG
// file. null otherwise.
export function imageUrl(text) {
  if (typeof text !== 'string' || text.length < 16) return null;
  const compact = text.replace(/\s+/g, '');
  if (compact.startsWith('data:')) return DATA_URL.test(compact) ? compact : null;
  if (!BASE64.test(compact)) return null;
  if (compact.startsWith('iVBORw0KGgo')) return `data:image/png;base64,${compact}`;
  if (compact.startsWith('/9j/')) return `data:image/jpeg;base64,${compact}`;
  return null;
}

// The columns of a table of items: the fields of the objects among them in
// order of first appearance (at most `max`), or [] when none is an object.
export function columnsOf(items, max = 8) {
  const columns = [];
  for (const item of items) {
    if (!isPlainObject(item.value)) continue;
    for (const name of Object.keys(item.value)) {
      if (!columns.includes(name)) columns.push(name);
      if (columns.length >= max) return columns;
    }
  }
  return columns;
}

// Text for one cell: strings as they are, other values as JSON, cut to
// `max` characters.
export function cellText(value, max = 120) {
  if (value === undefined) return '';
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > max ? text.slice(0, max - 1) + '…' : text;
}

// "1.2 KiB" for 1234.
export function formatBytes(bytes) {
  const n = Number(bytes);
  if (!Number.isFinite(n)) return String(bytes);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n, unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

// "3 min ago" / "in 42 s" from a time in milliseconds relative to `now`.
export function relativeTime(ms, now = Date.now()) {
  const seconds = Math.round((ms - now) / 1000);
  const abs = Math.abs(seconds);
  let text;
  if (abs < 60) text = `${abs} s`;
  else if (abs < 3600) text = `${Math.round(abs / 60)} min`;
  else if (abs < 86400) text = `${Math.round(abs / 3600)} h`;
  else text = `${Math.round(abs / 86400)} d`;
  return seconds < 0 ? `${text} ago` : seconds === 0 ? 'now' : `in ${text}`;
}
