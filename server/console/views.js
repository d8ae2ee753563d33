// The console's views. Each renders into `main` and returns a function that
// stops its timers and requests. Text goes in through textContent and
// attributes through setAttribute, never as HTML: stored lines are
// untrusted.
import {ApiError, listDevices, listKeys, readLines, saveSession} from './api.js';
import {
  cellText, columnsOf, formatBytes, imageUrl, itemTime, numericFields, parseLine, relativeTime,
} from './items.js';

// h('p', {class: 'x'}, 'text', child, ...): an element.
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    element.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

const statusLine = () => document.getElementById('status');
function announce(text) {
  statusLine().textContent = text;
}

function errorText(error) {
  if (error instanceof ApiError) {
    if (error.status === 401 || error.status === 403) return `Not allowed (${error.code || error.status}): ${error.message}. Sign in again with the bucket's access key.`;
    return `${error.code || 'error'} (HTTP ${error.status}): ${error.message}`;
  }
  return `Cannot reach the server: ${error.message}`;
}

function errorBox(error) {
  return h('p', {class: 'error', role: 'alert'}, errorText(error));
}

function timeText(ms) {
  if (!Number.isFinite(ms) || ms <= 0) return '—';
  return `${new Date(ms).toLocaleString()} (${relativeTime(ms)})`;
}

function codeBlock(text, label) {
  return h('pre', {class: 'code', tabindex: 0, 'aria-label': label}, h('code', {}, text));
}

// The landing page: what this is and how to write to it.
export function aboutView(main, current) {
  const origin = location.origin;
  const bucket = current ? current.bucket : 'homelab';
  const write = `curl -X POST "${origin}/write/v3/bucket/${bucket}/outdoors_temp1" \\
  -H "Content-Type: application/json" \\
  -d '{"accessKey":"<access key of ${bucket}>","deviceId":"outdoors_u871a",
       "data":{"timestamp":${Math.floor(Date.now() / 1000)},"temperature":4.7}}'
# {"ok":true,"items":1}`;
  const read = `curl -H "Authorization: Bearer <access key of ${bucket}>" \\
  "${origin}/read/v3/bucket/${bucket}/outdoors_temp1?tail=10"`;
  main.append(
      h('h1', {}, 'writeapi'),
      h('p', {class: 'lead'},
        'This server stores sensor readings sent to its Write API, one JSON Lines object per ',
        h('code', {}, '<bucket>/<key>'), '. Each item of a request becomes one line.'),
      h('h2', {}, 'Write to it'),
      h('p', {}, 'Send a reading with the bucket\'s access key (every item of ', h('code', {}, 'data'),
        ', or each element when it is an array, is stored as one line):'),
      codeBlock(write, 'Example: write a reading with curl'),
      h('h2', {}, 'Read it back'),
      h('p', {}, 'The Read API takes the same key as a Bearer credential:'),
      codeBlock(read, 'Example: read the last lines with curl'),
      h('h2', {}, 'See it here'),
      current ?
          h('p', {}, 'Signed in to bucket ', h('strong', {}, current.bucket), ': ', h('a', {href: '#/keys'}, 'its keys'),
            ' or ', h('a', {href: '#/devices'}, 'its devices'), '.') :
          h('p', {}, h('a', {href: '#/sign-in', class: 'button'}, 'Sign in'),
            ' with a bucket and its access key to see its keys, live charts of each key, and which devices the ' +
                'rate limiter holds back. The key stays in this tab only (session storage).'));
  return null;
}

export function signInView(main, onSignedIn) {
  const error = h('div', {id: 'sign-in-error'});
  const bucket = h('input', {
    id: 'bucket', name: 'bucket', type: 'text', required: true, autocomplete: 'username', spellcheck: 'false',
    autocapitalize: 'none', pattern: '[A-Za-z0-9_\\-][A-Za-z0-9._\\-]{0,127}', 'aria-describedby': 'bucket-help',
  });
  const key = h('input', {
    id: 'access-key', name: 'accessKey', type: 'password', required: true, autocomplete: 'current-password',
    spellcheck: 'false', autocapitalize: 'none',
  });
  const submit = h('button', {type: 'submit', id: 'sign-in-submit'}, 'Sign in');
  const form = h('form', {class: 'card', id: 'sign-in-form', novalidate: false},
                 h('div', {class: 'field'}, h('label', {for: 'bucket'}, 'Bucket'), bucket,
                   h('small', {id: 'bucket-help'}, 'The name in /write/v3/bucket/<bucket>/…')),
                 h('div', {class: 'field'}, h('label', {for: 'access-key'}, 'Access key'), key), submit, error);
  const controller = new AbortController();
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = bucket.value.trim();
    const accessKey = key.value.trim();
    if (!name || !accessKey) return;
    submit.disabled = true;
    error.replaceChildren();
    announce('Signing in…');
    try {
      // The key is right when it can list the bucket.
      await listKeys(name, {accessKey, signal: controller.signal});
      saveSession(name, accessKey);
      announce(`Signed in to bucket ${name}.`);
      onSignedIn();
    } catch (e) {
      if (e.name === 'AbortError') return;
      error.replaceChildren(errorBox(e));
      announce('Sign in failed.');
      key.focus();
    } finally {
      submit.disabled = false;
    }
  });
  main.append(h('h1', {}, 'Sign in'),
              h('p', {}, 'Use a bucket name and one of its access keys (the keys file\'s). The key is sent as ',
                h('code', {}, 'Authorization: Bearer'), ' and kept in this tab only.'),
              form);
  bucket.focus();
  return () => controller.abort();
}

export function keysView(main, current) {
  const controller = new AbortController();
  const body = h('div', {id: 'keys-body'}, h('p', {}, 'Loading…'));
  const refresh = h('button', {type: 'button', id: 'keys-refresh'}, 'Refresh');
  main.append(h('div', {class: 'title-row'}, h('h1', {}, `Keys of ${current.bucket}`), refresh), body);
  async function load() {
    try {
      const keys = await listKeys(current.bucket, {signal: controller.signal});
      if (!keys.length) {
        body.replaceChildren(h('p', {}, 'Nothing stored in this bucket yet. ', h('a', {href: '#/'}, 'How to write'),
                               '.'));
        return;
      }
      const rows = keys.map(
          (k) => h('tr', {},
                   h('th', {scope: 'row'}, h('a', {href: `#/key/${encodeURIComponent(k.key)}`}, k.key)),
                   h('td', {class: 'num'}, formatBytes(k.bytes)),
                   h('td', {}, h('time', {datetime: k.modified || ''}, timeText(Date.parse(k.modified))))));
      body.replaceChildren(h('div', {class: 'table-wrap'},
                             h('table', {id: 'keys-table'}, h('caption', {}, `${keys.length} keys`),
                               h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Key'),
                                                h('th', {scope: 'col', class: 'num'}, 'Size'),
                                                h('th', {scope: 'col'}, 'Last write'))),
                               h('tbody', {}, rows))));
      announce(`${keys.length} keys in ${current.bucket}.`);
    } catch (e) {
      if (e.name !== 'AbortError') body.replaceChildren(errorBox(e));
    }
  }
  refresh.addEventListener('click', load);
  load();
  return () => controller.abort();
}

// Points kept per chart; the oldest go first.
const MAX_ITEMS = 5000;
// Rows of the table of latest lines.
const TABLE_ROWS = 20;
// Long-poll: seconds the server may hold a read; backoff after errors.
const WAIT_SECONDS = 25;
const MAX_BACKOFF_MS = 30000;
const COLORS = ['#1f6feb', '#d1242f', '#1a7f37', '#9a6700', '#8250df', '#bf3989', '#0a7ea4', '#6e7781'];

// An x-axis label: the time of day, with the date when the axis spans more
// than a day (`this` is the scale); arrival order as it is.
function timeTick(value) {
  if (this.options.title.text !== 'timestamp') return value;
  const date = new Date(value);
  return this.max - this.min > 86400000 ? [date.toLocaleDateString(), date.toLocaleTimeString()] :
                                          date.toLocaleTimeString();
}

export function keyView(main, current, key) {
  const controller = new AbortController();
  const live = h('span', {id: 'live', class: 'live'}, 'Loading…');
  const charts = h('div', {id: 'charts', class: 'charts'});
  const latest = h('div', {id: 'latest'});
  main.append(h('p', {class: 'crumbs'}, h('a', {href: '#/keys'}, `← Keys of ${current.bucket}`)),
              h('div', {class: 'title-row'}, h('h1', {}, key), live),
              h('section', {'aria-labelledby': 'charts-title'}, h('h2', {id: 'charts-title'}, 'Numeric fields'),
                charts),
              h('section', {'aria-labelledby': 'latest-title'}, h('h2', {id: 'latest-title'}, 'Latest lines'),
                latest));

  const items = [];  // {seq, line, value, ok}, oldest first
  let seq = 0;
  let timeMode = null;  // x axis: true = item timestamps, false = arrival order
  const plots = new Map();  // field -> Chart
  let stopped = false;

  function xOf(item) {
    return timeMode ? itemTime(item.value) : item.seq;
  }

  function buildCharts() {
    for (const chart of plots.values()) chart.destroy();
    plots.clear();
    charts.replaceChildren();
    const fields = new Map();
    for (const item of items)
      for (const [name, y] of numericFields(item.value)) {
        if (!fields.has(name)) {
          if (fields.size >= COLORS.length) continue;
          fields.set(name, []);
        }
        fields.get(name).push({x: xOf(item), y});
      }
    if (!fields.size) {
      charts.append(h('p', {}, items.length ? 'No numeric field in these lines.' : 'No lines yet.'));
      return;
    }
    if (!window.Chart) {
      charts.append(h('p', {class: 'error'}, 'Chart.js did not load.'));
      return;
    }
    let index = 0;
    for (const [name, points] of fields) {
      const canvas = h('canvas', {
        id: `chart-${index}`, 'data-field': name, role: 'img',
        'aria-label': `Line chart of ${name} against ${timeMode ? 'timestamp' : 'arrival order'}`,
      });
      charts.append(h('figure', {class: 'chart'}, h('figcaption', {}, name), h('div', {class: 'chart-box'}, canvas)));
      plots.set(name, new window.Chart(canvas, chartConfig(name, points, COLORS[index % COLORS.length])));
      index++;
    }
  }

  function chartConfig(name, points, color) {
    return {
      type: 'line',
      data: {datasets: [{label: name, data: points, borderColor: color, backgroundColor: color, borderWidth: 1.5,
                         pointRadius: points.length > 200 ? 0 : 2, tension: 0}]},
      options: {
        // Not `normalized`: devices may send timestamps out of order.
        animation: false, parsing: false, responsive: true, maintainAspectRatio: false,
        interaction: {mode: 'nearest', axis: 'x', intersect: false},
        scales: {
          x: {type: 'linear', title: {display: true, text: timeMode ? 'timestamp' : 'arrival order'},
              ticks: {maxTicksLimit: 6, callback: timeTick}},
          y: {title: {display: false}},
        },
        plugins: {
          legend: {display: false},
          tooltip: {callbacks: {title: (ctx) => ctx.length ? (timeMode ? new Date(ctx[0].parsed.x).toLocaleString() :
                                                                    `item ${ctx[0].parsed.x}`) : ''}},
        },
      },
    };
  }

  // Adds the new items' points to the charts, or rebuilds them when a new
  // field or a change of axis appears.
  function plot(added) {
    const allTimed = items.every((item) => itemTime(item.value) !== null);
    if (timeMode !== allTimed || plots.size === 0) {
      timeMode = allTimed;
      buildCharts();
      return;
    }
    let rebuild = false;
    for (const item of added)
      for (const [name] of numericFields(item.value))
        if (!plots.has(name) && plots.size < COLORS.length) rebuild = true;
    if (rebuild) {
      buildCharts();
      return;
    }
    for (const item of added)
      for (const [name, y] of numericFields(item.value)) {
        const chart = plots.get(name);
        if (chart) chart.data.datasets[0].data.push({x: xOf(item), y});
      }
    const first = items.length ? items[0].seq : 0;
    for (const chart of plots.values()) {
      const data = chart.data.datasets[0].data;
      // Items dropped from the front (MAX_ITEMS) leave the charts too.
      if (!timeMode) while (data.length && data[0].x < first) data.shift();
      while (data.length > MAX_ITEMS) data.shift();
      chart.update('none');
    }
  }

  function renderTable() {
    const rows = items.slice(-TABLE_ROWS).reverse();
    if (!rows.length) {
      latest.replaceChildren(h('p', {}, 'No lines yet; new ones appear here as they are written.'));
      return;
    }
    const columns = columnsOf(rows);
    const header = columns.length ? columns : ['value'];
    const cell = (value, name, item) => {
      const url = imageUrl(value);
      if (url) return h('td', {}, h('img', {src: url, alt: `image in ${name} of item ${item.seq}`, class: 'thumb'}));
      if (name === 'timestamp') {
        // The time as stored, and as a date.
        const ms = itemTime(item.value);
        return h('td', {}, cellText(value), ms === null ? null : h('small', {class: 'when'}, new Date(ms).toLocaleString()));
      }
      return h('td', {class: typeof value === 'number' ? 'num' : null}, cellText(value));
    };
    const body = rows.map((item) => {
      let cells;
      if (!item.ok) cells = [h('td', {colspan: header.length}, cellText(item.line))];
      else if (columns.length && item.value !== null && typeof item.value === 'object' && !Array.isArray(item.value))
        cells = columns.map((name) => cell(item.value[name], name, item));
      else if (columns.length) cells = [h('td', {colspan: header.length}, cellText(item.value))];
      else cells = [cell(item.value, 'value', item)];
      return h('tr', {}, h('th', {scope: 'row', class: 'num'}, String(item.seq)), cells);
    });
    latest.replaceChildren(h('div', {class: 'table-wrap'},
                             h('table', {id: 'latest-table'},
                               h('caption', {}, `Last ${rows.length} of ${items.length} lines loaded, newest first`),
                               h('thead', {}, h('tr', {}, h('th', {scope: 'col', class: 'num'}, '#'),
                                                header.map((name) => h('th', {scope: 'col'}, name)))),
                               h('tbody', {}, body))));
  }

  function add(lines) {
    const added = lines.map((line) => parseLine(line, ++seq));
    items.push(...added);
    if (items.length > MAX_ITEMS) items.splice(0, items.length - MAX_ITEMS);
    plot(added);
    renderTable();
    main.setAttribute('data-items', String(seq));
  }

  function setLive(text, state) {
    live.textContent = text;
    live.setAttribute('data-state', state);
  }

  async function run() {
    let cursor = '';
    try {
      const first = await readLines(current.bucket, key, {tail: 1000}, {signal: controller.signal});
      cursor = first.cursor;
      add(first.lines);
    } catch (e) {
      if (e.name === 'AbortError') return;
      if (!(e instanceof ApiError && e.status === 404)) {
        latest.replaceChildren(errorBox(e));
        setLive('Error', 'error');
        return;
      }
      add([]);  // not written yet: wait for its first line
    }
    let backoff = 1000;
    while (!stopped) {
      setLive(`Live · ${items.length} lines`, 'live');
      try {
        const next = await readLines(current.bucket, key, {cursor, wait: WAIT_SECONDS, limit: 1000},
                                     {signal: controller.signal});
        if (next.lines.length) add(next.lines);
        cursor = next.cursor;
        backoff = 1000;
      } catch (e) {
        if (e.name === 'AbortError' || stopped) return;
        if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
          latest.prepend(errorBox(e));
          setLive('Stopped', 'error');
          return;
        }
        if (e instanceof ApiError && e.status === 404) {
          // Not written yet: look again every 2 s for its first line.
          setLive('Waiting for the first line', 'retry');
          await new Promise((resolve) => setTimeout(resolve, 2000));
          continue;
        }
        // A restart, a network error, too many long-polls (503): try again
        // later, waiting longer each time.
        setLive(`Reconnecting in ${Math.round(backoff / 1000)} s (${e instanceof ApiError ? e.code || e.status : 'offline'})`, 'retry');
        await new Promise((resolve) => setTimeout(resolve, backoff));
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }
  }
  run();
  return () => {
    stopped = true;
    controller.abort();
    for (const chart of plots.values()) chart.destroy();
  };
}

// A device entry of GET /devices/v3/bucket/<bucket> -> {id, state,
// secondsLeft, budget, tokens, requests, refused}; the names of the
// optional fields are taken in both spellings.
function deviceOf(d) {
  const first = (...names) => {
    for (const name of names) if (d[name] !== undefined && d[name] !== null) return d[name];
    return undefined;
  };
  let limit = first('limit', 'budget');
  if (limit === undefined && first('rate') !== undefined) limit = {rate: first('rate'), burst: first('burst')};
  const number = (x) => (typeof x === 'number' ? x.toLocaleString() : x ?? '?');
  const budget =
      limit && typeof limit === 'object' ? `${number(limit.rate)}/s, burst ${number(limit.burst)}` : limit;
  const id = first('device_id', 'deviceId', 'device', 'id');
  return {
    id: id === undefined || id === '' ? '' : String(id),
    state: String(first('state', 'status') ?? 'ok'),
    secondsLeft: Number(first('seconds_left', 'secondsLeft', 'retry_after', 'retryAfter')),
    budget: budget === undefined ? '—' : String(budget),
    tokens: first('tokens') ?? (limit && typeof limit === 'object' ? limit.tokens : undefined),
    requests: first('recent_requests', 'recentRequests', 'requests'),
    refused: first('recent_refusals', 'recentRefusals', 'refusals', 'refused'),
  };
}

export function devicesView(main, current) {
  const controller = new AbortController();
  const body = h('div', {id: 'devices-body'}, h('p', {}, 'Loading…'));
  const refresh = h('button', {type: 'button', id: 'devices-refresh'}, 'Refresh');
  main.append(h('div', {class: 'title-row'}, h('h1', {}, `Devices of ${current.bucket}`), refresh),
              h('p', {}, 'The devices the rate limiter tracks for this bucket: a device over its budget is ',
                h('em', {}, 'rate limited'), '; one that keeps on is ', h('em', {}, 'suspended'),
                ' for a while (every request refused with 429 until then); a blocked one is refused by the keys file.'),
              body);
  let timer = null;
  async function load() {
    clearTimeout(timer);
    try {
      const devices = (await listDevices(current.bucket, {signal: controller.signal})).map(deviceOf);
      const now = Date.now();
      if (!devices.length) {
        body.replaceChildren(h('p', {}, 'No device seen recently.'));
      } else {
        const rows = devices.map((d) => {
          const until = d.state === 'suspended' || d.state === 'rate_limited';
          const left = Number.isFinite(d.secondsLeft) && d.secondsLeft > 0 ? d.secondsLeft : null;
          const when = until && left !== null ?
              h('time', {datetime: new Date(now + left * 1000).toISOString()},
                `${new Date(now + left * 1000).toLocaleTimeString()} (${left} s left)`) :
              '—';
          return h('tr', {'data-device': d.id, 'data-state': d.state},
                   h('th', {scope: 'row'}, d.id || h('em', {}, 'without deviceId (shared)')),
                   h('td', {}, h('span', {class: `badge state-${d.state}`}, d.state.replace('_', ' '))),
                   h('td', {}, when), h('td', {}, d.budget),
                   h('td', {class: 'num'}, d.tokens === undefined ? '—' : Math.floor(Number(d.tokens)).toLocaleString()),
                   h('td', {class: 'num'}, d.requests ?? '—'),
                   h('td', {class: 'num'}, d.refused ?? '—'));
        });
        body.replaceChildren(h('div', {class: 'table-wrap'},
                               h('table', {id: 'devices-table'},
                                 h('caption', {}, `${devices.length} devices, updated ${new Date(now).toLocaleTimeString()}`),
                                 h('thead', {}, h('tr', {}, ['Device', 'State', 'Until', 'Budget', 'Tokens', 'Requests (60 s)', 'Refused (60 s)'].map(
                                                                 (name) => h('th', {scope: 'col'}, name)))),
                                 h('tbody', {}, rows))));
      }
    } catch (e) {
      if (e.name === 'AbortError') return;
      body.replaceChildren(errorBox(e));
    }
    timer = setTimeout(load, 5000);
  }
  refresh.addEventListener('click', load);
  load();
  return () => {
    clearTimeout(timer);
    controller.abort();
  };
}
