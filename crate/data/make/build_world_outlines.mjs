// Builds crate/data/world_110m.bin from the npm package `world-atlas` (Natural Earth 1:110m
// countries, public domain; TopoJSON by Mike Bostock, ISC licence).
//
//   node crate/data/make/build_world_outlines.mjs <path/to/world-atlas/package> <out.bin>
//
// (crate/data/make/build_world_outlines.sh fetches the package with `npm pack` and calls this.)
//
// What it does:
//   1. decodes the TopoJSON arcs (delta-encoded, quantized) of `objects.countries` into rings;
//   2. cuts every ring that crosses the antimeridian (a jump of more than 180° in longitude
//      between two vertices) into pieces that stay inside [-180, 180], adding points every
//      degree along the cut so the piece follows the curved map edge after projection; a ring
//      that winds around a pole (Antarctica) is closed along that pole instead;
//   3. writes quantized rings (i16 = round(degrees * 100)) to a small little-endian binary:
//
//   magic  "PLWO" , u8 version = 1, u16 country count, then per country:
//     u16 ISO 3166-1 numeric id (0 when none), u8 name length, name (UTF-8),
//     u16 polygon count, per polygon: u16 ring count (first ring exterior, others holes),
//     per ring: u16 point count, then point count x (i16 lon*100, i16 lat*100).
//   Rings are not explicitly closed (the last point is not a copy of the first).

import fs from "node:fs";
import path from "node:path";

const [pkgDir, outPath] = process.argv.slice(2);
if (!pkgDir || !outPath) {
  console.error("usage: node build_world_outlines.mjs <world-atlas dir> <out.bin>");
  process.exit(2);
}
const topo = JSON.parse(fs.readFileSync(path.join(pkgDir, "countries-110m.json"), "utf8"));
const [sx, sy] = topo.transform.scale;
const [tx, ty] = topo.transform.translate;
const arcs = topo.arcs.map((a) => {
  let x = 0, y = 0;
  return a.map(([dx, dy]) => { x += dx; y += dy; return [x * sx + tx, y * sy + ty]; });
});

function ringFromArcs(ids) {
  const out = [];
  ids.forEach((i, k) => {
    const a = i >= 0 ? arcs[i] : arcs[~i].slice().reverse();
    out.push(...(k ? a.slice(1) : a));
  });
  // drop the closing duplicate
  const f = out[0], l = out[out.length - 1];
  if (out.length > 1 && f[0] === l[0] && f[1] === l[1]) out.pop();
  return out;
}

const STEP = 1; // degrees between added points along a cut meridian or pole line

function densify(a, b) {
  // points strictly between a and b, along a meridian (same lon) or parallel (same lat)
  const out = [];
  const d = Math.max(Math.abs(b[0] - a[0]), Math.abs(b[1] - a[1]));
  const n = Math.floor(d / STEP);
  for (let i = 1; i < n; i++) {
    const t = i / n;
    out.push([a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t]);
  }
  return out;
}

// Sutherland–Hodgman against one vertical half-plane: keep lon <= c (sign=+1) or lon >= c (sign=-1).
function clipHalf(ring, c, sign) {
  const inside = (p) => sign * (p[0] - c) <= 1e-9;
  const out = [];
  for (let i = 0; i < ring.length; i++) {
    const cur = ring[i], prev = ring[(i + ring.length - 1) % ring.length];
    const ci = inside(cur), pi = inside(prev);
    if (ci !== pi) {
      const t = (c - prev[0]) / (cur[0] - prev[0]);
      out.push([c, prev[1] + (cur[1] - prev[1]) * t]);
    }
    if (ci) out.push(cur);
  }
  return out;
}

function area(r) {
  let s = 0;
  for (let i = 0; i < r.length; i++) {
    const a = r[i], b = r[(i + 1) % r.length];
    s += a[0] * b[1] - b[0] * a[1];
  }
  return s / 2;
}

function addCutPoints(r) {
  // insert points along runs on the map edge (|lon| = 180) or along a pole line
  const out = [];
  for (let i = 0; i < r.length; i++) {
    const a = r[i], b = r[(i + 1) % r.length];
    out.push(a);
    const onEdge = Math.abs(Math.abs(a[0]) - 180) < 1e-9 && Math.abs(b[0] - a[0]) < 1e-9;
    const onPole = Math.abs(Math.abs(a[1]) - 90) < 1e-9 && Math.abs(b[1] - a[1]) < 1e-9;
    if (onEdge || onPole) out.push(...densify(a, b));
  }
  return out;
}

let cutCount = 0, poleCount = 0;
function cutRing(ring) {
  let crosses = false;
  for (let i = 0; i < ring.length; i++) {
    const a = ring[i], b = ring[(i + 1) % ring.length];
    if (Math.abs(b[0] - a[0]) > 180) crosses = true;
  }
  if (!crosses) return [ring];
  cutCount++;
  // unwrap longitudes so consecutive vertices never jump more than 180°
  const u = [ring[0].slice()];
  for (let i = 1; i < ring.length; i++) {
    let lon = ring[i][0];
    const prev = u[i - 1][0];
    while (lon - prev > 180) lon -= 360;
    while (lon - prev < -180) lon += 360;
    u.push([lon, ring[i][1]]);
  }
  // closing segment
  let last = u[u.length - 1][0], first = u[0][0];
  let wrap = 0;
  let f = first;
  while (f - last > 180) { f -= 360; wrap -= 360; }
  while (f - last < -180) { f += 360; wrap += 360; }
  if (wrap !== 0) {
    // the ring winds once around a pole: close it along that pole
    poleCount++;
    const meanLat = u.reduce((s, p) => s + p[1], 0) / u.length;
    const pole = meanLat < 0 ? -90 : 90;
    const start = u[0];
    // ..., last vertex, first vertex shifted by the wrap, down (or up) to the pole, back along the pole
    u.push([start[0] + wrap, start[1]], [start[0] + wrap, pole], [start[0], pole]);
  }
  const lo = Math.min(...u.map((p) => p[0])), hi = Math.max(...u.map((p) => p[0]));
  const pieces = [];
  for (let k = -2; k <= 2; k++) {
    const shift = 360 * k;
    if (hi + shift < -180 || lo + shift > 180) continue;
    let r = u.map(([x, y]) => [x + shift, y]);
    r = clipHalf(r, 180, +1);
    if (r.length) r = clipHalf(r, -180, -1);
    if (r.length < 3 || Math.abs(area(r)) < 1e-6) continue;
    pieces.push(addCutPoints(r));
  }
  return pieces;
}

const q = (v) => {
  const n = Math.round(v * 100);
  if (n < -32768 || n > 32767) throw new Error("out of i16 range: " + v);
  return n;
};

const countries = [];
let totalPts = 0;
for (const g of topo.objects.countries.geometries) {
  const polys = g.type === "Polygon" ? [g.arcs] : g.type === "MultiPolygon" ? g.arcs : [];
  const outPolys = [];
  for (const p of polys) {
    const rings = p.map(ringFromArcs);
    if (rings.length > 1) {
      // polygons with holes must not cross the antimeridian (none do at 1:110m)
      for (const r of rings) if (cutRing(r).length !== 1 || cutRing(r)[0] !== r) throw new Error("holed polygon crosses antimeridian: " + g.properties.name);
      outPolys.push(rings);
    } else {
      for (const piece of cutRing(rings[0])) outPolys.push([piece]);
    }
  }
  const qPolys = outPolys.map((rings) =>
    rings.map((r) => {
      const qr = [];
      for (const [x, y] of r) {
        const pt = [q(x), q(y)];
        const prev = qr[qr.length - 1];
        if (!prev || prev[0] !== pt[0] || prev[1] !== pt[1]) qr.push(pt);
      }
      while (qr.length > 1 && qr[0][0] === qr[qr.length - 1][0] && qr[0][1] === qr[qr.length - 1][1]) qr.pop();
      return qr;
    }).filter((r) => r.length >= 3)
  ).filter((rings) => rings.length > 0);
  for (const rings of qPolys) for (const r of rings) {
    totalPts += r.length;
    for (let i = 0; i < r.length; i++) {
      const a = r[i], b = r[(i + 1) % r.length];
      if (Math.abs(a[0] - b[0]) > 18000) throw new Error("antimeridian jump left in " + g.properties.name);
    }
  }
  countries.push({ id: Number(g.id) || 0, name: (g.properties && g.properties.name) || "", polys: qPolys });
}

const bytes = [];
const u8 = (v) => bytes.push(v & 0xff);
const u16 = (v) => { if (v < 0 || v > 0xffff) throw new Error("u16 range"); u8(v); u8(v >> 8); };
const i16 = (v) => u16(v & 0xffff);
for (const c of "PLWO") u8(c.charCodeAt(0));
u8(1);
u16(countries.length);
for (const c of countries) {
  u16(c.id);
  const name = Buffer.from(c.name, "utf8");
  u8(name.length);
  for (const b of name) u8(b);
  u16(c.polys.length);
  for (const rings of c.polys) {
    u16(rings.length);
    for (const r of rings) {
      u16(r.length);
      for (const [x, y] of r) { i16(x); i16(y); }
    }
  }
}
fs.writeFileSync(outPath, Buffer.from(bytes));
console.log(`${countries.length} countries, ${totalPts} points, ${cutCount} rings cut at the antimeridian (${poleCount} closed along a pole), ${bytes.length} bytes -> ${outPath}`);
