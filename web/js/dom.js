// DOM helpers: elements built from data, never from HTML strings (no innerHTML: the CSP and
// XSS both want it so). `h("button", {onclick, "aria-label": "Like"}, "♥")`.

export function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "class") el.setAttribute("class", value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name in el && !name.includes("-") && !(el instanceof SVGElement)) el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace everything inside `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A labelled form field: `field("Title", h("input", {name: "title"}))`. */
export function field(label, control, hint = undefined) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hint ? h("small", {}, hint) : null);
}

/** A form whose submit calls `onsubmit(values)` (FormData as an object); its submit button is
 * disabled while the promise runs, and an error is shown beside it. */
export function form(attrs, children, onsubmit) {
  const error = h("p", { class: "error", role: "alert" });
  const el = h("form", { ...attrs, novalidate: false }, children, error);
  el.addEventListener("submit", async (e) => {
    e.preventDefault();
    const buttons = el.querySelectorAll("button[type=submit]");
    buttons.forEach((b) => (b.disabled = true));
    error.textContent = "";
    try {
      await onsubmit(Object.fromEntries(new FormData(el).entries()), el);
    } catch (exc) {
      error.textContent = exc.message || String(exc);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  });
  return el;
}

export function money(amount, currency = "usd") {
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: currency.toUpperCase() }).format(amount / 100);
  } catch {
    return `${(amount / 100).toFixed(2)} ${currency}`;
  }
}

export function when(iso) {
  const d = new Date(iso);
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return d.toLocaleDateString();
}

export function time(iso) {
  return h("time", { datetime: iso, title: new Date(iso).toLocaleString() }, when(iso));
}
