// The results panel: a layer slider (with Play) over the map, colouring, and exports. The
// figures come from the wasm core (the same scenes the command line writes as PNG).
import { layer_map_scene, report_predictions_csv } from './pkg/probelab.js';
import { drawScene } from './scene.js';

const $ = (id) => document.getElementById(id);
let current = null;   // { reportJson, report, scenes }
let playing = null;

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
  const json = layer_map_scene(current.reportJson, layer, $('color-by').value === 'longitude');
  if (json) drawScene($('map-canvas'), JSON.parse(json));
  // The layer lives in the URL, so a link reproduces the view.
  const url = new URL(location.href);
  url.searchParams.set('layer', String(layer));
  history.replaceState(null, '', url);
}

/** The per-group breakdown with counts, so thin coverage is visible. All cells are text. */
function fillGroupTable(rep) {
  const space = rep.dataset.target === 'space';
  $('by-group-error').textContent = space ? 'mean error (km)' : 'mean error (years)';
  const body = $('by-group').querySelector('tbody');
  body.replaceChildren(...rep.by_group.map((g) => {
    const tr = document.createElement('tr');
    const cells = [g.group, g.n_train, g.n_test, g.r2_test === null ? 'n/a' : g.r2_test.toFixed(2),
      space ? (g.km_mean === null ? 'n/a' : g.km_mean.toFixed(0)) : (g.years_mae === null ? 'n/a' : g.years_mae.toFixed(0))];
    for (const c of cells) {
      const td = document.createElement('td');
      td.textContent = String(c);
      tr.append(td);
    }
    return tr;
  }));
  $('by-group').hidden = rep.by_group.length === 0;
}

/** Shows a fitted report: `reportJson` (text) and `scenes` ({layers, map | time}). */
export function showResults(reportJson, scenes, initialLayer) {
  current = { reportJson, report: JSON.parse(reportJson), scenes };
  const rep = current.report;
  const slider = $('layer');
  slider.max = String(rep.model.n_layers);
  const start = Number.isInteger(initialLayer) && initialLayer >= 0 && initialLayer <= rep.model.n_layers
    ? initialLayer : rep.selected.layer;
  slider.value = String(start);
  $('map-controls').hidden = rep.dataset.target !== 'space';
  drawScene($('layers-canvas'), scenes.layers);
  fillGroupTable(rep);
  if (rep.dataset.target === 'space') drawLayer(start);
  else drawScene($('map-canvas'), scenes.time);
  return current.report;
}

$('layer').addEventListener('input', () => current && drawLayer(Number($('layer').value)));
$('color-by').addEventListener('change', () => current && drawLayer(Number($('layer').value)));
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
  download(new Blob([report_predictions_csv(current.reportJson)], { type: 'text/csv' }), 'predictions.csv'));
$('export-report').addEventListener('click', () =>
  download(new Blob([current.reportJson], { type: 'application/json' }), 'report.json'));
