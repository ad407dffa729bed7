// Minimal, dependency-free SVG charts for RESULTS.md.

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const COLORS = ['#2f6fb0', '#e08a2c', '#4a9b5b', '#b04a4a', '#7b5ea7'];

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 4, 6, 8, 10]) if (m * p >= v) return m * p; // quarters stay round
  return 10 * p;
}

/**
 * Grouped horizontal bars. groups: [{label, values: [number|null]}], series: [names].
 * format(v) renders a value label.
 */
export function barChart({ title, unit, groups, series, format = (v) => v.toFixed(1) }) {
  const rowH = 22, gap = 14, left = 190, width = 640, plotW = width - left - 90;
  const groupH = series.length * rowH + gap;
  const top = 48 + (series.length > 1 ? 20 : 0);
  const height = top + groups.length * groupH + 30;
  const max = niceMax(Math.max(...groups.flatMap((g) => g.values.filter((v) => Number.isFinite(v)))));
  const x = (v) => left + (v / max) * plotW;
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`];
  if (series.length > 1) series.forEach((s, i) => {
    out.push(`<rect x="${left + i * 170}" y="34" width="12" height="12" fill="${COLORS[i]}"/><text x="${left + i * 170 + 18}" y="45">${esc(s)}</text>`);
  });
  for (let t = 0; t <= 4; t++) {
    const v = (max * t) / 4;
    out.push(`<line x1="${x(v)}" y1="${top - 6}" x2="${x(v)}" y2="${height - 26}" stroke="#ddd"/>`,
      `<text x="${x(v)}" y="${height - 12}" text-anchor="middle" fill="#555">${esc(format(v))}</text>`);
  }
  out.push(`<text x="${width - 10}" y="${height - 12}" text-anchor="end" fill="#555">${esc(unit)}</text>`);
  groups.forEach((g, gi) => {
    const y0 = top + gi * groupH;
    out.push(`<text x="${left - 8}" y="${y0 + (series.length * rowH) / 2 + 4}" text-anchor="end">${esc(g.label)}</text>`);
    g.values.forEach((v, si) => {
      const y = y0 + si * rowH;
      if (!Number.isFinite(v)) { out.push(`<text x="${left + 4}" y="${y + 15}" fill="#999">n/a</text>`); return; }
      out.push(`<rect x="${left}" y="${y + 2}" width="${Math.max(1, x(v) - left)}" height="${rowH - 5}" fill="${COLORS[si]}"/>`,
        `<text x="${x(v) + 4}" y="${y + 15}">${esc(format(v))}</text>`);
    });
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Line chart of per-bin counts for several series (the storm's reconnects per 100 ms). */
export function binChart({ title, binMs, series, marker }) {
  const width = 640, height = 260, left = 50, right = 20, top = 48, bottom = 36;
  const n = Math.max(...series.map((s) => s.bins.length), 1);
  const max = niceMax(Math.max(...series.flatMap((s) => s.bins), marker?.value ?? 0));
  const x = (i) => left + (i / n) * (width - left - right);
  const y = (v) => height - bottom - (v / max) * (height - top - bottom);
  const out = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`];
  series.forEach((s, i) => out.push(`<rect x="${left + i * 200}" y="30" width="12" height="12" fill="${COLORS[i]}"/><text x="${left + i * 200 + 18}" y="41">${esc(s.label)}</text>`));
  for (let t = 0; t <= 4; t++) {
    const v = (max * t) / 4;
    out.push(`<line x1="${left}" y1="${y(v)}" x2="${width - right}" y2="${y(v)}" stroke="#eee"/><text x="${left - 6}" y="${y(v) + 4}" text-anchor="end" fill="#555">${Math.round(v)}</text>`);
  }
  const step = Math.max(1, Math.ceil(n / 10 / 10) * 10);
  for (let i = 0; i <= n; i += step) out.push(`<text x="${x(i)}" y="${height - bottom + 16}" text-anchor="middle" fill="#555">${((i * binMs) / 1000).toFixed(0)} s</text>`);
  if (marker) out.push(`<line x1="${left}" y1="${y(marker.value)}" x2="${width - right}" y2="${y(marker.value)}" stroke="#b04a4a" stroke-dasharray="4 3"/><text x="${width - right}" y="${y(marker.value) - 4}" text-anchor="end" fill="#b04a4a">${esc(marker.label)}</text>`);
  series.forEach((s, i) => {
    const pts = s.bins.map((v, k) => `${x(k + 0.5).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    out.push(`<polyline fill="none" stroke="${COLORS[i]}" stroke-width="1.5" points="${pts}"/>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
