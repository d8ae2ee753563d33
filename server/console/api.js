// The Read API as the console uses it: the session (bucket and access key,
// in sessionStorage only, so it ends with the tab) and requests carrying the
// key as a Bearer credential, never in a URL.

const SESSION = 'writeapi.session';

export function session() {
  try {
    const value = JSON.parse(sessionStorage.getItem(SESSION) || 'null');
    if (value && typeof value.bucket === 'string' && typeof value.accessKey === 'string') return value;
  } catch (e) {
    // a damaged entry is no session
  }
  return null;
}

export function saveSession(bucket, accessKey) {
  sessionStorage.setItem(SESSION, JSON.stringify({bucket, accessKey}));
}

export function clearSession() {
  sessionStorage.removeItem(SESSION);
}

// An answer other than 2xx: the HTTP status and the server's error code and
// message ({"ok":false,"error":<code>,"message":...}).
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || '';
  }
}

async function request(path, {accessKey, signal} = {}) {
  const key = accessKey ?? session()?.accessKey;
  const headers = {Accept: 'application/json, application/x-ndjson'};
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, {headers, signal, cache: 'no-store', credentials: 'omit'});
  if (!response.ok) {
    let code = '', message = '';
    try {
      const body = await response.json();
      if (typeof body.error === 'string') {
        code = body.error;
        message = body.message || '';
      } else if (body.error && typeof body.error === 'object') {
        code = body.error.code || '';
        message = body.error.message || '';
      }
    } catch (e) {
      // not JSON: the status says enough
    }
    throw new ApiError(response.status, code, message || `${response.status} ${response.statusText}`);
  }
  return response;
}

const enc = encodeURIComponent;

// GET /read/v3/bucket/<bucket>: [{key, bytes, modified}], sorted by key.
export async function listKeys(bucket, options) {
  const response = await request(`/read/v3/bucket/${enc(bucket)}`, options);
  const body = await response.json();
  return Array.isArray(body.keys) ? body.keys : [];
}

// The lines of an NDJSON body (without the empty piece after the last '\n').
function splitLines(text) {
  const lines = text.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

// GET /read/v3/bucket/<bucket>/<key> with `query` (cursor, limit, tail,
// wait): {lines, cursor} where cursor is X-Next-Cursor (or the one sent
// when the server names none).
export async function readLines(bucket, key, query = {}, options = {}) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query))
    if (value !== undefined && value !== null && value !== '') params.set(name, String(value));
  const qs = params.toString();
  const response = await request(`/read/v3/bucket/${enc(bucket)}/${enc(key)}${qs ? '?' + qs : ''}`, options);
  const text = await response.text();
  return {lines: splitLines(text), cursor: response.headers.get('X-Next-Cursor') ?? query.cursor ?? ''};
}

// GET /devices/v3/bucket/<bucket>: the limiter's devices of the bucket.
export async function listDevices(bucket, options) {
  const response = await request(`/devices/v3/bucket/${enc(bucket)}`, options);
  const body = await response.json();
  return Array.isArray(body.devices) ? body.devices : [];
}
