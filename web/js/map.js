// The neighbourhood map: H3 cells drawn as SVG polygons from h3-js's cell boundaries. No tiles
// and nothing fetched: the geometry is computed here. The located cell, its neighbourhood (the
// cells the server followed for this session) and one ring beyond (to move into) are drawn;
// clicking anywhere on the map (or a cell, by keyboard) picks that spot.
import { cellToBoundary, cellToLatLng, gridDisk } from "../vendor/h3-js/h3-js.es.js";
import { h } from "./dom.js";

const SIZE = 320;

/**
 * @param {object} opts
 * @param {string} opts.cell the located cell
 * @param {string[]} opts.cells its neighbourhood (the locate reply's `cells`)
 * @param {{lat: number, lng: number}} opts.at the located point
 * @param {(lat: number, lng: number) => void} opts.onpick
 * @returns {{el: SVGElement, plot: (points: {lat, lng, label}[]) => void}}
 */
export function neighbourhoodMap({ cell, cells, at, onpick }) {
  const near = new Set(cells);
  const ring = gridDisk(cell, 2);
  const polys = ring.map((c) => ({ cell: c, points: cellToBoundary(c) })); // [lat, lng]
  const all = polys.flatMap((p) => p.points);
  const lat0 = at.lat;
  const k = Math.cos((lat0 * Math.PI) / 180);
  const xs = all.map(([, lng]) => lng * k);
  const ys = all.map(([lat]) => lat);
  const minX = Math.min(...xs), maxX = Math.max(...xs), minY = Math.min(...ys), maxY = Math.max(...ys);
  const scale = SIZE / Math.max(maxX - minX, maxY - minY);
  const project = (lat, lng) => [(lng * k - minX) * scale, (maxY - lat) * scale];
  const unproject = (x, y) => [maxY - y / scale, (x / scale + minX) / k];
  const width = (maxX - minX) * scale, height = (maxY - minY) * scale;

  const svg = h("svg:svg", {
    viewBox: `-4 -4 ${width + 8} ${height + 8}`,
    class: "map",
    role: "img",
    "aria-label": `Map of your neighbourhood: ${cells.length} cells around ${cell}`,
  });
  const dots = h("svg:g", { class: "dots" });
  for (const p of polys) {
    const kind = p.cell === cell ? "home" : near.has(p.cell) ? "near" : "far";
    const poly = h("svg:polygon", {
      points: p.points.map(([lat, lng]) => project(lat, lng).join(",")).join(" "),
      class: `cell ${kind}`,
      tabindex: kind === "far" ? "0" : "-1",
      role: kind === "far" ? "button" : undefined,
      "aria-label": kind === "far" ? `Move to cell ${p.cell}` : undefined,
    });
    poly.append(h("svg:title", {}, kind === "home" ? "your cell" : kind === "near" ? "your neighbourhood" : "move here"));
    poly.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        const [lat, lng] = cellToLatLng(p.cell);
        onpick(lat, lng);
      }
    });
    svg.append(poly);
  }
  const [mx, my] = project(at.lat, at.lng);
  svg.append(h("svg:circle", { cx: mx, cy: my, r: 5, class: "me" }));
  svg.append(dots);
  svg.addEventListener("click", (e) => {
    const pt = svg.createSVGPoint();
    pt.x = e.clientX;
    pt.y = e.clientY;
    const local = pt.matrixTransform(svg.getScreenCTM().inverse());
    const [lat, lng] = unproject(local.x, local.y);
    onpick(Math.round(lat * 1e6) / 1e6, Math.round(lng * 1e6) / 1e6);
  });
  const plot = (points) => {
    dots.replaceChildren(
      ...points.map((p) => {
        const [x, y] = project(p.lat, p.lng);
        return h("svg:circle", { cx: x, cy: y, r: 3, class: "dot" }, h("svg:title", {}, p.label));
      }),
    );
  };
  return { el: svg, plot };
}
