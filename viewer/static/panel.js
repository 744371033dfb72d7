// The detail panel's building blocks: table rows, headings, numbers in the page's language.

import { currentLang, t } from "./i18n.js";

// A table row: `label` (text, or {text, other} with the other language as its tooltip) and a
// value (text, a Node, or "—" when missing).
export function row(label, value, numeric = false) {
  const tr = document.createElement("tr");
  const a = document.createElement("td");
  if (label && typeof label === "object" && "text" in label) {
    a.textContent = label.text;
    if (label.other) a.title = label.other;
  } else {
    a.textContent = label;
  }
  const b = document.createElement("td");
  if (value instanceof Node) b.append(value);
  else b.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
  if (numeric) b.className = "num";
  tr.append(a, b);
  return tr;
}

export function table(rows) {
  const el = document.createElement("table");
  el.append(...rows);
  return el;
}

export function heading(key) {
  const h = document.createElement("h3");
  h.textContent = t(key);
  return h;
}

export function none(key) {
  const p = document.createElement("p");
  p.className = "none";
  p.textContent = t(key);
  return p;
}

export const fmt = (v, digits = 1) =>
  v === null || v === undefined || Number.isNaN(Number(v))
    ? null
    : Number(v).toLocaleString(currentLang() === "zh" ? "zh-CN" : "en", {
        maximumFractionDigits: digits,
      });

export const withUnit = (v, unit, digits = 1) =>
  fmt(v, digits) === null ? null : `${fmt(v, digits)} ${unit}`;
