// heatdecode report: the table of every map, sorted, filtered and paged in
// the browser. The data sit in <script id="maps-data"> as columns (a file
// index, a status index, one distance list per decoder), so a run of 10^6
// maps is one JSON.parse and typed-array sorts, and only one page of rows is
// ever in the DOM.
"use strict";
(function () {
  const PAGE = 100;
  const data = JSON.parse(document.getElementById("maps-data").textContent);
  const cols = data.columns;
  const n = cols.file.length;
  const labels = Object.keys(data.distances);
  const fields = ["file", "sample", "channel", "peak", "score", "status"]
    .concat(labels.map((l) => "d:" + l));
  const table = document.getElementById("maps");
  const body = table.querySelector("tbody");
  const shown = document.getElementById("shown");
  const pageText = document.getElementById("page");
  const statusSelect = document.getElementById("filter-status");
  const fileInput = document.getElementById("filter-file");
  const distInput = document.getElementById("filter-distance");
  let order = new Uint32Array(n).map((_, i) => i);
  let view = order;
  let page = 0;
  let sortKey = null;
  let sortDir = 1;

  function cell(field, i) {
    if (field.startsWith("d:")) return data.distances[field.slice(2)][i];
    if (field === "file") return data.files[cols.file[i]];
    if (field === "status") return data.statuses[cols.status[i]];
    return cols[field][i];
  }
  function largest(i) {
    let top = null;
    for (const l of labels) {
      const d = data.distances[l][i];
      if (d !== null && (top === null || d > top)) top = d;
    }
    return top;
  }
  function sortKeys(field, dir) {
    // one number per map, so the sort compares typed-array entries, not cells:
    // statuses by seriousness (their index), files by name; empty cells go to
    // the end of the order whichever the direction
    const keys = new Float64Array(n);
    if (field === "file") {
      const names = data.files.map((f, k) => [f, k]).sort((a, b) => (a[0] < b[0] ? -1 : 1));
      const rank = new Float64Array(names.length);
      names.forEach(([, k], r) => { rank[k] = r; });
      for (let i = 0; i < n; i++) keys[i] = rank[cols.file[i]];
      return keys;
    }
    const source = field.startsWith("d:") ? data.distances[field.slice(2)] : cols[field];
    const empty = dir > 0 ? Infinity : -Infinity;
    for (let i = 0; i < n; i++) keys[i] = source[i] === null ? empty : source[i];
    return keys;
  }
  function applyFilters() {
    const status = statusSelect.value;
    const text = fileInput.value.trim().toLowerCase();
    const least = parseFloat(distInput.value);
    const okIndex = data.statuses.indexOf("ok");
    const fileMatch = data.files.map((f) => !text || f.toLowerCase().includes(text));
    const kept = [];
    for (const i of order) {
      const s = cols.status[i];
      if (status === "flagged" ? s === okIndex : status !== "" && data.statuses[s] !== status)
        continue;
      if (!fileMatch[cols.file[i]]) continue;
      if (!Number.isNaN(least)) {
        const d = largest(i);
        if (d === null || d < least) continue;
      }
      kept.push(i);
    }
    view = Uint32Array.from(kept);
    page = 0;
    draw();
  }
  function format(field, v) {
    if (v === null || v === undefined) return "";
    if (field === "score" || field.startsWith("d:")) return v.toFixed(3);
    return String(v);
  }
  function draw() {
    const pages = Math.max(1, Math.ceil(view.length / PAGE));
    page = Math.min(page, pages - 1);
    const rows = [];
    for (let k = page * PAGE; k < Math.min(view.length, (page + 1) * PAGE); k++) {
      const i = view[k];
      const tr = document.createElement("tr");
      for (const field of fields) {
        const td = document.createElement("td");
        const v = cell(field, i);
        td.textContent = format(field, v);
        if (field === "status") td.className = "status-" + (v === "ok" ? "ok" : v);
        else if (field === "file") td.className = "file";
        else td.className = "num";
        tr.appendChild(td);
      }
      rows.push(tr);
    }
    body.replaceChildren(...rows);
    shown.textContent = view.length.toLocaleString("en") + " of " + n.toLocaleString("en") +
      " maps";
    pageText.textContent = "page " + (page + 1) + " of " + pages;
  }
  function sortBy(field) {
    sortDir = sortKey === field ? -sortDir : field.startsWith("d:") ? -1 : 1;
    sortKey = field;
    const keys = sortKeys(field, sortDir);
    const dir = sortDir;
    order = Uint32Array.from(order).sort((a, b) => (keys[a] - keys[b]) * dir || a - b);
    for (const th of table.querySelectorAll("th"))
      th.setAttribute("aria-sort", th.dataset.field !== field ? "none"
        : sortDir > 0 ? "ascending" : "descending");
    applyFilters();
  }
  for (const th of table.querySelectorAll("th"))
    th.addEventListener("click", () => sortBy(th.dataset.field));
  statusSelect.addEventListener("change", applyFilters);
  fileInput.addEventListener("input", applyFilters);
  distInput.addEventListener("input", applyFilters);
  document.getElementById("prev").addEventListener("click", () => { page = Math.max(0, page - 1); draw(); });
  document.getElementById("next").addEventListener("click", () => { page += 1; draw(); });
  draw();
  document.body.dataset.ready = "true";
})();
