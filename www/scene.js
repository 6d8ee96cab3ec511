// Draws a scene (crate/src/render/scene.rs's JSON format) on a canvas: the same figure the command
// line writes as PNG. Text is drawn with fillText, never parsed as HTML.

/** The identity view: the scene as it is. */
export const IDENTITY = Object.freeze({ scale: 1, x: 0, y: 0 });

/**
 * Draws `scene` on `canvas` (sized to the scene) through a view `{scale, x, y}`: a scene point
 * (sx, sy) lands at (x + scale·sx, y + scale·sy) in scene units. The view magnifies positions
 * only: circles, stroke widths, dashes and text keep their size, so zooming in pulls dense
 * marks apart.
 */
export function drawScene(canvas, scene, view = IDENTITY) {
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(scene.width * dpr);
  canvas.height = Math.round(scene.height * dpr);
  canvas.style.aspectRatio = `${scene.width} / ${scene.height}`;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, scene.width, scene.height);
  const { scale: k, x: vx, y: vy } = view;
  const X = (v) => vx + k * v;
  const Y = (v) => vy + k * v;
  for (const it of scene.items) {
    ctx.save();
    switch (it.kind) {
      case 'poly':
      case 'line': {
        const p = it.points;
        ctx.beginPath();
        ctx.moveTo(X(p[0]), Y(p[1]));
        for (let i = 2; i < p.length; i += 2) ctx.lineTo(X(p[i]), Y(p[i + 1]));
        if (it.kind === 'poly') {
          ctx.closePath();
          if (it.fill) { ctx.fillStyle = it.fill; ctx.fill('nonzero'); }
          if (it.stroke) { ctx.strokeStyle = it.stroke; ctx.lineWidth = it.width; ctx.stroke(); }
        } else {
          ctx.lineCap = 'round'; ctx.lineJoin = 'round';
          ctx.strokeStyle = it.color; ctx.lineWidth = it.width;
          if (it.dash) ctx.setLineDash(it.dash);
          ctx.stroke();
        }
        break;
      }
      case 'circle':
        ctx.beginPath();
        ctx.arc(X(it.x), Y(it.y), it.r, 0, 2 * Math.PI);
        if (it.fill) { ctx.fillStyle = it.fill; ctx.fill(); }
        if (it.stroke) { ctx.strokeStyle = it.stroke; ctx.lineWidth = it.width; ctx.stroke(); }
        break;
      case 'text':
        ctx.font = `${it.bold ? 'bold ' : ''}${it.size}px sans-serif`;
        ctx.textAlign = it.anchor;
        ctx.fillStyle = it.color;
        ctx.translate(X(it.x), Y(it.y));
        if (it.angle) ctx.rotate((it.angle * Math.PI) / 180);
        ctx.fillText(it.text, 0, 0);
        break;
    }
    ctx.restore();
  }
}
