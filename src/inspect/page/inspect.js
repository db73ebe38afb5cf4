// The /inspect page: plain ES module, no build step, nothing loaded from anywhere but this service.
// Untrusted text (aliases, log lines, contexts) is only ever set with textContent, never parsed as HTML.

const TOKEN_KEY = 'tunnelpulse.token';
const LOG_LIMIT = 50;
const TRAFFIC_HOURS = 24;
const REFRESH_TRAFFIC_MS = 10_000;
const REFRESH_LOGS_MS = 5_000;
const EVENTS_KEPT = 50;

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'text') node.textContent = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
};
const SVG_NS = 'http://www.w3.org/2000/svg';
const svgEl = (tag, attrs = {}) => {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  return node;
};

// ---- access token ------------------------------------------------------------------------------------------
// Passed once as ?token=, then kept for this tab only and removed from the address bar (and so from history).
{
  const params = new URLSearchParams(location.search);
  const token = params.get('token');
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    params.delete('token');
    const query = params.toString();
    history.replaceState(null, '', location.pathname + (query ? `?${query}` : '') + location.hash);
  }
}
const token = () => sessionStorage.getItem(TOKEN_KEY);

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path) {
  const headers = { accept: 'application/json' };
  const t = token();
  if (t) headers.authorization = `Bearer ${t}`;
  const response = await fetch(path, { headers });
  if (response.status === 401) askForToken();
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try {
      const body = await response.json();
      if (body?.error?.message) message = `${message}: ${body.error.message}`;
    } catch {
      // not JSON: keep the status
    }
    throw new HttpError(response.status, message);
  }
  return response;
}

function askForToken() {
  const form = $('token-form');
  if (!form.hidden) return;
  form.hidden = false;
  setConnection('error', 'token required');
}
$('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $('token-input').value);
  $('token-input').value = '';
  $('token-form').hidden = true;
  openStream();
  loadMachine(state.shownMachine);
});

function setConnection(kind, text) {
  const pill = $('connection');
  pill.dataset.state = kind;
  pill.textContent = text;
}

// ---- state -------------------------------------------------------------------------------------------------

const state = {
  actors: new Map(), // id → node { id, kind, parent, machine, label, value, status }
  items: new Map(), // id → { li, button, idText, label, badge, children }
  selected: null, // actor id
  selectedDetail: null, // last `actor` event
  shownMachine: 'fleet',
  machines: [],
  svgCache: new Map(), // machine name → SVG text
  events: [],
  stream: null,
  timers: [],
};

/** Dot-joined active paths of a state value, outermost first (same rule as the server's activePaths). */
function activePaths(value, prefix = '') {
  if (typeof value === 'string') return [prefix ? `${prefix}.${value}` : value];
  if (!value || typeof value !== 'object') return [];
  const out = [];
  for (const [key, child] of Object.entries(value)) {
    const path = prefix ? `${prefix}.${key}` : key;
    out.push(path, ...activePaths(child, path));
  }
  return out;
}
/** The innermost active states, for a compact badge: `enabled.online.live.streaming`. */
function leafPaths(value) {
  const all = activePaths(value);
  return all.filter((p) => !all.some((q) => q.startsWith(`${p}.`)));
}
const stateText = (node) => (node.status === 'active' ? leafPaths(node.value).join(', ') : `${leafPaths(node.value).join(', ')} (${node.status})`);

// ---- actor tree --------------------------------------------------------------------------------------------

function itemFor(node) {
  let item = state.items.get(node.id);
  if (item) return item;
  const idText = el('span', { class: 'actor-id', text: node.id });
  const label = el('span', { class: 'actor-label' });
  const badge = el('span', { class: 'actor-state' });
  const button = el('button', { class: 'actor', type: 'button', role: 'treeitem', 'aria-selected': 'false', onclick: () => select(node.id) }, idText, label, badge);
  button.dataset.actorId = node.id;
  const children = el('ul', { role: 'group' });
  const li = el('li', {}, button, children);
  li.dataset.actorId = node.id;
  item = { li, button, idText, label, badge, children };
  state.items.set(node.id, item);
  return item;
}

function place(node) {
  const item = itemFor(node);
  const parent = node.parent ? state.items.get(node.parent) : null;
  const container = parent ? parent.children : $('tree');
  if (item.li.parentElement !== container) {
    // Supervisors first, then endpoints, each group in arrival order.
    if (node.kind === 'supervisor') {
      const firstEndpoint = [...container.children].find((li) => state.actors.get(li.dataset.actorId)?.kind === 'endpoint');
      container.insertBefore(item.li, firstEndpoint ?? null);
    } else container.append(item.li);
  }
  item.label.textContent = node.label ?? '';
  item.label.title = node.label ?? '';
  item.badge.textContent = stateText(node);
  item.badge.title = stateText(node);
  item.badge.dataset.leaf = leafPaths(node.value).at(-1)?.split('.').at(-1) ?? '';
  item.button.dataset.state = leafPaths(node.value).join(',');
  item.button.dataset.status = node.status;
}

function applyTree(change) {
  if (change.reset) {
    state.actors.clear();
    state.items.clear();
    $('tree').replaceChildren();
  }
  for (const id of change.remove) {
    state.actors.delete(id);
    state.items.get(id)?.li.remove();
    state.items.delete(id);
  }
  for (const node of change.upsert) state.actors.set(node.id, node);
  for (const node of change.upsert) place(node);
  const selected = state.items.get(state.selected);
  if (selected) selected.button.setAttribute('aria-selected', 'true');
  $('actor-count').textContent = `(${state.actors.size})`;
  applyFilter();
  const node = state.actors.get(state.selected);
  if (node) {
    showSelectedState(node);
    highlight();
  }
}

function applyFilter() {
  const q = $('tree-filter').value.trim().toLowerCase();
  const items = [...state.items.entries()];
  if (!q) {
    for (const [, item] of items) item.li.hidden = false;
    return;
  }
  // Children come after their parents in the map: walk backwards so a parent knows whether a child matched,
  // and stays visible for it (a tunnel is found under its endpoint).
  for (const [id, item] of items.reverse()) {
    const node = state.actors.get(id);
    const match = id.toLowerCase().includes(q) || (node?.label ?? '').toLowerCase().includes(q);
    item.li.hidden = !match && ![...item.children.children].some((li) => !li.hidden);
  }
}
$('tree-filter').addEventListener('input', applyFilter);

// ---- selection ---------------------------------------------------------------------------------------------

function select(id) {
  if (state.selected === id) return;
  state.items.get(state.selected)?.button.setAttribute('aria-selected', 'false');
  state.selected = id;
  state.selectedDetail = null;
  state.events = [];
  state.items.get(id)?.button.setAttribute('aria-selected', 'true');
  history.replaceState(null, '', `${location.pathname}${location.search}#actor=${encodeURIComponent(id)}`);
  $('selected-title').textContent = id;
  $('context').textContent = '';
  $('events').replaceChildren();
  const node = state.actors.get(id);
  if (node) {
    showSelectedState(node);
    loadMachine(node.machine);
  }
  openStream();
  showTunnelPanel();
}

function showSelectedState(node) {
  $('selected-state').textContent = `${node.kind} · ${node.machine} machine · ${stateText(node)}${node.label ? ` · ${node.label}` : ''}`;
}

function onActor(detail) {
  if (detail.id !== state.selected) return;
  if (detail.missing) {
    $('selected-state').textContent = 'This actor no longer exists.';
    return;
  }
  state.selectedDetail = detail;
  state.actors.set(detail.id, { ...state.actors.get(detail.id), ...detail });
  showSelectedState(detail);
  $('context').textContent = JSON.stringify(detail.context, null, 2);
  showLiveTraffic(detail);
  for (const event of detail.events) {
    const summary = el('summary', {},
      el('span', { class: 'event-type', text: event.type }),
      el('span', { text: event.summary ? ` ${event.summary}` : '' }),
      el('span', { class: 'muted', text: ` ${event.at.slice(11, 23)}${event.source ? ` from ${event.source}` : ''}` }),
    );
    const li = el('li', {}, el('details', {}, summary, el('pre', { text: JSON.stringify(event.event, null, 2) })));
    $('events').prepend(li);
  }
  while ($('events').children.length > EVENTS_KEPT) $('events').lastElementChild.remove();
  highlight();
}

// ---- diagrams ----------------------------------------------------------------------------------------------

async function loadMachines() {
  const body = await (await api('/inspect/api/machines')).json();
  state.machines = body.machines;
  const tabs = $('machine-tabs');
  tabs.replaceChildren(
    ...body.machines.map((m) => el('button', { type: 'button', 'aria-pressed': 'false', 'data-machine': m.name, onclick: () => loadMachine(m.name), text: m.name })),
  );
}

async function loadMachine(name) {
  state.shownMachine = name;
  for (const b of $('machine-tabs').querySelectorAll('button')) b.setAttribute('aria-pressed', String(b.dataset.machine === name));
  try {
    let text = state.svgCache.get(name);
    if (!text) {
      text = await (await api(`/inspect/api/machines/${encodeURIComponent(name)}.svg`)).text();
      state.svgCache.set(name, text);
    }
    if (state.shownMachine !== name) return;
    // Parsed as SVG (an XML document, no script runs) and adopted; never assigned as HTML.
    const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
    const svg = document.importNode(doc.documentElement, true);
    $('diagram').replaceChildren(svg);
    $('diagram').dataset.machine = name;
    highlight();
  } catch (error) {
    $('diagram').replaceChildren(el('p', { class: 'muted', text: `diagram unavailable (${error.message})` }));
  }
}

// A large machine is shrunk to the panel's width; a click toggles its actual size (the panel scrolls).
$('diagram').addEventListener('click', () => $('diagram').classList.toggle('actual-size'));

/** Marks the selected actor's active states on the diagram, when the diagram shown is its machine's. */
function highlight() {
  const diagram = $('diagram');
  const svg = diagram.querySelector('svg');
  if (!svg) return;
  for (const g of svg.querySelectorAll('g.active')) g.classList.remove('active');
  const node = state.actors.get(state.selected);
  $('diagram-title').textContent = node && node.machine === state.shownMachine ? `${state.shownMachine} machine — ${node.id}` : `${state.shownMachine} machine`;
  if (!node || node.machine !== state.shownMachine) {
    diagram.dataset.active = '';
    return;
  }
  const active = [];
  for (const path of activePaths(node.value)) {
    const g = svg.querySelector(`[id="${CSS.escape(`state:${path}`)}"]`);
    if (g) {
      g.classList.add('active');
      active.push(path);
    }
  }
  diagram.dataset.active = active.join(' ');
}

// ---- live stream -------------------------------------------------------------------------------------------

function openStream() {
  state.stream?.close();
  const params = new URLSearchParams();
  if (state.selected) params.set('watch', state.selected);
  const t = token();
  if (t) params.set('token', t);
  const stream = new EventSource(`/inspect/api/stream?${params}`);
  state.stream = stream;
  setConnection('connecting', 'connecting…');
  stream.addEventListener('open', () => setConnection('live', 'live'));
  stream.addEventListener('tree', (e) => applyTree(JSON.parse(e.data)));
  stream.addEventListener('actor', (e) => onActor(JSON.parse(e.data)));
  stream.addEventListener('error', () => {
    if (stream !== state.stream) return;
    if (stream.readyState === EventSource.CLOSED) {
      // Refused (401, 429) or the service went away: find out why, then try again later.
      setConnection('error', 'disconnected');
      api('/inspect/api/status').catch(() => {});
      setTimeout(() => stream === state.stream && openStream(), 5_000);
    } else setConnection('connecting', 'reconnecting…');
  });
}

// ---- tunnel traffic and logs -------------------------------------------------------------------------------

function tunnelOf(id) {
  const m = /^tunnel:(\d+)\/(.+)$/.exec(id ?? '');
  return m ? { endpointId: m[1], instanceId: m[2] } : null;
}
function endpointOf(id) {
  const m = /^endpoint:(\d+)$/.exec(id ?? '');
  return m ? { endpointId: m[1] } : null;
}

function showTunnelPanel() {
  for (const timer of state.timers) clearInterval(timer);
  state.timers = [];
  const tunnel = tunnelOf(state.selected);
  const endpoint = endpointOf(state.selected);
  const panel = $('tunnel-panel');
  panel.hidden = !tunnel && !endpoint;
  $('logs-panel').hidden = !tunnel;
  $('traffic').replaceChildren();
  $('traffic-live').textContent = '';
  $('logs').tBodies[0].replaceChildren();
  if (!tunnel && !endpoint) return;
  const base = tunnel
    ? `/api/endpoints/${encodeURIComponent(tunnel.endpointId)}/tunnels/${encodeURIComponent(tunnel.instanceId)}`
    : `/api/endpoints/${encodeURIComponent(endpoint.endpointId)}`;
  const selected = state.selected;
  const traffic = () => loadTraffic(base, selected);
  traffic();
  state.timers.push(setInterval(traffic, REFRESH_TRAFFIC_MS));
  if (tunnel) {
    const logs = () => loadLogs(base, selected);
    logs();
    state.timers.push(setInterval(logs, REFRESH_LOGS_MS));
  }
}

function formatBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

/** A tunnel's live rates and totals, from its context as the stream delivers it (about once per event). */
function showLiveTraffic(detail) {
  const c = detail.context ?? {};
  if (detail.kind !== 'tunnel' || !c.rates || !c.traffic) {
    $('traffic-live').textContent = '';
    return;
  }
  const sum = (k, a, b) => (Number(k[a]) || 0) + (Number(k[b]) || 0);
  $('traffic-live').textContent =
    `now: received ${formatBytes(sum(c.rates, 'tcprx', 'udprx'))}/s, sent ${formatBytes(sum(c.rates, 'tcptx', 'udptx'))}/s` +
    ` · total seen: received ${formatBytes(sum(c.traffic, 'tcprx', 'udprx'))}, sent ${formatBytes(sum(c.traffic, 'tcptx', 'udptx'))}`;
}

async function loadTraffic(base, selected) {
  try {
    const body = await (await api(`${base}/traffic?hours=${TRAFFIC_HOURS}`)).json();
    if (state.selected !== selected) return;
    drawTraffic(body.points ?? []);
    $('traffic-range').textContent = `(last ${body.hours} h, received ▮ blue, sent ▮ green)`;
  } catch (error) {
    if (state.selected !== selected) return;
    $('traffic').replaceChildren(el('p', { class: 'muted', text: `traffic unavailable (${error.message}); retrying` }));
  }
}

/** One pair of bars per hour (received, sent; TCP + UDP); the open hour is drawn lighter. */
function drawTraffic(points) {
  const width = 720;
  const height = 180;
  const left = 56;
  const bottom = 18;
  const plotW = width - left - 6;
  const plotH = height - bottom - 8;
  const rx = (p) => (p.tcprx ?? 0) + (p.udprx ?? 0);
  const tx = (p) => (p.tcptx ?? 0) + (p.udptx ?? 0);
  const max = Math.max(1, ...points.map((p) => Math.max(rx(p), tx(p))));
  const svg = svgEl('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'traffic per hour', preserveAspectRatio: 'none' });
  svg.append(svgEl('line', { class: 'axis', x1: left, y1: 8 + plotH, x2: width - 6, y2: 8 + plotH }));
  svg.append(svgEl('line', { class: 'axis', x1: left, y1: 8, x2: left, y2: 8 + plotH }));
  const top = svgEl('text', { x: left - 4, y: 14, 'text-anchor': 'end' });
  top.textContent = formatBytes(max);
  const zero = svgEl('text', { x: left - 4, y: 8 + plotH, 'text-anchor': 'end' });
  zero.textContent = '0';
  svg.append(top, zero);
  const slot = plotW / Math.max(1, points.length);
  const bar = Math.max(1, slot / 2 - 1);
  points.forEach((p, i) => {
    const x = left + i * slot;
    for (const [value, cls, offset] of [[rx(p), 'rx', 0], [tx(p), 'tx', bar]]) {
      const h = (value / max) * plotH;
      const rect = svgEl('rect', { class: `${cls}${p.open ? ' open' : ''}`, x: x + offset, y: 8 + plotH - h, width: bar, height: h });
      const title = svgEl('title');
      title.textContent = `${p.hour}${p.open ? ' (open hour)' : ''}: ${cls === 'rx' ? 'received' : 'sent'} ${formatBytes(value)}`;
      rect.append(title);
      svg.append(rect);
    }
    if (i % 6 === 0 || i === points.length - 1) {
      const label = svgEl('text', { x: x + slot / 2, y: height - 4, 'text-anchor': 'middle' });
      label.textContent = String(p.hour).slice(11, 16);
      svg.append(label);
    }
  });
  svg.dataset.points = String(points.length);
  $('traffic').replaceChildren(svg);
}

async function loadLogs(base, selected) {
  try {
    const body = await (await api(`${base}/logs?limit=${LOG_LIMIT}`)).json();
    if (state.selected !== selected) return;
    const rows = (body.items ?? []).map((item) =>
      el('tr', { dataset: { level: String(item.level) } },
        el('td', { class: 'time', text: String(item.time).replace('T', ' ').slice(0, 23) }),
        el('td', { class: 'level', text: String(item.level) }),
        el('td', { class: 'message', text: String(item.message) }),
      ),
    );
    $('logs').tBodies[0].replaceChildren(...rows);
    $('logs-status').textContent = rows.length ? `latest ${rows.length === 1 ? 'line' : `${rows.length} lines`}, newest first` : 'no log lines yet';
  } catch (error) {
    if (state.selected !== selected) return;
    $('logs-status').textContent = `logs unavailable (${error.message}); retrying`;
  }
}

// ---- start -------------------------------------------------------------------------------------------------

async function start() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('actor');
  try {
    await loadMachines();
  } catch (error) {
    $('diagram').replaceChildren(el('p', { class: 'muted', text: `machines unavailable (${error.message})` }));
  }
  await loadMachine('fleet');
  if (fromHash) {
    state.selected = fromHash;
    $('selected-title').textContent = fromHash;
    showTunnelPanel();
  }
  openStream();
  // The stream's first `tree` brings the selected actor; show its machine once it is known.
  if (fromHash) {
    const wait = setInterval(() => {
      const node = state.actors.get(fromHash);
      if (node) {
        clearInterval(wait);
        loadMachine(node.machine);
      }
    }, 200);
  }
}
start();
