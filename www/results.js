// The results panel: a layer slider (with Play) over the map, colouring, train/test, hover and
// tap for a place's numbers, zoom and pan, and exports. The figures come from the wasm core (the
// same scenes the command line writes as PNG); the map scene carries its points' positions and
// errors, so the page does no projection maths.
import { IDENTITY, drawScene } from './scene.js';

const $ = (id) => document.getElementById(id);
let current = null;   // { handle (the core's Report), reportJson, report (parsed), scenes, verdict }
let playing = null;

// The map on screen: its scene (with `points`), the view {scale, x, y} in scene units, and the
// place under the pointer or last tapped. Tests read it as window.probelab.map.
const map = { scene: null, view: { ...IDENTITY }, drawnView: null, active: null };
const MAX_SCALE = 40;
const HIT_RADIUS = 8;   // CSS pixels

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = Object.assign(document.createElement('a'), { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function drawLayer(layer) {
  const rep = current.report;
  $('layer-value').textContent = `${layer}${layer === rep.selected.layer ? ' (selected)' : ''}`;
  if (rep.dataset.target !== 'space') return;
  const json = current.handle.map_scene(layer, $('color-by').value, $('map-split').value === 'all');
  if (json) {
    map.scene = JSON.parse(json);
    drawMap();
    refreshTip();
    fillPointsTable(rep, layer);
  }
  // The layer lives in the URL, so a link reproduces the view.
  const url = new URL(location.href);
  url.searchParams.set('layer', String(layer));
  history.replaceState(null, '', url);
  linkToLab();
}

/** A table row of text cells, the first a row header. */
function tableRow(cells) {
  const tr = document.createElement('tr');
  cells.forEach((c, i) => {
    const td = document.createElement(i === 0 ? 'th' : 'td');
    if (i === 0) td.scope = 'row';
    td.textContent = String(c);
    tr.append(td);
  });
  return tr;
}

/**
 * The per-group breakdown: each group's counts, its test entities' mean error, (for places)
 * their proximity error, and the median of each "how well known" column (population…). Not R² within a group: against one region's own mean it is negative
 * by construction. All cells are text.
 */
function fillGroupTable(rep) {
  const space = rep.dataset.target === 'space';
  $('by-group-error').textContent = space ? 'mean error (km)' : 'mean error (years)';
  $('by-group-proximity').hidden = !space;
  const body = $('by-group').querySelector('tbody');
  const fixed = (v, digits) => (v === null || v === undefined ? 'n/a' : v.toFixed(digits));
  // Whom the map serves: each "how well known" column's median per group, after the errors.
  const coverage = rep.coverage ?? [];
  const head = $('by-group').querySelector('thead tr');
  head.querySelectorAll('.coverage-col').forEach((th) => th.remove());
  for (const c of coverage) {
    head.append(Object.assign(document.createElement('th'), { scope: 'col', className: 'coverage-col', textContent: `median ${c.column} (test)` }));
  }
  body.replaceChildren(...rep.by_group.map((g) => {
    const cells = [g.group, g.n_train, g.n_test, fixed(space ? g.km_mean : g.years_mae, 0)];
    if (space) cells.push(fixed(g.proximity_error, 2));
    for (const c of coverage) cells.push(fixed(c.by_group.find((x) => x.group === g.group)?.median, 0));
    return tableRow(cells);
  }));
  $('by-group').hidden = rep.by_group.length === 0;
}

/**
 * What the names give away: per flag of the names' form, the held-out R² of the probe on the
 * flagged test entities, on the others, and of each baseline on the flagged ones; their mean
 * error and share of the squared error. All cells are text.
 */
function fillFlagTable(rep) {
  const flags = rep.name_flags ?? [];
  const space = rep.dataset.target === 'space';
  $('name-flags-error').textContent = space ? 'mean error (km)' : 'mean error (years)';
  const fixed = (v, digits) => (v === null || v === undefined ? 'n/a' : v.toFixed(digits));
  $('name-flags').querySelector('tbody').replaceChildren(...flags.map((f) => {
    const tr = tableRow([f.description, `${f.n} (${f.n_test})`, fixed(f.r2_test, 2), fixed(f.r2_test_others, 2),
      fixed(f.random_init_r2_test, 2), fixed(f.ngram_r2_test, 2), fixed(f.knn_r2_test, 2), fixed(f.error_test, 0),
      f.share_of_error === null || f.share_of_error === undefined ? 'n/a' : `${(100 * f.share_of_error).toFixed(0)}%`]);
    tr.dataset.flag = f.flag;
    return tr;
  }));
  $('name-flags').hidden = flags.length === 0;
}

/**
 * The figure's points as a table for screen readers: the map's places at the shown layer, or
 * the time scatter's entities at the selected layer.
 */
function fillPointsTable(rep, layer) {
  const space = rep.dataset.target === 'space';
  const head = space ? ['place', 'group', 'split', 'true position', 'predicted position', 'error (km)']
    : ['entity', 'split', 'true year', 'predicted year', 'error (years)'];
  const rows = space
    ? (map.scene?.points ?? []).map((p) => [p.name, p.group || '', p.split,
      `${fmtLat(p.true_lat)}, ${fmtLon(p.true_lon)}`, `${fmtLat(p.pred_lat)}, ${fmtLon(p.pred_lon)}`, Math.round(p.error_km)])
    : rep.entities.filter((e) => e.split === 'test').map((e) => [e.name, e.split,
      Math.round(e.truth[0]), Math.round(e.predicted[0]), Math.round(e.error)]);
  $('points-caption').textContent = space
    ? `Places on the map at layer ${layer}: true and predicted positions`
    : `Held-out entities at layer ${rep.selected.layer}: true and predicted years`;
  $('points-head').replaceChildren(...head.map((h) => Object.assign(document.createElement('th'), { scope: 'col', textContent: h })));
  $('points-table').querySelector('tbody').replaceChildren(...rows.map((r) => {
    const tr = document.createElement('tr');
    for (const c of r) tr.append(Object.assign(document.createElement('td'), { textContent: String(c) }));
    return tr;
  }));
}

/**
 * The score-by-layer chart, laid out by the core for the width it is shown at (beside the map
 * on a wide screen it is under half the page): its text keeps its size instead of shrinking.
 */
function drawLayerChart() {
  const shown = $('layers-canvas').parentElement.clientWidth;
  const scene = shown > 0 ? JSON.parse(current.handle.layer_scene(shown)) : current.scenes.layers;
  drawScene($('layers-canvas'), scene);
  // Tests read the drawn charts' scenes as window.probelab.charts.
  if (window.probelab) window.probelab.charts = { layers: scene, learning: current.scenes.learning ?? null, causal: current.scenes.causal ?? null };
}

/** "Open in the lab": this view's URL (dataset, split, layer, model, prompt) without ?embed. */
export function linkToLab() {
  const url = new URL(location.href);
  url.searchParams.delete('embed');
  url.searchParams.delete('title');
  $('open-lab').href = url.href;
}

// Where each verdict line's figure is on the page (the time scatter is drawn on the map canvas).
const FIGURE_IDS = { layers: 'layers-canvas', map: 'map-wrap', time: 'map-wrap', by_group: 'by-group' };
const OUTCOME_WORDS = { yes: 'passes', no: 'fails', not_run: 'not run' };

const PLAN_LABELS = { confirmatory: 'Confirmatory', exploratory: 'Exploratory', unrecorded: 'Plan not recorded' };

/**
 * The badge that says whether this result's plan was the first scored on its test set
 * (confirmatory) or one of several (exploratory, with how many): the core's sentence after a
 * one-word label. Tests read data-status and data-plans.
 */
function fillPlanBadge(plan, sentence) {
  const badge = $('plan-badge');
  badge.hidden = !plan;
  if (!plan) return;
  badge.className = `plan-badge ${plan.status}`;
  badge.dataset.status = plan.status;
  badge.dataset.plans = String(plan.plans_tried);
  const label = document.createElement('strong');
  label.textContent = PLAN_LABELS[plan.status] || plan.status;
  // The label says the status, so the sentence goes on from there.
  badge.replaceChildren(label, ` — ${sentence.replace(/^(confirmatory|exploratory): /, '')}`);
}

/**
 * The verdict card from the core (the command line prints the same): the headline, then one
 * line per control with its mark, a link to the figure that shows it, and its figure. Each line
 * keeps the numbers it was built from in data-value / data-against, for tests and scripts.
 */
function fillVerdict(handle) {
  const v = JSON.parse(handle.verdict());
  $('verdict-headline').textContent = v.headline;
  fillPlanBadge(JSON.parse(current.reportJson).plan, v.plan);
  // How far the headline moves when the random split is re-drawn.
  $('verdict-seeds').textContent = v.seeds ? v.seeds[0].toUpperCase() + v.seeds.slice(1) : '';
  $('verdict-seeds').hidden = !v.seeds;
  // A control that reaches the probe at some layer is said before the checks.
  $('verdict-warning').textContent = v.warning ?? '';
  $('verdict-warning').hidden = !v.warning;
  $('verdict-checks').replaceChildren(...v.checks.map((c) => {
    const li = document.createElement('li');
    li.className = `check ${c.outcome}`;
    li.dataset.key = c.key;
    if (c.value !== null) li.dataset.value = String(c.value);
    if (c.against !== null) li.dataset.against = String(c.against);
    const mark = document.createElement('span');
    mark.className = 'mark';
    mark.textContent = c.mark;
    mark.setAttribute('role', 'img');
    mark.setAttribute('aria-label', OUTCOME_WORDS[c.outcome]);
    const link = document.createElement('a');
    link.href = `#${FIGURE_IDS[c.figure] || 'layers-canvas'}`;
    link.textContent = c.label;
    li.append(mark, ' ', link, `: ${c.detail}`);
    return li;
  }));
  $('verdict').hidden = false;
  return v;
}

/**
 * Shows a fitted report: `handle` (the core's Report, which this panel now owns), `reportJson`
 * (its text, for the export) and `scenes` ({layers, map | time, learning when it ran}).
 */
export function showResults(handle, reportJson, scenes, initialLayer) {
  if (current) current.handle.free();
  current = { handle, reportJson, report: JSON.parse(reportJson), scenes };
  const rep = current.report;
  const slider = $('layer');
  slider.max = String(rep.model.n_layers);
  const start = Number.isInteger(initialLayer) && initialLayer >= 0 && initialLayer <= rep.model.n_layers
    ? initialLayer : rep.selected.layer;
  slider.value = String(start);
  $('map-controls').hidden = rep.dataset.target !== 'space';
  $('map-help').hidden = rep.dataset.target !== 'space';
  // Training places at every layer need the report's in-sample predictions; leave-one-group-out
  // has none (every place is predicted by a probe that never saw its group).
  const lp = rep.layer_predictions;
  const hasTrain = (lp?.train_entities?.length ?? 0) > 0 || rep.entities.some((e) => e.split === 'train');
  const allOption = $('map-split').querySelector('option[value="all"]');
  allOption.disabled = !hasTrain;
  if (!hasTrain) $('map-split').value = 'test';
  $('map-split').title = hasTrain ? 'Training places are faded; their predictions are in-sample (optimistic)'
    : 'No training places to show: under leave-one-group-out every place is held out once';
  map.scene = null;
  map.view = { ...IDENTITY };
  hideTip();
  if (window.probelab) window.probelab.map = map;
  current.verdict = fillVerdict(handle);
  drawLayerChart();
  fillGroupTable(rep);
  fillFlagTable(rep);
  // How much data the probe needs (a report from before the learning step has no such scene).
  $('learning-wrap').hidden = !scenes.learning;
  if (scenes.learning) drawScene($('learning-canvas'), scenes.learning);
  // The causal test's figures, when it ran: the answer against the dose, and where answers move.
  for (const [name, wrap, canvas] of [['causal', 'causal-dose-wrap', 'causal-dose-canvas'], ['causal_map', 'causal-map-wrap', 'causal-map-canvas']]) {
    $(wrap).hidden = !scenes[name];
    if (scenes[name]) drawScene($(canvas), scenes[name]);
  }
  if (rep.dataset.target === 'space') drawLayer(start);
  else {
    drawScene($('map-canvas'), scenes.time);
    fillPointsTable(rep, rep.selected.layer);
  }
  $('map-canvas').setAttribute('aria-label', rep.dataset.target === 'space'
    ? 'Map of true and predicted positions; the table of places below lists them'
    : 'Predicted against true year; the table of entities below lists them');
  $('map-canvas').classList.toggle('interactive', rep.dataset.target === 'space');
  if (rep.dataset.target !== 'space') $('map-canvas').classList.remove('zoomed');
  return current.report;
}

// A new width (a turned phone, a resized window) lays the chart out again.
let resizing = 0;
window.addEventListener('resize', () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => current && drawLayerChart(), 150);
});
$('layer').addEventListener('input', () => current && drawLayer(Number($('layer').value)));
$('color-by').addEventListener('change', () => current && drawLayer(Number($('layer').value)));
$('map-split').addEventListener('change', () => current && drawLayer(Number($('layer').value)));
// Reduced motion: no layer animation; the slider still steps through the layers.
const reducedMotion = matchMedia('(prefers-reduced-motion: reduce)');
const applyMotion = () => {
  $('play').hidden = reducedMotion.matches;
  if (reducedMotion.matches && playing) { clearInterval(playing); playing = null; $('play').textContent = 'Play layers'; }
};
reducedMotion.addEventListener('change', applyMotion);
applyMotion();
$('play').addEventListener('click', () => {
  if (!current) return;
  if (playing) { clearInterval(playing); playing = null; $('play').textContent = 'Play layers'; return; }
  $('play').textContent = 'Stop';
  let layer = 0;
  playing = setInterval(() => {
    $('layer').value = String(layer);
    drawLayer(layer);
    layer += 1;
    if (layer > current.report.model.n_layers) { clearInterval(playing); playing = null; $('play').textContent = 'Play layers'; }
  }, 400);
});
$('export-map').addEventListener('click', () => $('map-canvas').toBlob((b) => download(b, 'map.png')));
$('export-layers').addEventListener('click', () => $('layers-canvas').toBlob((b) => download(b, 'layers.png')));
$('export-csv').addEventListener('click', () =>
  download(new Blob([current.handle.predictions_csv()], { type: 'text/csv' }), 'predictions.csv'));
$('export-report').addEventListener('click', () =>
  download(new Blob([current.reportJson], { type: 'application/json' }), 'report.json'));

// ---- The map: view, hit-testing, tooltip --------------------------------------------------

/** Redraws the map through the current view, and the highlight of the active place. */
function drawMap() {
  if (!map.scene) return;
  drawScene($('map-canvas'), map.scene, map.view);
  map.drawnView = { ...map.view };
  $('map-canvas').classList.toggle('zoomed', map.view.scale > 1);
  drawHighlight();
}

let frame = 0;
function scheduleDraw() {
  if (!frame) frame = requestAnimationFrame(() => { frame = 0; drawMap(); refreshTip(); });
}

/** Scene units per CSS pixel of the map canvas (its content box), and that box's corner. */
function canvasBox() {
  const c = $('map-canvas');
  const r = c.getBoundingClientRect();
  return { left: r.left + c.clientLeft, top: r.top + c.clientTop, k: map.scene.width / c.clientWidth };
}

/** A client (viewport) position → canvas scene units, before the view. */
function toCanvas(clientX, clientY) {
  const b = canvasBox();
  return [(clientX - b.left) * b.k, (clientY - b.top) * b.k];
}

/** The drawn place nearest a client position within HIT_RADIUS pixels, or null. */
function hitTest(clientX, clientY) {
  if (!map.scene?.points) return null;
  const { k } = canvasBox();
  const [cx, cy] = toCanvas(clientX, clientY);
  const { scale, x, y } = map.view;
  const sx = (cx - x) / scale, sy = (cy - y) / scale;
  let best = null;
  let bestD = (HIT_RADIUS * k / scale) ** 2;
  // Later points are drawn on top (test over train): on a tie the later one wins.
  for (const p of map.scene.points) {
    for (const [px, py] of [p.true_xy, p.pred_xy]) {
      const d = (px - sx) ** 2 + (py - sy) ** 2;
      if (d <= bestD) { bestD = d; best = p; }
    }
  }
  return best;
}

const sameplace = (a, b) => a && b && a.name === b.name && a.split === b.split
  && a.true_lat === b.true_lat && a.true_lon === b.true_lon;

const fmtLat = (v) => `${Math.abs(v).toFixed(2)}°${v >= 0 ? 'N' : 'S'}`;
const fmtLon = (v) => `${Math.abs(v).toFixed(2)}°${v >= 0 ? 'E' : 'W'}`;

/** Fills and places the tooltip for place `p` near a client position. Text only: names come
 * from the user's files. */
function showTip(p, clientX, clientY) {
  map.active = { point: p, clientX, clientY };
  const tip = $('map-tip');
  const line = (text, cls) => {
    const d = document.createElement('div');
    d.textContent = text;
    if (cls) d.className = cls;
    return d;
  };
  tip.replaceChildren(
    line(p.name, 'tip-name'),
    line(`${p.group ? p.group + ' · ' : ''}${p.split === 'test' ? 'test (held out)' : 'train (in-sample)'}`, 'tip-meta'),
    line(`true ${fmtLat(p.true_lat)}, ${fmtLon(p.true_lon)}`),
    line(`predicted ${fmtLat(p.pred_lat)}, ${fmtLon(p.pred_lon)}`),
    line(`error ${Math.round(p.error_km)} km`),
  );
  tip.hidden = false;
  const wrap = $('map-wrap').getBoundingClientRect();
  let left = clientX - wrap.left + 14;
  let top = clientY - wrap.top + 14;
  if (left + tip.offsetWidth > wrap.width) left = Math.max(0, clientX - wrap.left - tip.offsetWidth - 14);
  if (top + tip.offsetHeight > wrap.height) top = Math.max(0, clientY - wrap.top - tip.offsetHeight - 14);
  tip.style.left = `${left}px`;
  tip.style.top = `${top}px`;
  drawHighlight();
}

function hideTip() {
  map.active = null;
  $('map-tip').hidden = true;
  drawHighlight();
}

/** After a redraw (layer, split, colour, view): the same place's new numbers, or no tooltip. */
function refreshTip() {
  if (!map.active) return;
  const { point, clientX, clientY } = map.active;
  const p = map.scene?.points?.find((q) => sameplace(q, point));
  if (p) showTip(p, clientX, clientY);
  else hideTip();
}

/** Rings round the active place's two markers on the overlay canvas (not part of the export). */
function drawHighlight() {
  const c = $('map-canvas'), o = $('map-overlay');
  const dpr = window.devicePixelRatio || 1;
  o.style.left = `${c.offsetLeft + c.clientLeft}px`;
  o.style.top = `${c.offsetTop + c.clientTop}px`;
  o.style.width = `${c.clientWidth}px`;
  o.style.height = `${c.clientHeight}px`;
  if (o.width !== c.width || o.height !== c.height) { o.width = c.width; o.height = c.height; }
  const ctx = o.getContext('2d');
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, o.width, o.height);
  const p = map.active?.point;
  if (!p || !map.scene) return;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const { scale, x, y } = map.view;
  const [ax, ay] = [x + scale * p.true_xy[0], y + scale * p.true_xy[1]];
  const [bx, by] = [x + scale * p.pred_xy[0], y + scale * p.pred_xy[1]];
  ctx.strokeStyle = '#1d2330';
  ctx.lineWidth = 1.5;
  ctx.setLineDash([3, 2]);
  ctx.beginPath(); ctx.moveTo(ax, ay); ctx.lineTo(bx, by); ctx.stroke();
  ctx.setLineDash([]);
  for (const [px, py] of [[ax, ay], [bx, by]]) {
    ctx.beginPath(); ctx.arc(px, py, 6, 0, 2 * Math.PI); ctx.stroke();
  }
}

/** Keeps the view inside the scene: scale in [1, MAX_SCALE], no empty margin. */
function clampView(v) {
  const { width: w, height: h } = map.scene;
  const scale = Math.min(MAX_SCALE, Math.max(1, v.scale));
  return {
    scale,
    x: Math.min(0, Math.max(w - w * scale, v.x)),
    y: Math.min(0, Math.max(h - h * scale, v.y)),
  };
}

/** Zooms by `factor` keeping the scene point under canvas position (cx, cy) in place. */
function zoomAt(cx, cy, factor, from = map.view) {
  const scale = Math.min(MAX_SCALE, Math.max(1, from.scale * factor));
  const f = scale / from.scale;
  map.view = clampView({ scale, x: cx - (cx - from.x) * f, y: cy - (cy - from.y) * f });
  scheduleDraw();
}

function resetView() {
  map.view = { ...IDENTITY };
  scheduleDraw();
}

const mapCanvas = $('map-canvas');
const interactive = () => map.scene && current?.report.dataset.target === 'space';
const pointers = new Map();   // pointerId → {x, y}
let drag = null;              // one pointer down: {x, y, view, moved}
let pinch = null;             // two pointers down: {d, mid, view}

function pinchState() {
  const [a, b] = [...pointers.values()];
  return { d: Math.hypot(a.x - b.x, a.y - b.y) || 1, mid: [(a.x + b.x) / 2, (a.y + b.y) / 2], view: { ...map.view } };
}

mapCanvas.addEventListener('pointerdown', (e) => {
  if (!interactive() || e.button > 0) return;
  mapCanvas.setPointerCapture?.(e.pointerId);
  pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
  if (pointers.size === 1) {
    drag = { x: e.clientX, y: e.clientY, view: { ...map.view }, moved: false };
  } else if (pointers.size === 2) {
    drag = null;
    pinch = pinchState();
  }
});

mapCanvas.addEventListener('pointermove', (e) => {
  if (!interactive()) return;
  if (pointers.has(e.pointerId)) pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
  if (pinch && pointers.size >= 2) {
    const now = pinchState();
    const { k } = canvasBox();
    const [mx, my] = toCanvas(...now.mid);
    // Zoom about the fingers' midpoint, and follow it as it moves.
    const shifted = { ...pinch.view, x: pinch.view.x + (now.mid[0] - pinch.mid[0]) * k, y: pinch.view.y + (now.mid[1] - pinch.mid[1]) * k };
    zoomAt(mx, my, now.d / pinch.d, shifted);
    hideTip();
    return;
  }
  if (drag && pointers.has(e.pointerId)) {
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (!drag.moved && Math.hypot(dx, dy) < 4) return;
    drag.moved = true;
    const { k } = canvasBox();
    map.view = clampView({ ...drag.view, x: drag.view.x + dx * k, y: drag.view.y + dy * k });
    mapCanvas.classList.add('dragging');
    hideTip();
    scheduleDraw();
    return;
  }
  if (e.pointerType === 'mouse') {
    const p = hitTest(e.clientX, e.clientY);
    if (p) showTip(p, e.clientX, e.clientY);
    else if (map.active) hideTip();
  }
});

function pointerEnd(e) {
  if (!pointers.has(e.pointerId)) return;
  pointers.delete(e.pointerId);
  if (pinch) {
    pinch = null;
    // The finger left on the glass pans from here, and is not a tap.
    const rest = [...pointers.values()][0];
    drag = rest ? { x: rest.x, y: rest.y, view: { ...map.view }, moved: true } : null;
    return;
  }
  if (drag && !drag.moved && e.type === 'pointerup') {
    // A tap or a click: the place there, or nothing.
    const p = hitTest(e.clientX, e.clientY);
    if (p) showTip(p, e.clientX, e.clientY);
    else hideTip();
  }
  drag = null;
  mapCanvas.classList.remove('dragging');
}
mapCanvas.addEventListener('pointerup', pointerEnd);
mapCanvas.addEventListener('pointercancel', pointerEnd);
mapCanvas.addEventListener('pointerleave', (e) => {
  if (e.pointerType === 'mouse' && !drag && map.active) hideTip();
});
mapCanvas.addEventListener('wheel', (e) => {
  if (!interactive()) return;
  e.preventDefault();
  const unit = e.deltaMode === 1 ? 33 : e.deltaMode === 2 ? 400 : 1;
  const [cx, cy] = toCanvas(e.clientX, e.clientY);
  zoomAt(cx, cy, Math.exp(-e.deltaY * unit * 0.002));
  if (map.active) map.active = { ...map.active, clientX: e.clientX, clientY: e.clientY };
}, { passive: false });
mapCanvas.addEventListener('dblclick', (e) => { if (interactive()) { e.preventDefault(); resetView(); } });

const zoomCentre = (factor) => {
  if (!interactive()) return;
  zoomAt(map.scene.width / 2, map.scene.height / 2, factor);
};
$('zoom-in').addEventListener('click', () => zoomCentre(1.6));
$('zoom-out').addEventListener('click', () => zoomCentre(1 / 1.6));
$('zoom-reset').addEventListener('click', () => interactive() && resetView());
// The map from the keyboard (the map box is focusable): + and − zoom, arrows pan, 0 resets.
$('map-wrap').addEventListener('keydown', (e) => {
  if (!interactive() || e.altKey || e.ctrlKey || e.metaKey) return;
  const step = 0.1 * map.scene.width;
  const pan = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] }[e.key];
  if (e.key === '+' || e.key === '=') zoomCentre(1.6);
  else if (e.key === '-' || e.key === '_') zoomCentre(1 / 1.6);
  else if (e.key === '0') resetView();
  else if (pan) {
    map.view = clampView({ ...map.view, x: map.view.x + pan[0], y: map.view.y + pan[1] });
    scheduleDraw();
  } else return;
  e.preventDefault();
});

/**
 * "Does the model use it?": the causal block of the shown report as a table (one row per axis,
 * then erasure and side effects) and a line on the question's baseline; the question's
 * defaults follow the dataset's kind. Without a causal block, only the Run button shows.
 */
export function fillCausal(rep) {
  const space = rep.dataset.target === 'space';
  $('causal-panel').hidden = false;
  $('causal-readout').placeholder = space ? 'The continent where {name} is located is' : '{name} is from the';
  $('causal-column').placeholder = space ? 'continent' : 'century';
  const c = rep.causal;
  const table = $('causal-table');
  const body = table.querySelector('tbody');
  body.replaceChildren();
  table.hidden = !c;
  $('causal-baseline').hidden = !c;
  if (!c) return;
  const unit = space ? '°' : ' years';
  const fmt = (v, digits = 2) => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a');
  const signed = (v, digits = 2) => (Number.isFinite(v) ? (v >= 0 ? '+' : '') + v.toFixed(digits) : 'n/a');
  const fmtP = (p) => (Number.isFinite(p) ? (p < 0.001 ? '< 0.001' : p.toFixed(3)) : 'n/a');
  const b = c.baseline;
  const layers = (c.edited_layers || []).length > 1 ? `Layers ${c.edited_layers[0]}–${c.edited_layers[c.edited_layers.length - 1]} (each along its own probe)` : `Layer ${c.layer}`;
  $('causal-baseline').textContent = `${layers}, edits at the name's ${c.positions === 'all' ? 'tokens' : 'last token'}, ${c.n_entities} test entities. `
    + `Asked "${c.readout}" (answers: ${c.candidates.join(', ')}), the model is right ${fmt(100 * b.accuracy, 0)}% of the time `
    + `against ${fmt(100 * b.chance, 0)}% by chance (p ${fmtP(b.p_value)})`
    + (b.answerable ? '.' : ': it does not answer the question, so these edits cannot show whether it uses the direction.');
  for (const a of c.axes) {
    const top = Math.max(...a.doses.map((d) => Math.abs(d.dose)));
    const nulls = [...a.null_random, ...a.null_orthogonal, ...(a.null_control_task === null || a.null_control_task === undefined ? [] : [a.null_control_task])];
    body.append(tableRow([
      `${a.target} (×${fmt(a.largest_edit_relative_norm, 2)} the stream's norm at +${top}${unit})`,
      `${signed(a.effect * top)}${unit} at +${top}${unit}`,
      fmtP(a.p_value),
      `${signed(Math.min(...nulls) * top)} to ${signed(Math.max(...nulls) * top)}${unit} (${nulls.length})`,
      `${signed(a.slope, 4)} (r ${fmt(a.correlation)})`,
    ]));
  }
  const drops = c.erasure.null_drops;
  body.append(tableRow([
    'erasing the probe\'s directions',
    `true answer's probability ${signed(-c.erasure.drop_p_true, 3)}`,
    fmtP(c.erasure.p_value),
    `${signed(-Math.max(...drops), 3)} to ${signed(-Math.min(...drops), 3)} (${drops.length} random subspaces)`,
    '',
  ]));
  body.append(tableRow([
    `side effects (${c.side_effects.n_prompts} unrelated completions)`,
    `${fmt(c.side_effects.probe_mean_abs_change, 3)} nats per token`,
    '',
    `${fmt(c.side_effects.random_mean_abs_change, 3)} nats per token under random edits`,
    '',
  ]));
}
