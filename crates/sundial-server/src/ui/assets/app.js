// Sundial's web UI: a client of the server's HTTP API (/api/v1/...), on the same origin.
// Plain modules, no build step. Pages are chosen by the URL path; links are intercepted and
// rendered in place.

const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $('#main');

// ---------- small helpers ----------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const enc = encodeURIComponent;
const b64decode = (s) => {
  try {
    const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/'));
    return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
  } catch { return null; }
};
const b64encode = (s) => {
  const bytes = new TextEncoder().encode(s);
  let bin = '';
  bytes.forEach((b) => { bin += String.fromCharCode(b); });
  return btoa(bin);
};

function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)sundial-csrf=([^;]+)/);
  return m ? m[1] : '';
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { 'Accept': 'application/json' };
  if (method !== 'GET') {
    headers['Content-Type'] = 'application/json';
    headers['X-CSRF-Token'] = csrfToken();
  }
  const res = await fetch('/api/v1' + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  let json = null;
  try { json = await res.json(); } catch { json = null; }
  if (!res.ok) throw new ApiError(res.status, json);
  return json;
}

const STATUSES = ['Running', 'Completed', 'Failed', 'Canceled', 'Terminated', 'ContinuedAsNew', 'TimedOut'];
const statusName = (s) => {
  const map = {
    WORKFLOW_EXECUTION_STATUS_RUNNING: 'Running', WORKFLOW_EXECUTION_STATUS_COMPLETED: 'Completed',
    WORKFLOW_EXECUTION_STATUS_FAILED: 'Failed', WORKFLOW_EXECUTION_STATUS_CANCELED: 'Canceled',
    WORKFLOW_EXECUTION_STATUS_TERMINATED: 'Terminated', WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW: 'ContinuedAsNew',
    WORKFLOW_EXECUTION_STATUS_TIMED_OUT: 'TimedOut',
  };
  return map[s] || (s || 'Unknown').replace(/^WORKFLOW_EXECUTION_STATUS_/, '');
};
const statusBadge = (s) => h('span', { class: `status ${statusName(s)}` }, statusName(s));
const fmtTime = (t) => (t && !t.startsWith('0001-') ? new Date(t).toLocaleString() : '');
const shortEnum = (s, prefix) => (s || '').replace(prefix, '');
const errorBox = (e) => h('div', { class: 'error' }, e instanceof Error ? e.message : String(e));
const quote = (s) => '"' + String(s).replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"';

function link(href, ...children) {
  return h('a', { href, onclick: (ev) => { if (!ev.metaKey && !ev.ctrlKey) { ev.preventDefault(); go(href); } } }, ...children);
}

function settings() {
  try { return JSON.parse(localStorage.getItem('sundial-settings') || '{}'); } catch { return {}; }
}
function saveSettings(s) { localStorage.setItem('sundial-settings', JSON.stringify(s)); }

// ---------- payloads ----------

// A payload as the API gives it: shorthand JSON, or canonical {metadata, data} (base64).
function isCanonical(p) {
  return p && typeof p === 'object' && !Array.isArray(p) && p.metadata && typeof p.metadata === 'object'
    && typeof p.metadata.encoding === 'string' && Object.keys(p).every((k) => k === 'metadata' || k === 'data');
}
function payloadList(value) {
  if (value === undefined || value === null) return [];
  if (Array.isArray(value)) return value;
  if (value && Array.isArray(value.payloads)) return value.payloads;
  return [value];
}

async function decodeWithCodec(payloads, namespace) {
  const endpoint = (settings().codecEndpoint || '').replace(/\/+$/, '');
  const canonical = payloads.filter(isCanonical);
  if (!endpoint || canonical.length === 0) return payloads;
  const res = await fetch(endpoint + '/decode', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Namespace': namespace || '' },
    body: JSON.stringify({ payloads: canonical }),
  });
  if (!res.ok) throw new Error(`codec endpoint answered HTTP ${res.status}`);
  const decoded = (await res.json()).payloads || [];
  let i = 0;
  return payloads.map((p) => (isCanonical(p) ? decoded[i++] ?? p : p));
}

// One payload as an element: JSON pretty-printed; other encodings shown as what they are.
function payloadView(p) {
  if (!isCanonical(p)) return h('pre', { class: 'json' }, JSON.stringify(p, null, 2));
  const meta = {};
  for (const [k, v] of Object.entries(p.metadata)) meta[k] = b64decode(v);
  const encoding = meta.encoding || '';
  if (encoding === 'json/plain' || encoding === 'json/protobuf') {
    const text = b64decode(p.data || '') ?? '';
    let shown = text;
    try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch { /* shown as text */ }
    return h('div', { class: 'payload' }, h('pre', { class: 'json' }, shown),
      meta.messageType ? h('div', { class: 'enc' }, `message type ${meta.messageType}`) : null);
  }
  if (encoding === 'binary/null') return h('pre', { class: 'json' }, 'null');
  const encrypted = /encrypt/i.test(encoding);
  const bytes = p.data ? Math.floor((p.data.length * 3) / 4) : 0;
  return h('div', { class: 'payload' },
    h('div', { class: 'enc' },
      `${encrypted ? 'Encrypted' : 'Binary'} payload (encoding ${encoding}, ${bytes} bytes)`
      + (encrypted && !settings().codecEndpoint ? ' — set a codec endpoint in Settings to read it' : '')),
    h('pre', { class: 'json' }, JSON.stringify(meta, null, 2)));
}

function payloadsView(value, namespace) {
  const list = payloadList(value);
  const box = h('div', { class: 'payloads' });
  if (list.length === 0) { box.append(h('span', { class: 'muted' }, 'none')); return box; }
  list.forEach((p) => box.append(payloadView(p)));
  if (list.some(isCanonical) && settings().codecEndpoint) {
    decodeWithCodec(list, namespace).then((decoded) => {
      box.replaceChildren(...decoded.map(payloadView));
    }).catch((e) => box.append(errorBox(`decoding: ${e.message}`)));
  }
  return box;
}

function searchAttributeValue(p) {
  if (!isCanonical(p)) return typeof p === 'string' ? p : JSON.stringify(p);
  const text = b64decode(p.data || '');
  try {
    const v = JSON.parse(text);
    return Array.isArray(v) ? v.join(', ') : String(v);
  } catch { return text; }
}

// ---------- layout and routing ----------

let current = { namespace: 'default' };
let refreshTimer = null;

function go(href, replace = false) {
  if (replace) history.replaceState(null, '', href); else history.pushState(null, '', href);
  render();
}
window.addEventListener('popstate', render);

function nav(ns) {
  const path = location.pathname;
  const item = (href, label, match) => {
    const a = link(href, label);
    if (match.test(path)) a.className = 'active';
    return a;
  };
  $('#nav').replaceChildren(
    item(`/namespaces/${enc(ns)}/workflows`, 'Workflows', /\/workflows/),
    item(`/namespaces/${enc(ns)}/schedules`, 'Schedules', /\/schedules/),
    item(`/namespaces/${enc(ns)}/task-queues`, 'Task queues', /\/task-queues/),
    item(`/namespaces/${enc(ns)}/search-attributes`, 'Search attributes', /\/search-attributes/),
    item('/namespaces', 'Namespaces', /^\/namespaces\/?$/),
    item('/settings', 'Settings', /^\/settings/),
  );
}

async function loadNamespaces(selected) {
  const sel = $('#namespace');
  if (!sel.dataset.loaded) {
    sel.dataset.loaded = '1';
    sel.addEventListener('change', () => go(`/namespaces/${enc(sel.value)}/workflows`));
    try {
      const res = await api('GET', '/namespaces');
      const names = (res.namespaces || []).map((n) => n.namespaceInfo.name);
      sel.replaceChildren(...names.map((n) => h('option', { value: n }, n)));
    } catch { sel.replaceChildren(h('option', { value: selected }, selected)); }
  }
  if (![...sel.options].some((o) => o.value === selected)) sel.append(h('option', { value: selected }, selected));
  sel.value = selected;
}

async function render() {
  if (refreshTimer) { clearInterval(refreshTimer); refreshTimer = null; }
  const parts = location.pathname.split('/').filter(Boolean).map(decodeURIComponent);
  let ns = 'default';
  if (parts[0] === 'namespaces' && parts[1]) ns = parts[1];
  current.namespace = ns;
  nav(ns);
  loadNamespaces(ns);
  const page = main();
  page.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    if (parts.length === 0) return go(`/namespaces/${enc(ns)}/workflows`, true);
    if (parts[0] === 'settings') return settingsPage(page);
    if (parts[0] !== 'namespaces') return page.replaceChildren(h('h1', {}, 'Not found'));
    if (parts.length === 1) return await namespacesPage(page);
    const [, , section, id, run] = parts;
    if (section === undefined || section === 'workflows') {
      if (id) return await workflowPage(page, ns, id, run);
      return await workflowsPage(page, ns);
    }
    if (section === 'schedules') {
      if (id === 'new') return scheduleForm(page, ns);
      if (id) return await schedulePage(page, ns, id);
      return await schedulesPage(page, ns);
    }
    if (section === 'task-queues') return await taskQueuePage(page, ns, id);
    if (section === 'search-attributes') return await searchAttributesPage(page, ns);
    page.replaceChildren(h('h1', {}, 'Not found'));
  } catch (e) {
    page.replaceChildren(errorBox(e));
  }
}

// ---------- dialogs: every action asks before it acts ----------

function ask(title, fields, confirmLabel = 'Confirm', danger = false) {
  const dialog = $('#dialog');
  const form = $('#dialog-form');
  const inputs = {};
  const body = fields.map((f) => {
    const id = `f-${f.name}`;
    const input = f.multiline
      ? h('textarea', { id, name: f.name, placeholder: f.placeholder || '' }, f.value || '')
      : h('input', { id, name: f.name, value: f.value || '', placeholder: f.placeholder || '', type: f.type || 'text' });
    inputs[f.name] = input;
    return [h('label', { for: id }, f.label), input];
  });
  form.replaceChildren(
    h('h2', {}, title),
    ...body.flat(),
    h('menu', {},
      h('button', { value: 'cancel', type: 'submit', formnovalidate: true }, 'Cancel'),
      h('button', { value: 'ok', type: 'submit', class: danger ? 'danger' : 'primary', id: 'dialog-confirm' }, confirmLabel)),
  );
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      if (dialog.returnValue !== 'ok') return resolve(null);
      const values = {};
      for (const [k, el] of Object.entries(inputs)) values[k] = el.value;
      resolve(values);
    }, { once: true });
    dialog.returnValue = '';
    dialog.showModal();
  });
}

function parseArgs(text) {
  const t = (text || '').trim();
  if (!t) return [];
  const v = JSON.parse(t);
  return Array.isArray(v) ? v : [v];
}

function flash(page, message, ok = true) {
  const el = h('div', { class: ok ? 'notice' : 'error', id: 'flash' }, message);
  const old = $('#flash', page);
  if (old) old.replaceWith(el); else page.prepend(el);
}

// ---------- workflows ----------

function filtersToQuery(f) {
  const clauses = [];
  if (f.status) clauses.push(`ExecutionStatus = ${quote(f.status)}`);
  if (f.type) clauses.push(`WorkflowType = ${quote(f.type)}`);
  if (f.id) clauses.push(`WorkflowId STARTS_WITH ${quote(f.id)}`);
  if (f.since) {
    const ms = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3, '30d': 30 * 86400e3 }[f.since];
    if (ms) clauses.push(`StartTime > ${quote(new Date(Date.now() - ms).toISOString())}`);
  }
  if (f.query) clauses.push(`(${f.query})`);
  return clauses.join(' AND ');
}

async function workflowsPage(page, ns) {
  const params = new URLSearchParams(location.search);
  const f = {
    query: params.get('query') || '', status: params.get('status') || '', type: params.get('type') || '',
    id: params.get('id') || '', since: params.get('since') || '',
  };
  const columns = (settings().columns || '').split(',').map((s) => s.trim()).filter(Boolean);
  const apply = (changes) => {
    const next = { ...f, ...changes };
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(next)) if (v) q.set(k, v);
    go(`/namespaces/${enc(ns)}/workflows${q.toString() ? '?' + q : ''}`);
  };

  const queryInput = h('input', { class: 'query', id: 'query', value: f.query, placeholder: 'WorkflowType = "Orders" AND StartTime > "2026-01-01T00:00:00Z"' });
  const typeInput = h('input', { id: 'filter-type', value: f.type, placeholder: 'Workflow type' });
  const idInput = h('input', { id: 'filter-id', value: f.id, placeholder: 'Workflow id starts with' });
  const statusSelect = h('select', { id: 'filter-status' }, h('option', { value: '' }, 'Any status'),
    STATUSES.map((s) => h('option', { value: s, selected: s === f.status }, s)));
  const sinceSelect = h('select', { id: 'filter-since' },
    [['', 'Any time'], ['1h', 'Last hour'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days'], ['30d', 'Last 30 days']]
      .map(([v, l]) => h('option', { value: v, selected: v === f.since }, l)));
  const autoRefresh = h('input', { type: 'checkbox', id: 'auto-refresh', checked: sessionStorage.getItem('auto-refresh') === '1' });
  const form = h('form', {
    class: 'toolbar', id: 'filters',
    onsubmit: (ev) => {
      ev.preventDefault();
      apply({ query: queryInput.value.trim(), type: typeInput.value.trim(), id: idInput.value.trim(), status: statusSelect.value, since: sinceSelect.value });
    },
  }, queryInput, statusSelect, typeInput, idInput, sinceSelect, h('button', { class: 'primary', type: 'submit' }, 'Search'),
  h('button', { type: 'button', onclick: () => go(`/namespaces/${enc(ns)}/workflows`) }, 'Clear'),
  h('label', {}, autoRefresh, ' Auto-refresh'));

  const counts = h('div', { class: 'counts', id: 'counts' });
  const table = h('div', { id: 'workflow-table' });
  const pager = h('div', { class: 'pager' });
  page.replaceChildren(h('h1', {}, 'Workflows'), form, counts, table, pager);

  const query = filtersToQuery(f);
  const withoutStatus = filtersToQuery({ ...f, status: '' });
  const tokens = [''];
  let pageIndex = 0;

  async function loadCounts() {
    try {
      const grouped = await api('GET', `/namespaces/${enc(ns)}/workflow-count?query=${enc((withoutStatus ? withoutStatus + ' ' : '') + 'GROUP BY ExecutionStatus')}`);
      const byStatus = {};
      for (const g of grouped.groups || []) byStatus[searchAttributeValue(g.groupValues[0])] = Number(g.count);
      counts.replaceChildren(
        h('span', { class: `chip${f.status ? '' : ' on'}`, onclick: () => apply({ status: '' }) }, `All ${grouped.count || 0}`),
        ...STATUSES.filter((s) => byStatus[s]).map((s) => h('span', {
          class: `chip${f.status === s ? ' on' : ''}`, dataset: { status: s }, onclick: () => apply({ status: s }),
        }, `${s} ${byStatus[s]}`)),
      );
    } catch (e) { counts.replaceChildren(errorBox(e)); }
  }

  async function loadPage() {
    const token = tokens[pageIndex];
    let res;
    try {
      res = await api('GET', `/namespaces/${enc(ns)}/workflows?pageSize=50&query=${enc(query)}${token ? '&nextPageToken=' + enc(token) : ''}`);
    } catch (e) { table.replaceChildren(errorBox(e)); return; }
    const rows = (res.executions || []).map((w) => h('tr', {},
      h('td', {}, statusBadge(w.status)),
      h('td', { class: 'mono' }, link(`/namespaces/${enc(ns)}/workflows/${enc(w.execution.workflowId)}/${enc(w.execution.runId)}`, w.execution.workflowId)),
      h('td', { class: 'mono' }, w.execution.runId),
      h('td', {}, w.type?.name || ''),
      h('td', {}, fmtTime(w.startTime)),
      h('td', {}, fmtTime(w.closeTime)),
      columns.map((c) => h('td', {}, w.searchAttributes?.indexedFields?.[c] ? searchAttributeValue(w.searchAttributes.indexedFields[c]) : '')),
    ));
    table.replaceChildren(rows.length === 0 ? h('p', { class: 'muted' }, 'No workflows match.') : h('table', { id: 'workflows' },
      h('thead', {}, h('tr', {}, ['Status', 'Workflow ID', 'Run ID', 'Type', 'Start', 'End', ...columns].map((c) => h('th', {}, c)))),
      h('tbody', {}, rows)));
    if (res.nextPageToken) tokens[pageIndex + 1] = res.nextPageToken; else tokens.length = pageIndex + 1;
    pager.replaceChildren(
      h('button', { id: 'prev-page', disabled: pageIndex === 0, onclick: () => { pageIndex--; loadPage(); } }, '← Previous'),
      h('span', { class: 'muted' }, `Page ${pageIndex + 1}`),
      h('button', { id: 'next-page', disabled: !res.nextPageToken, onclick: () => { pageIndex++; loadPage(); } }, 'Next →'),
    );
  }

  await Promise.all([loadCounts(), loadPage()]);
  const startRefresh = () => {
    if (refreshTimer) clearInterval(refreshTimer);
    refreshTimer = autoRefresh.checked ? setInterval(() => { loadCounts(); loadPage(); }, 5000) : null;
  };
  autoRefresh.addEventListener('change', () => { sessionStorage.setItem('auto-refresh', autoRefresh.checked ? '1' : '0'); startRefresh(); });
  startRefresh();
}

function eventAttributes(e) {
  const key = Object.keys(e).find((k) => k.endsWith('EventAttributes'));
  return key ? e[key] : {};
}
const eventName = (t) => shortEnum(t, 'EVENT_TYPE_').toLowerCase().replace(/(^|_)(\w)/g, (_, __, c) => c.toUpperCase());

function eventSummary(e) {
  const a = eventAttributes(e);
  const bits = [];
  if (a.activityType) bits.push(a.activityType.name);
  if (a.activityId) bits.push(`id ${a.activityId}`);
  if (a.signalName) bits.push(a.signalName);
  if (a.timerId) bits.push(`timer ${a.timerId}`);
  if (a.startToFireTimeout) bits.push(a.startToFireTimeout);
  if (a.workflowType && !e.workflowExecutionStartedEventAttributes) bits.push(a.workflowType.name);
  if (a.failure) bits.push(a.failure.message);
  if (a.reason) bits.push(a.reason);
  if (a.attempt > 1) bits.push(`attempt ${a.attempt}`);
  if (a.identity) bits.push(a.identity);
  return bits.join(' · ');
}

async function allHistory(ns, id, run) {
  const events = [];
  let token = '';
  for (let i = 0; i < 200; i++) {
    const res = await api('GET', `/namespaces/${enc(ns)}/workflows/${enc(id)}/history?execution.runId=${enc(run || '')}&maximumPageSize=1000${token ? '&nextPageToken=' + enc(token) : ''}`);
    events.push(...(res.history?.events || []));
    token = res.nextPageToken;
    if (!token) break;
  }
  return events;
}

function historyTable(events, ns) {
  const body = h('tbody');
  for (const e of events) {
    const row = h('tr', { class: 'event', dataset: { eventId: e.eventId } },
      h('td', {}, e.eventId), h('td', {}, fmtTime(e.eventTime)), h('td', {}, eventName(e.eventType)), h('td', {}, eventSummary(e)));
    let open = null;
    row.addEventListener('click', () => {
      if (open) { open.remove(); open = null; return; }
      const a = eventAttributes(e);
      const parts = [h('pre', { class: 'json' }, JSON.stringify(a, null, 2))];
      for (const field of ['input', 'result', 'details', 'heartbeatDetails', 'lastCompletionResult']) {
        if (a[field]) parts.unshift(h('div', {}, h('strong', {}, field), payloadsView(a[field], ns)));
      }
      open = h('tr', { class: 'details' }, h('td', { colspan: 4 }, parts));
      row.after(open);
    });
    body.append(row);
  }
  return h('table', { id: 'history' }, h('thead', {}, h('tr', {}, h('th', {}, 'ID'), h('th', {}, 'Time'), h('th', {}, 'Event'), h('th', {}, 'Details'))), body);
}

// The compact timeline: one bar per activity, timer and child workflow, from its first event
// to its last.
function timeline(events) {
  if (events.length === 0) return h('p', { class: 'muted' }, 'No events.');
  const t0 = Date.parse(events[0].eventTime);
  const tEnd = Math.max(Date.parse(events[events.length - 1].eventTime), t0 + 1);
  const spans = new Map();
  const startOf = { ActivityTaskScheduled: 'activity', TimerStarted: 'timer', StartChildWorkflowExecutionInitiated: 'child' };
  for (const e of events) {
    const name = eventName(e.eventType);
    const a = eventAttributes(e);
    const t = Date.parse(e.eventTime);
    if (startOf[name]) {
      const label = name === 'ActivityTaskScheduled' ? `Activity ${a.activityType?.name || ''} (${a.activityId})`
        : name === 'TimerStarted' ? `Timer ${a.timerId} (${a.startToFireTimeout})` : `Child ${a.workflowType?.name || ''} ${a.workflowId || ''}`;
      spans.set(e.eventId, { label, from: t, to: null, result: 'open' });
      continue;
    }
    const ref = a.scheduledEventId || a.startedEventId && spans.has(a.startedEventId) && a.startedEventId || a.initiatedEventId;
    const span = spans.get(ref);
    if (span) {
      span.to = t;
      span.result = /Completed|Fired|Started$/.test(name) ? (name.endsWith('Started') ? 'open' : 'ok') : /Failed|TimedOut|Terminated/.test(name) ? 'bad' : 'ok';
      if (name.endsWith('Started') && !/Completed/.test(name)) span.to = null;
    }
  }
  const total = tEnd - t0;
  const rows = [...spans.values()].map((s) => {
    const left = ((s.from - t0) / total) * 100;
    const right = s.to === null ? 100 : ((s.to - t0) / total) * 100;
    return h('div', { class: 'tl-row' }, h('span', { class: 'tl-label', title: s.label }, s.label),
      h('span', { class: 'tl-track' }, h('span', { class: `tl-bar ${s.result}`, style: `left:${left}%;width:${Math.max(right - left, 0.5)}%` })));
  });
  return h('div', { class: 'timeline', id: 'timeline' },
    h('div', { class: 'tl-row' }, h('span', { class: 'tl-label muted' }, `Workflow (${((tEnd - t0) / 1000).toFixed(2)} s)`),
      h('span', { class: 'tl-track' }, h('span', { class: 'tl-bar', style: 'left:0;width:100%' }))),
    rows.length ? rows : h('p', { class: 'muted' }, 'No activities, timers or child workflows.'));
}

function kv(rows) {
  return h('table', { class: 'kv' }, h('tbody', {}, rows.filter(Boolean).map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v)))));
}

// Child workflows started and not yet closed, from the history (for servers whose description
// has no pending children).
function openChildren(events) {
  const open = new Map();
  for (const e of events) {
    const a = eventAttributes(e);
    const name = eventName(e.eventType);
    if (name === 'StartChildWorkflowExecutionInitiated') {
      open.set(e.eventId, { workflowId: a.workflowId, workflowTypeName: a.workflowType?.name, runId: '' });
    } else if (name === 'ChildWorkflowExecutionStarted' && open.has(a.initiatedEventId)) {
      open.get(a.initiatedEventId).runId = a.workflowExecution?.runId || '';
    } else if (/^(StartChildWorkflowExecutionFailed|ChildWorkflowExecution(Completed|Failed|Canceled|TimedOut|Terminated))$/.test(name)) {
      open.delete(a.initiatedEventId);
    }
  }
  return [...open.values()];
}

async function workflowPage(page, ns, id, run) {
  const q = run ? `?execution.runId=${enc(run)}` : '';
  const described = await api('GET', `/namespaces/${enc(ns)}/workflows/${enc(id)}${q}`);
  const info = described.workflowExecutionInfo || {};
  const runId = info.execution?.runId || run;
  const events = await allHistory(ns, id, runId);
  const wfPath = `/namespaces/${enc(ns)}/workflows/${enc(id)}`;
  const running = statusName(info.status) === 'Running';

  const act = async (title, fields, label, danger, perform, done) => {
    const values = await ask(title, fields, label, danger);
    if (!values) return;
    try {
      const result = await perform(values);
      flash(page, done(result));
      if (title !== 'Query' && title !== 'Call stack') setTimeout(render, 400);
    } catch (e) { flash(page, e.message, false); }
  };
  const execution = { workflowId: id, runId };
  const actions = h('div', { class: 'actions', id: 'actions' },
    h('button', { id: 'action-signal', disabled: !running, onclick: () => act('Signal', [
      { name: 'name', label: 'Signal name' }, { name: 'input', label: 'Input (JSON; an array is several arguments)', multiline: true }], 'Send signal', false,
    (v) => api('POST', `${wfPath}/signal/${enc(v.name)}`, { workflowExecution: execution, input: parseArgs(v.input), requestId: crypto.randomUUID() }),
    () => 'Signal sent.') }, 'Signal'),
    h('button', { id: 'action-query', onclick: () => act('Query', [
      { name: 'name', label: 'Query type' }, { name: 'input', label: 'Arguments (JSON)', multiline: true }], 'Run query', false,
    (v) => api('POST', `${wfPath}/query/${enc(v.name)}`, { execution, query: { queryArgs: parseArgs(v.input) } }),
    (r) => `Query result: ${JSON.stringify(r.queryResult ?? r.queryRejected ?? null)}`) }, 'Query'),
    h('button', { id: 'action-update', disabled: !running, onclick: () => act('Update', [
      { name: 'name', label: 'Update name' }, { name: 'input', label: 'Arguments (JSON)', multiline: true }], 'Send update', false,
    (v) => api('POST', `${wfPath}/update/${enc(v.name)}`, {
      workflowExecution: execution,
      request: { meta: { updateId: crypto.randomUUID() }, input: { name: v.name, args: parseArgs(v.input) } },
      waitPolicy: { lifecycleStage: 'UPDATE_WORKFLOW_EXECUTION_LIFECYCLE_STAGE_COMPLETED' },
    }), (r) => (r.outcome?.failure ? `Update failed: ${r.outcome.failure.message}` : `Update result: ${JSON.stringify(r.outcome?.success ?? null)}`)) }, 'Update'),
    h('button', { id: 'action-cancel', disabled: !running, onclick: () => act('Request cancellation', [
      { name: 'reason', label: 'Reason' }], 'Request cancellation', true,
    (v) => api('POST', `${wfPath}/cancel`, { workflowExecution: execution, reason: v.reason, requestId: crypto.randomUUID() }),
    () => 'Cancellation requested.') }, 'Cancel'),
    h('button', { id: 'action-terminate', class: 'danger', disabled: !running, onclick: () => act('Terminate', [
      { name: 'reason', label: 'Reason' }], 'Terminate', true,
    (v) => api('POST', `${wfPath}/terminate`, { workflowExecution: execution, reason: v.reason }),
    () => 'Workflow terminated.') }, 'Terminate'),
    h('button', { id: 'action-reset', onclick: () => {
      const completed = events.filter((e) => e.eventType === 'EVENT_TYPE_WORKFLOW_TASK_COMPLETED').map((e) => e.eventId);
      act('Reset', [
        { name: 'event', label: `Workflow task completed event id (one of ${completed.join(', ') || 'none'})`, value: completed[0] || '' },
        { name: 'reason', label: 'Reason' }], 'Reset', true,
      (v) => api('POST', `${wfPath}/reset`, { workflowExecution: execution, workflowTaskFinishEventId: v.event, reason: v.reason, requestId: crypto.randomUUID() }),
      (r) => `Reset; new run ${r.runId}.`);
    } }, 'Reset'),
    h('button', { id: 'action-stack', disabled: !running, onclick: async () => {
      try {
        const r = await api('POST', `${wfPath}/query/__stack_trace`, { execution, query: {} });
        const list = payloadList(r.queryResult);
        stack.replaceChildren(h('h2', {}, 'Call stack'), h('pre', { class: 'json', id: 'stack-trace' }, list.map((p) => (typeof p === 'string' ? p : JSON.stringify(p, null, 2))).join('\n')));
      } catch (e) { stack.replaceChildren(h('h2', {}, 'Call stack'), errorBox(e)); }
    } }, 'Call stack'),
  );
  const stack = h('div', { id: 'stack' });

  const sa = info.searchAttributes?.indexedFields || {};
  const memo = info.memo?.fields || {};
  const first = events[0] ? eventAttributes(events[0]) : {};
  const last = events[events.length - 1];
  const lastAttrs = last ? eventAttributes(last) : {};
  const closing = last && /WORKFLOW_EXECUTION_(COMPLETED|FAILED|CANCELED|TERMINATED|TIMED_OUT|CONTINUED_AS_NEW)/.test(last.eventType);
  const parent = info.parentExecution;

  const summary = kv([
    ['Workflow ID', h('span', { class: 'mono', id: 'summary-workflow-id' }, id)],
    ['Run ID', h('span', { class: 'mono' }, runId)],
    ['Type', info.type?.name],
    ['Status', h('span', { id: 'summary-status' }, statusBadge(info.status))],
    ['Task queue', link(`/namespaces/${enc(ns)}/task-queues/${enc(info.taskQueue || '')}`, info.taskQueue || '')],
    ['Start', fmtTime(info.startTime)],
    info.executionTime && info.executionTime !== info.startTime ? ['Execution time', fmtTime(info.executionTime)] : null,
    info.closeTime ? ['Close', fmtTime(info.closeTime)] : null,
    ['History length', info.historyLength],
    parent ? ['Parent', link(`/namespaces/${enc(info.parentNamespaceId && ns)}/workflows/${enc(parent.workflowId)}/${enc(parent.runId)}`, parent.workflowId)] : null,
    info.rootExecution && info.rootExecution.workflowId !== id ? ['Root', link(`/namespaces/${enc(ns)}/workflows/${enc(info.rootExecution.workflowId)}/${enc(info.rootExecution.runId)}`, info.rootExecution.workflowId)] : null,
    Object.keys(sa).length ? ['Search attributes', kv(Object.entries(sa).map(([k, v]) => [k, searchAttributeValue(v)]))] : null,
    Object.keys(memo).length ? ['Memo', kv(Object.entries(memo).map(([k, v]) => [k, payloadsView([v], ns)]))] : null,
  ]);

  let result = h('span', { class: 'muted' }, running ? 'running' : '');
  if (closing) {
    if (lastAttrs.result !== undefined) result = payloadsView(lastAttrs.result, ns);
    else if (lastAttrs.failure) result = h('pre', { class: 'json' }, JSON.stringify(lastAttrs.failure, null, 2));
    else result = h('pre', { class: 'json' }, JSON.stringify(lastAttrs, null, 2));
  }

  const pending = described.pendingActivities || [];
  const pendingView = pending.length === 0 ? h('p', { class: 'muted' }, 'None.') : h('table', { id: 'pending-activities' },
    h('thead', {}, h('tr', {}, ['Activity', 'Type', 'State', 'Attempt', 'Last failure', 'Heartbeat details', 'Next retry / scheduled'].map((c) => h('th', {}, c)))),
    h('tbody', {}, pending.map((p) => h('tr', {},
      h('td', { class: 'mono' }, p.activityId), h('td', {}, p.activityType?.name || ''),
      h('td', {}, shortEnum(p.state, 'PENDING_ACTIVITY_STATE_')), h('td', {}, p.attempt || 1),
      h('td', {}, p.lastFailure?.message || ''), h('td', {}, p.heartbeatDetails ? payloadsView(p.heartbeatDetails, ns) : ''),
      h('td', {}, fmtTime(p.nextAttemptScheduleTime) || fmtTime(p.scheduledTime))))));
  const children = described.pendingChildren || openChildren(events);
  const childrenView = children.length === 0 ? h('p', { class: 'muted' }, 'None.') : h('table', { id: 'pending-children' },
    h('thead', {}, h('tr', {}, ['Workflow ID', 'Type', 'Run ID'].map((c) => h('th', {}, c)))),
    h('tbody', {}, children.map((c) => h('tr', {},
      h('td', {}, link(`/namespaces/${enc(ns)}/workflows/${enc(c.workflowId)}/${enc(c.runId || '')}`, c.workflowId)),
      h('td', {}, c.workflowTypeName || ''), h('td', { class: 'mono' }, c.runId || '')))));

  const historyBox = h('div', { id: 'history-box' }, historyTable(events, ns));
  const viewToggle = h('div', { class: 'toolbar' },
    h('button', { id: 'view-table', onclick: () => historyBox.replaceChildren(historyTable(events, ns)) }, 'Event table'),
    h('button', { id: 'view-timeline', onclick: () => historyBox.replaceChildren(timeline(events)) }, 'Compact timeline'),
    h('a', { href: `/api/v1${wfPath}/history?execution.runId=${enc(runId)}`, download: `${id}-history.json` }, 'Download JSON'));

  page.replaceChildren(
    h('h1', {}, link(`/namespaces/${enc(ns)}/workflows`, 'Workflows'), ' / ', h('span', { class: 'mono' }, id)),
    actions, stack,
    h('div', { class: 'grid2' },
      h('div', {}, h('h2', {}, 'Summary'), summary),
      h('div', {}, h('h2', {}, 'Input'), h('div', { id: 'workflow-input' }, payloadsView(first.input, ns)),
        h('h2', {}, 'Result'), h('div', { id: 'workflow-result' }, result))),
    h('h2', {}, `Pending activities (${pending.length})`), pendingView,
    h('h2', {}, `Pending child workflows (${children.length})`), childrenView,
    h('h2', {}, `History (${events.length} events)`), viewToggle, historyBox,
  );
}

// ---------- schedules ----------

function durationWords(d) {
  const s = parseFloat(d);
  if (!Number.isFinite(s)) return d;
  const units = [[86400, 'day'], [3600, 'hour'], [60, 'minute'], [1, 'second']];
  for (const [n, w] of units) if (s >= n && s % n === 0) return s / n === 1 ? `every ${w}` : `every ${s / n} ${w}s`;
  return `every ${s} seconds`;
}

function rangeWords(list, names) {
  return (list || []).map((r) => {
    const name = (v) => (names ? names[v] ?? v : v);
    const end = r.end && r.end > (r.start || 0) ? `–${name(r.end)}` : '';
    const step = r.step && r.step > 1 ? ` every ${r.step}` : '';
    return `${name(r.start || 0)}${end}${step}`;
  }).join(', ');
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = [null, 'Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

function specWords(spec) {
  if (!spec) return '';
  const parts = [];
  for (const i of spec.interval || []) parts.push(durationWords(i.interval) + (i.phase ? ` (offset ${i.phase})` : ''));
  for (const c of spec.structuredCalendar || []) {
    const time = `at ${rangeWords(c.hour) || '0'}h ${rangeWords(c.minute) || '0'}m ${rangeWords(c.second) || '0'}s`;
    const days = c.dayOfWeek ? ` on ${rangeWords(c.dayOfWeek, DAYS)}` : '';
    const dom = c.dayOfMonth ? ` on day ${rangeWords(c.dayOfMonth)}` : '';
    const months = c.month ? ` in ${rangeWords(c.month, MONTHS)}` : '';
    parts.push(time + days + dom + months + (c.comment ? ` (${c.comment})` : ''));
  }
  for (const c of spec.cronString || []) parts.push(`cron ${c}`);
  for (const c of spec.calendar || []) parts.push(`calendar ${JSON.stringify(c)}`);
  let words = parts.join('; ') || 'no times';
  if (spec.timezoneName) words += ` (${spec.timezoneName})`;
  if (spec.jitter) words += `, jitter up to ${spec.jitter}`;
  return words;
}

async function schedulesPage(page, ns) {
  const res = await api('GET', `/namespaces/${enc(ns)}/schedules?maximumPageSize=1000`);
  const list = res.schedules || [];
  page.replaceChildren(
    h('h1', {}, 'Schedules'),
    h('div', { class: 'toolbar' }, link(`/namespaces/${enc(ns)}/schedules/new`, h('button', { class: 'primary', id: 'create-schedule' }, 'Create schedule'))),
    list.length === 0 ? h('p', { class: 'muted' }, 'No schedules.') : h('table', { id: 'schedules' },
      h('thead', {}, h('tr', {}, ['Schedule ID', 'Workflow type', 'Spec', 'State', 'Next run'].map((c) => h('th', {}, c)))),
      h('tbody', {}, list.map((s) => h('tr', {},
        h('td', { class: 'mono' }, link(`/namespaces/${enc(ns)}/schedules/${enc(s.scheduleId)}`, s.scheduleId)),
        h('td', {}, s.info?.workflowType?.name || ''),
        h('td', {}, specWords(s.info?.spec)),
        h('td', {}, s.info?.paused ? 'Paused' : 'Running'),
        h('td', {}, fmtTime((s.info?.futureActionTimes || [])[0])))))),
  );
}

async function schedulePage(page, ns, id) {
  const path = `/namespaces/${enc(ns)}/schedules/${enc(id)}`;
  const d = await api('GET', path);
  const s = d.schedule || {};
  const info = d.info || {};
  const action = s.action?.startWorkflow || {};
  const paused = !!s.state?.paused;
  const act = async (title, fields, label, danger, perform, done) => {
    const values = await ask(title, fields, label, danger);
    if (!values) return;
    try { await perform(values); flash(page, done); setTimeout(render, 400); } catch (e) { flash(page, e.message, false); }
  };
  const patch = (p) => api('POST', `${path}/patch`, { patch: p, requestId: crypto.randomUUID() });
  const hourAgo = new Date(Date.now() - 3600e3).toISOString();
  const now = new Date().toISOString();
  page.replaceChildren(
    h('h1', {}, link(`/namespaces/${enc(ns)}/schedules`, 'Schedules'), ' / ', h('span', { class: 'mono' }, id)),
    h('div', { class: 'actions' },
      h('button', { id: paused ? 'schedule-unpause' : 'schedule-pause', onclick: () => act(paused ? 'Unpause schedule' : 'Pause schedule',
        [{ name: 'note', label: 'Note' }], paused ? 'Unpause' : 'Pause', false,
        (v) => patch(paused ? { unpause: v.note || 'Unpaused from the web UI' } : { pause: v.note || 'Paused from the web UI' }),
        paused ? 'Schedule unpaused.' : 'Schedule paused.') }, paused ? 'Unpause' : 'Pause'),
      h('button', { id: 'schedule-trigger', onclick: () => act('Trigger now', [], 'Trigger', false,
        () => patch({ triggerImmediately: {} }), 'Schedule triggered.') }, 'Trigger now'),
      h('button', { id: 'schedule-backfill', onclick: () => act('Backfill', [
        { name: 'start', label: 'From (RFC 3339)', value: hourAgo }, { name: 'end', label: 'To (RFC 3339)', value: now }], 'Backfill', false,
      (v) => patch({ backfillRequest: [{ startTime: v.start, endTime: v.end, overlapPolicy: 'SCHEDULE_OVERLAP_POLICY_ALLOW_ALL' }] }),
      'Backfill requested.') }, 'Backfill'),
      h('button', { id: 'schedule-delete', class: 'danger', onclick: async () => {
        const v = await ask(`Delete schedule ${id}?`, [], 'Delete', true);
        if (!v) return;
        try { await api('DELETE', path); go(`/namespaces/${enc(ns)}/schedules`); } catch (e) { flash(page, e.message, false); }
      } }, 'Delete')),
    h('div', { class: 'grid2' },
      h('div', {}, h('h2', {}, 'Schedule'), kv([
        ['Spec', h('span', { id: 'schedule-spec' }, specWords(s.spec))],
        ['State', h('span', { id: 'schedule-state' }, paused ? 'Paused' : 'Running')],
        s.state?.notes ? ['Notes', s.state.notes] : null,
        ['Overlap policy', shortEnum(s.policies?.overlapPolicy, 'SCHEDULE_OVERLAP_POLICY_')],
        ['Catch-up window', s.policies?.catchupWindow || ''],
        ['Workflow type', action.workflowType?.name || ''],
        ['Workflow ID', action.workflowId || ''],
        ['Task queue', action.taskQueue?.name || ''],
        ['Input', payloadsView(action.input, ns)],
        ['Actions taken', info.actionCount || '0'],
        ['Created', fmtTime(info.createTime)],
      ])),
      h('div', {},
        h('h2', {}, 'Upcoming runs'),
        h('ul', { id: 'upcoming' }, (info.futureActionTimes || []).map((t) => h('li', {}, fmtTime(t)))),
        h('h2', {}, 'Recent runs'),
        (info.recentActions || []).length === 0 ? h('p', { class: 'muted' }, 'None yet.') : h('table', { id: 'recent-actions' },
          h('thead', {}, h('tr', {}, ['Scheduled', 'Started', 'Workflow'].map((c) => h('th', {}, c)))),
          h('tbody', {}, [...info.recentActions].reverse().map((a) => h('tr', {},
            h('td', {}, fmtTime(a.scheduleTime)), h('td', {}, fmtTime(a.actualTime)),
            h('td', { class: 'mono' }, a.startWorkflowResult ? link(`/namespaces/${enc(ns)}/workflows/${enc(a.startWorkflowResult.workflowId)}/${enc(a.startWorkflowResult.runId)}`, a.startWorkflowResult.workflowId) : '')))))),
    ),
  );
}

function scheduleForm(page, ns) {
  const field = (name, label, attrs = {}) => [h('label', { for: `s-${name}` }, label), h('input', { id: `s-${name}`, name, ...attrs })];
  const form = h('form', { class: 'panel', id: 'schedule-form' },
    field('id', 'Schedule ID', { required: true }),
    field('workflowType', 'Workflow type', { required: true }),
    field('taskQueue', 'Task queue', { required: true }),
    field('workflowId', 'Workflow ID (runs get the time appended)'),
    h('label', { for: 's-input' }, 'Input (JSON; an array is several arguments)'), h('textarea', { id: 's-input', name: 'input' }),
    h('label', { for: 's-kind' }, 'When'),
    h('select', { id: 's-kind', name: 'kind' }, h('option', { value: 'interval' }, 'Every (interval, e.g. 1h, 15m, 30s)'), h('option', { value: 'cron' }, 'Cron string')),
    field('when', 'Interval or cron string', { required: true, placeholder: '1h' }),
    h('label', {}, h('input', { type: 'checkbox', name: 'paused', id: 's-paused' }), ' Start paused'),
    h('menu', {}, h('button', { class: 'primary', type: 'submit' }, 'Create')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = Object.fromEntries(new FormData(form));
    const units = { s: 1, m: 60, h: 3600, d: 86400 };
    let spec;
    if (v.kind === 'interval') {
      const m = String(v.when).trim().match(/^(\d+)\s*([smhd])$/);
      if (!m) return flash(page, 'Write the interval as a number and a unit: 30s, 15m, 1h, 1d.', false);
      spec = { interval: [{ interval: `${Number(m[1]) * units[m[2]]}s` }] };
    } else spec = { cronString: [String(v.when).trim()] };
    let input;
    try { input = parseArgs(v.input); } catch (e) { return flash(page, `Input: ${e.message}`, false); }
    const ok = await ask(`Create schedule ${v.id}?`, [], 'Create');
    if (!ok) return;
    try {
      await api('POST', `/namespaces/${enc(ns)}/schedules/${enc(v.id)}`, {
        schedule: {
          spec,
          action: { startWorkflow: { workflowId: v.workflowId || v.id, workflowType: { name: v.workflowType }, taskQueue: { name: v.taskQueue }, input } },
          state: { paused: !!v.paused },
        },
        requestId: crypto.randomUUID(),
      });
      go(`/namespaces/${enc(ns)}/schedules/${enc(v.id)}`);
    } catch (e) { flash(page, e.message, false); }
  });
  page.replaceChildren(h('h1', {}, link(`/namespaces/${enc(ns)}/schedules`, 'Schedules'), ' / New'), form);
}

// ---------- namespaces, task queues, search attributes, settings ----------

async function namespacesPage(page) {
  const res = await api('GET', '/namespaces');
  page.replaceChildren(h('h1', {}, 'Namespaces'), h('table', { id: 'namespaces' },
    h('thead', {}, h('tr', {}, ['Name', 'State', 'Retention', 'Description', 'Owner'].map((c) => h('th', {}, c)))),
    h('tbody', {}, (res.namespaces || []).map((n) => h('tr', {},
      h('td', {}, link(`/namespaces/${enc(n.namespaceInfo.name)}/workflows`, n.namespaceInfo.name)),
      h('td', {}, shortEnum(n.namespaceInfo.state, 'NAMESPACE_STATE_')),
      h('td', {}, n.config?.workflowExecutionRetentionTtl || ''),
      h('td', {}, n.namespaceInfo.description || ''), h('td', {}, n.namespaceInfo.ownerEmail || ''))))));
}

async function taskQueuePage(page, ns, name) {
  const lookup = h('form', { class: 'toolbar', onsubmit: (ev) => { ev.preventDefault(); go(`/namespaces/${enc(ns)}/task-queues/${enc(input.value.trim())}`); } });
  const input = h('input', { id: 'task-queue-name', value: name || '', placeholder: 'Task queue name' });
  lookup.append(input, h('button', { class: 'primary', type: 'submit' }, 'Look up'));
  if (!name) return page.replaceChildren(h('h1', {}, 'Task queues'), lookup);
  const kinds = [['Workflow', 'TASK_QUEUE_TYPE_WORKFLOW'], ['Activity', 'TASK_QUEUE_TYPE_ACTIVITY']];
  const sections = await Promise.all(kinds.map(async ([label, type]) => {
    const d = await api('GET', `/namespaces/${enc(ns)}/task-queues/${enc(name)}?taskQueueType=${type}&reportStats=true`);
    const backlog = d.stats?.approximateBacklogCount ?? d.taskQueueStatus?.backlogCountHint;
    const pollers = d.pollers || [];
    return [h('h2', {}, `${label} pollers (${pollers.length})`),
      backlog !== undefined ? h('p', {}, `Backlog: ${backlog}`) : null,
      pollers.length === 0 ? h('p', { class: 'muted' }, 'No pollers seen recently.') : h('table', { class: 'pollers' },
        h('thead', {}, h('tr', {}, ['Identity', 'Last access', 'Rate per second'].map((c) => h('th', {}, c)))),
        h('tbody', {}, pollers.map((p) => h('tr', {}, h('td', { class: 'mono' }, p.identity), h('td', {}, fmtTime(p.lastAccessTime)), h('td', {}, p.ratePerSecond ?? '')))))];
  }));
  page.replaceChildren(h('h1', {}, 'Task queue ', h('span', { class: 'mono' }, name)), lookup, ...sections.flat());
}

async function searchAttributesPage(page, ns) {
  const res = await api('GET', `/namespaces/${enc(ns)}/search-attributes`);
  const rows = (obj, kind) => Object.entries(obj || {}).sort().map(([k, v]) => h('tr', {}, h('td', { class: 'mono' }, k), h('td', {}, shortEnum(v, 'INDEXED_VALUE_TYPE_')), h('td', {}, kind)));
  page.replaceChildren(h('h1', {}, 'Search attributes'), h('table', { id: 'search-attributes' },
    h('thead', {}, h('tr', {}, ['Name', 'Type', 'Kind'].map((c) => h('th', {}, c)))),
    h('tbody', {}, rows(res.customAttributes, 'custom'), rows(res.systemAttributes, 'system'))));
}

function settingsPage(page) {
  const s = settings();
  const codec = h('input', { id: 'codec-endpoint', value: s.codecEndpoint || '', placeholder: 'http://localhost:8888' });
  const columns = h('input', { id: 'columns', value: s.columns || '', placeholder: 'CustomKeywordField, BuildIds' });
  const form = h('form', { class: 'panel', id: 'settings-form', onsubmit: (ev) => {
    ev.preventDefault();
    saveSettings({ ...settings(), codecEndpoint: codec.value.trim(), columns: columns.value.trim() });
    flash(page, 'Settings saved (in this browser).');
  } },
  h('label', { for: 'codec-endpoint' }, 'Codec endpoint (Temporal\'s remote codec protocol: POST /decode)'), codec,
  h('p', { class: 'muted' }, 'Payloads this browser cannot read (encrypted ones) are sent to this endpoint to be decoded; it must allow requests from this page\'s origin (CORS). Nothing is sent anywhere else.'),
  h('label', { for: 'columns' }, 'Search attribute columns in the workflow list (comma-separated)'), columns,
  h('menu', {}, h('button', { class: 'primary', type: 'submit' }, 'Save')));
  page.replaceChildren(h('h1', {}, 'Settings'), form);
}

render();
