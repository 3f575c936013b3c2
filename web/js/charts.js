// Small SVG charts drawn from data (no library): bars of a series and the hour x weekday heatmap.
// Each chart is one `role="img"` with an `aria-label` that says what it shows in words, and a
// `<title>` per bar or cell (the tooltip; screen readers read the label). Colours come from
// app.css (.bar, .heat).
import { h } from "./dom.js";

export const WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/** Bars of `points` ({key, value, title}), scaled to the largest; `label` is the accessible name. */
export function bars(points, label, { width = 300, height = 80 } = {}) {
  const top = Math.max(1, ...points.map((p) => p.value));
  const bw = Math.min(width / Math.max(1, points.length), 24); // a few points stay bars, left-aligned
  return h("svg:svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": label },
    points.map((p, i) => {
      const bh = (Math.max(0, p.value) / top) * (height - 4);
      return h("svg:rect", { x: i * bw + 1, y: height - bh, width: Math.max(1, bw - 2), height: bh, class: "bar", "data-key": p.key },
        h("svg:title", {}, p.title));
    }));
}

/** The busiest slot of a 7 x 24 grid of counts: {weekday, hour, count}, or null when all are 0. */
export function busiest(grid) {
  let best = null;
  grid.forEach((row, weekday) => row.forEach((count, hour) => {
    if (count > 0 && (!best || count > best.count)) best = { weekday, hour, count };
  }));
  return best;
}

const hh = (hour) => `${String(hour).padStart(2, "0")}:00`;

/** The hour x weekday heatmap: `grid[weekday][hour]` (Monday = 0) of order counts, UTC. */
export function heatmap(grid, noun = "orders") {
  const total = grid.flat().reduce((n, x) => n + x, 0);
  const best = busiest(grid);
  const label = best
    ? `${noun} by weekday and hour (UTC): ${total} in all, busiest ${WEEKDAYS[best.weekday]} ${hh(best.hour)} (${best.count})`
    : `${noun} by weekday and hour (UTC): none in this range`;
  const cw = 12, ch = 12, left = 30, topPad = 12;
  const max = Math.max(1, ...grid.flat());
  return h("svg:svg", { viewBox: `0 0 ${left + 24 * cw} ${topPad + 7 * ch}`, class: "heatmap", role: "img", "aria-label": label },
    [0, 6, 12, 18].map((hour) => h("svg:text", { x: left + hour * cw, y: 9, class: "axis" }, hh(hour))),
    grid.map((row, weekday) => [
      h("svg:text", { x: 0, y: topPad + weekday * ch + 9, class: "axis" }, WEEKDAYS[weekday].slice(0, 3)),
      row.map((count, hour) => h("svg:rect", {
        x: left + hour * cw, y: topPad + weekday * ch, width: cw - 1, height: ch - 1,
        class: count ? "heat" : "heat zero", "fill-opacity": count ? (0.25 + 0.75 * (count / max)).toFixed(2) : 1,
        "data-weekday": weekday, "data-hour": hour, "data-count": count,
      }, h("svg:title", {}, `${WEEKDAYS[weekday]} ${hh(hour)}: ${count} ${noun}`))),
    ]));
}
