// The monitor page: follows the `monitor` topic like any subscriber, falls back to polling
// /monitor.json, and draws ten minutes of sparklines by hand. No dependencies.

const script = document.currentScript || document.querySelector('script[data-topic]');
const TOPIC = script.dataset.topic;
const JSON_URL = script.dataset.json;
const SELFTEST_URL = script.dataset.selftest;
const HISTORY_MS = 10 * 60 * 1000;

const state = {
  figures: JSON.parse(document.getElementById('figures').textContent),
  history: [],
  live: true,
  source: null,
  pollTimer: null,
};
state.history = state.figures.history || [];

const formats = {
  int: (v) => Math.round(v).toLocaleString('en'),
  percent: (v) => `${(v * 100).toFixed(1)} %`,
  rate: (v) => (v >= 100 ? Math.round(v).toLocaleString('en') : v.toFixed(1)),
  ms: (v) => (v >= 100 ? `${Math.round(v)} ms` : `${v.toFixed(1)} ms`),
  bytes: (v) => (v >= 1048576 ? `${(v / 1048576).toFixed(1)} MiB` : `${(v / 1024).toFixed(1)} KiB`),
  updown: (v) => (v ? 'up' : 'down'),
};

function lookup(object, path) {
  return path.split('.').reduce((value, key) => (value == null ? undefined : value[key]), object);
}

function show(element, value) {
  const format = formats[element.dataset.f];
  const text = value == null ? '–' : format ? format(value) : String(value);
  element.textContent = text;
  if (element.dataset.f === 'updown') element.className = value ? 'up' : 'down';
}

function renderParts(parts) {
  const body = document.getElementById('parts');
  body.replaceChildren(...parts.map((part) => {
    const row = document.createElement('tr');
    row.className = part.score < 1 ? 'weak' : '';
    const value = part.value == null ? '–' : String(part.value);
    for (const text of [part.name, value, `${part.contribution} / ${part.weight}`, part.detail]) {
      const cell = document.createElement('td');
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  }));
}

function spark(svg, points, key) {
  const values = points.map((p) => p[key]).filter((v) => v != null);
  const now = Date.now();
  // A young server fills the width with what it has; ten minutes at most.
  const span = Math.min(HISTORY_MS, Math.max(60_000, points.length ? now - points[0].t * 1000 : 0));
  const coords = points
    .filter((p) => p[key] != null)
    .map((p) => [300 * (1 - (now - p.t * 1000) / span), p[key]]);
  const top = Math.max(...values, key === 'health' ? 100 : 1e-9);
  const line = coords.map(([x, v]) => `${x.toFixed(1)},${(38 - (36 * v) / top).toFixed(1)}`);
  svg.innerHTML = '<line x1="0" y1="39" x2="300" y2="39"></line>'
    + (line.length ? `<polyline points="${line.join(' ')}"></polyline>` : '');
  svg.dataset.points = String(coords.length);
}

function render(figures) {
  state.figures = figures;
  const bytes = Object.values(figures.cache.bytes || {}).reduce((a, b) => a + b, 0);
  const view = { ...figures, cache: { ...figures.cache, bytes_total: bytes } };
  for (const element of document.querySelectorAll('[data-k]')) {
    show(element, lookup(view, element.dataset.k));
  }
  document.querySelector('.status').dataset.status = figures.health.status;
  renderParts(figures.health.parts);
  const cutoff = Date.now() / 1000 - HISTORY_MS / 1000;
  state.history = state.history.filter((p) => p.t >= cutoff);
  for (const svg of document.querySelectorAll('svg[data-series]')) {
    spark(svg, state.history, svg.dataset.series);
  }
  const updated = document.getElementById('updated');
  updated.textContent = new Date(figures.at).toLocaleTimeString();
  updated.dateTime = figures.at;
}

function setMode(mode, label) {
  const element = document.getElementById('mode');
  element.dataset.mode = mode;
  element.textContent = label;
}

// Live updates: the monitor topic first, polling while the stream is away.

function startPolling() {
  if (state.pollTimer) return;
  setMode('polling', 'Polling');
  const every = Math.max(1, state.figures.interval_seconds || 5) * 1000;
  state.pollTimer = setInterval(refresh, every);
}

function stopPolling() {
  clearInterval(state.pollTimer);
  state.pollTimer = null;
}

async function refresh() {
  try {
    const response = await fetch(JSON_URL, { cache: 'no-store' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const figures = await response.json();
    if (!state.live) return;
    state.history = figures.history || state.history;
    render(figures);
    return figures;
  } catch (error) {
    setMode('offline', 'Offline');
    return null;
  }
}

function subscribe(cursor) {
  const query = new URLSearchParams({ topics: TOPIC });
  if (cursor != null) query.set('cursor', String(cursor));
  const source = new EventSource(`/stream?${query}`);
  state.source = source;
  source.addEventListener('ready', () => {
    stopPolling();
    setMode('live', 'Live');
  });
  source.addEventListener('change', (message) => {
    if (!state.live) return;
    const figures = JSON.parse(message.data).row;
    state.history.push(figures.point);
    render(figures);
  });
  source.addEventListener('error', () => {
    // EventSource retries by itself; meanwhile the figures come by polling.
    if (state.live) startPolling();
  });
}

async function goLive() {
  state.live = true;
  const toggle = document.getElementById('toggle');
  toggle.textContent = 'Pause';
  toggle.setAttribute('aria-pressed', 'true');
  setMode('connecting', 'Connecting');
  const figures = await refresh();
  if (!state.live) return;
  if (typeof EventSource === 'undefined') {
    startPolling();
    return;
  }
  subscribe(figures ? figures.log.head : state.figures.log.head);
}

function pause() {
  state.live = false;
  if (state.source) state.source.close();
  state.source = null;
  stopPolling();
  const toggle = document.getElementById('toggle');
  toggle.textContent = 'Live';
  toggle.setAttribute('aria-pressed', 'false');
  setMode('paused', 'Paused');
}

document.getElementById('toggle').addEventListener('click', () => (state.live ? pause() : goLive()));

// Proxy self-test: timed blocks that arrive spread out mean streaming works end to end.

function selfTest() {
  const result = document.getElementById('selftest');
  const detail = document.getElementById('selftest-detail');
  result.dataset.result = 'running';
  result.textContent = 'running…';
  detail.textContent = '';
  const arrivals = [];
  let gap = 0;
  const source = new EventSource(SELFTEST_URL);
  const finish = (outcome, label, text) => {
    clearTimeout(timer);
    source.close();
    result.dataset.result = outcome;
    result.textContent = label;
    detail.textContent = text;
  };
  const timer = setTimeout(
    () => finish('blocked', 'blocked', 'No test block arrived within 5 s: streams cannot pass.'),
    5000,
  );
  source.addEventListener('tick', (message) => {
    arrivals.push(performance.now());
    gap = JSON.parse(message.data).gap_ms;
  });
  source.addEventListener('done', () => {
    const spread = arrivals[arrivals.length - 1] - arrivals[0];
    const expected = gap * (arrivals.length - 1);
    if (arrivals.length > 1 && spread >= expected * 0.6) {
      finish('ok', 'streaming OK', `${arrivals.length} blocks arrived over ${Math.round(spread)} ms, as sent.`);
    } else {
      finish('buffered', 'buffered', `${arrivals.length} blocks sent ${expected} ms apart arrived within ${Math.round(spread)} ms: something buffers the stream.`);
    }
  });
  source.addEventListener('error', () => {
    if (!arrivals.length) finish('blocked', 'blocked', 'The test stream could not be opened.');
  });
}

document.getElementById('selftest-run').addEventListener('click', selfTest);

render(state.figures);
goLive();
selfTest();
