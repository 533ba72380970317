// polysemy explorer: circuits pages (#/circuit/<id>), drawn from explorer/circuits/<id>.json
// (polysemy.explorer.circuits_index). Loaded before app.js and uses its helpers (el, fmt,
// ci, badge, link, table, section, render, getJSON, notFound, INDEX) at call time. The graph
// is plain SVG: upstream features left, downstream right, an edge's width by |weight|, its
// colour by sign, dashed when braided; hovering an edge shows its numbers.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const POSITIVE = "#1565c0";
const NEGATIVE = "#c62828";

function svgEl(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) if (c) node.append(c);
  return node;
}

function interval(x) {
  // "0.52 [0.49, 0.55] (n = 48)" from an Interval's to_dict().
  if (!x || typeof x !== "object") return fmt(x);
  return `${"estimate" in x ? fmt(x.estimate) : ""}${ci(x)}`;
}

// Where the braided fraction's interval sits against the shuffled-contexts null's.
function braidVerdict(b) {
  if (!b || !b.ci || !b.null_ci) return "inconclusive";
  if (b.ci.low > b.null_ci.high) return "above the null";
  if (b.ci.high < b.null_ci.low) return "below the null";
  return "inconclusive";
}

function short(text, n = 48) {
  const t = String(text || "").replace(/\s+/g, " ");
  return t.length > n ? t.slice(0, n - 1) + "…" : t;
}

function edgeText(e) {
  const lines = [
    `feature ${e.up} → feature ${e.down}`,
    `weight ${interval(e.ci && "estimate" in e.ci ? { ...e.ci, estimate: e.weight } : e.weight)} (95% bootstrap over contexts)`,
    `virtual weight ${fmt(e.virtual)}`,
    `carried by ${fmt(e.contexts)} contexts (n = ${fmt(e.ci?.n)})`,
    `braid clusters ${fmt(e.clusters)}${e.braided ? " — braided" : ""}`,
    `verdict ${e.verdict || "–"}`,
  ];
  if (e.ablation !== undefined) lines.push(`ablation ${summarise(e.ablation)}`);
  return lines.join("\n");
}

// Any value of a block we do not know the shape of (an ablation, a method's details), short.
function summarise(x) {
  if (x === null || x === undefined) return "–";
  if (typeof x !== "object") return fmt(x);
  if ("low" in x && "high" in x) return interval(x);
  if (Array.isArray(x)) return x.length === 2 && x.every((v) => typeof v === "number") ? ci(x).trim() : JSON.stringify(x);
  return Object.entries(x).map(([k, v]) => `${k} ${typeof v === "object" && v !== null ? summarise(v) : fmt(v)}`).join("; ");
}

// Each ablated edge: its mean effect with the interval over contexts, the 95% bands of the
// two nulls (random directions, random edges into the same b) and the verdict against each.
function ablationTable(c, edges) {
  const feat = (dict, f) => (dict ? link(featureHref(dict, f), `feature ${f}`) : `feature ${f}`);
  const head = el("tr", {}, ["up", "down", "linear weight", "ablation effect (95% CI, n)", "random-direction band", "verdict", "random-edge band", "verdict"].map((h) => el("th", { text: h })));
  const rows = edges.map((e) => el("tr", {},
    el("td", {}, feat(c.dict_up, e.up)), el("td", {}, feat(c.dict_down, e.down)),
    el("td", { text: fmt(e.weight) }), el("td", { text: interval(e.ci) }),
    el("td", { text: `±${fmt(e.null?.band)}` }), el("td", {}, badge(e.verdict)),
    el("td", { text: `±${fmt(e.null_edges?.band)}` }), el("td", {}, badge(e.verdict_edges))));
  return el("table", { id: "ablation-edges" }, el("thead", {}, head), el("tbody", {}, rows));
}

function featureHref(dict, f) {
  return dict ? `#/feature/${dict}/${f}` : null;
}

function graph(c) {
  const edges = c.edges;
  const ups = [...new Set(edges.map((e) => e.up))];
  const downs = [...new Set(edges.map((e) => e.down))];
  // Order each side by its strongest edge, so the heaviest lines sit at the top.
  const strength = (side) => (f) => Math.max(...edges.filter((e) => e[side] === f).map((e) => Math.abs(e.weight)));
  ups.sort((a, b) => strength("up")(b) - strength("up")(a));
  downs.sort((a, b) => strength("down")(b) - strength("down")(a));
  const row = 30;
  const W = 1080;
  const H = Math.max(ups.length, downs.length) * row + 50;
  const xu = 330;
  const xd = W - 330;
  const yOf = (list, f) => 40 + list.indexOf(f) * row + ((Math.max(ups.length, downs.length) - list.length) * row) / 2;
  const maxW = Math.max(...edges.map((e) => Math.abs(e.weight)), 1e-12);
  const hover = el("div", { id: "circuit-hover", class: "caption", style: "white-space: pre-line; min-height: 5.5em" }, "Hover an edge for its weight, interval, virtual weight, contexts and braid clusters; click a feature to open its page.");
  const svg = svgEl("svg", { id: "circuit-graph", viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": `graph of the ${edges.length} strongest edges` });
  svg.append(
    svgEl("text", { x: xu, y: 18, "text-anchor": "middle", "font-weight": "600", "font-size": "13", text: `upstream: ${c.summary.site_up || ""}` }),
    svgEl("text", { x: xd, y: 18, "text-anchor": "middle", "font-weight": "600", "font-size": "13", text: `downstream: ${c.summary.site_down || ""}` }),
  );
  const lines = svgEl("g", { class: "edges" });
  edges.forEach((e, i) => {
    const y1 = yOf(ups, e.up);
    const y2 = yOf(downs, e.down);
    const mid = (xu + xd) / 2;
    const path = svgEl(
      "path",
      {
        class: "edge",
        "data-edge": String(i),
        d: `M ${xu + 7} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${xd - 7} ${y2}`,
        fill: "none",
        stroke: e.weight >= 0 ? POSITIVE : NEGATIVE,
        "stroke-width": (1 + (7 * Math.abs(e.weight)) / maxW).toFixed(2),
        "stroke-opacity": e.verdict === "effect" ? "0.75" : "0.3",
        "stroke-dasharray": e.braided ? "7 4" : null,
      },
      svgEl("title", { text: edgeText(e) }),
    );
    path.addEventListener("mouseenter", () => {
      hover.textContent = edgeText(e);
      path.setAttribute("stroke-opacity", "1");
    });
    path.addEventListener("mouseleave", () => path.setAttribute("stroke-opacity", e.verdict === "effect" ? "0.75" : "0.3"));
    lines.append(path);
  });
  svg.append(lines);
  const node = (f, side, x, y, label) => {
    const dict = side === "up" ? c.dict_up : c.dict_down;
    const left = side === "up";
    const text = `f${f}` + (label ? `  ${short(label.replace(/\[\[|\]\]/g, ""), 34)}` : "");
    const g = svgEl(
      "g",
      { class: `node ${side}`, "data-feature": String(f) },
      svgEl("circle", { cx: x, cy: y, r: 6, fill: "#fff", stroke: "#1d2330", "stroke-width": "1.5" }),
      svgEl("text", { x: left ? x - 11 : x + 11, y: y + 4, "text-anchor": left ? "end" : "start", "font-size": "12", fill: dict ? "#0b57d0" : "#1d2330", text }),
      svgEl("title", { text: `feature ${f} of ${dict || "an SAE not in this run"}${label ? "\nstrongest example: " + label : ""}` }),
    );
    const href = featureHref(dict, f);
    return href ? svgEl("a", { href, class: "node-link" }, g) : g;
  };
  const labelOf = (side, f) => (edges.find((e) => e[side] === f) || {})[side === "up" ? "label_up" : "label_down"];
  for (const f of ups) svg.append(node(f, "up", xu, yOf(ups, f), labelOf("up", f)));
  for (const f of downs) svg.append(node(f, "down", xd, yOf(downs, f), labelOf("down", f)));
  const legend = el("div", { class: "caption" }, `${edges.length} strongest edges over n = ${fmt(c.summary.contexts)} contexts; width ∝ |weight| (largest ${fmt(maxW)}); `, el("span", { style: `color:${POSITIVE}`, text: "blue: positive" }), ", ", el("span", { style: `color:${NEGATIVE}`, text: "red: negative" }), "; dashed: braided (serves two or more rarely co-occurring context clusters); faint: interval includes 0.");
  return el("div", { class: "card" }, svg, legend, hover);
}

// A table of the edges, sorted by clicking a column's header (again: the other direction).
function edgeTable(c) {
  const columns = [
    ["up", (e) => e.up, (e) => (c.dict_up ? link(featureHref(c.dict_up, e.up), `feature ${e.up}`) : `feature ${e.up}`)],
    ["down", (e) => e.down, (e) => (c.dict_down ? link(featureHref(c.dict_down, e.down), `feature ${e.down}`) : `feature ${e.down}`)],
    ["weight", (e) => e.weight, (e) => fmt(e.weight)],
    ["95% interval", (e) => e.ci?.low, (e) => ci(e.ci ? { low: e.ci.low, high: e.ci.high } : null).trim()],
    ["|weight|", (e) => Math.abs(e.weight), (e) => fmt(Math.abs(e.weight))],
    ["virtual", (e) => e.virtual, (e) => fmt(e.virtual)],
    ["contexts", (e) => e.contexts, (e) => fmt(e.contexts)],
    ["clusters", (e) => e.clusters, (e) => fmt(e.clusters)],
    ["braided", (e) => (e.braided ? 1 : 0), (e) => (e.braided ? "yes" : "no")],
    ["verdict", (e) => e.verdict, (e) => badge(e.verdict)],
  ];
  if (c.edges.some((e) => e.ablation !== undefined)) columns.push(["ablation", (e) => (e.ablation && typeof e.ablation === "object" ? e.ablation.estimate ?? e.ablation.mean_effect : e.ablation), (e) => summarise(e.ablation)]);
  const body = el("tbody");
  const head = el("tr");
  let order = { key: 4, dir: -1 };
  const draw = () => {
    const [, value] = columns[order.key];
    const rows = c.edges.map((e, i) => [e, i]).sort(([a, i], [b, j]) => {
      const va = value(a);
      const vb = value(b);
      if (va === vb || va === null || vb === null || va === undefined || vb === undefined) return i - j;
      return (va < vb ? -1 : 1) * order.dir;
    });
    body.replaceChildren(...rows.map(([e, i]) => el("tr", { "data-edge": String(i) }, columns.map(([, , show]) => el("td", {}, show(e))))));
    [...head.children].forEach((th, k) => (th.dataset.sorted = k === order.key ? (order.dir > 0 ? "ascending" : "descending") : ""));
  };
  columns.forEach(([name], k) => {
    const th = el("th", { style: "cursor: pointer", title: "sort by " + name, text: name });
    th.addEventListener("click", () => {
      order = { key: k, dir: order.key === k ? -order.dir : name === "weight" ? 1 : -1 };
      draw();
    });
    head.append(th);
  });
  draw();
  return el("table", { id: "edge-table" }, el("thead", {}, head), body);
}

async function circuitPage(id) {
  // Known ids only: a fetch that 404s is logged as a console error.
  const known = (INDEX.circuits || []).some((x) => x.id === id);
  const c = known ? await getJSON(`circuits/${id}.json`) : null;
  if (!c) return notFound(`no circuits analysis ${id}`);
  const s = c.summary || {};
  const b = s.braids || {};
  const q = (s.null || {}).quantiles || {};
  const nodes = [
    el("h1", { text: `Circuit ${id}` }),
    el("p", { class: "muted", text: `${c.inputs.model || ""} · ${s.site_up} → ${s.site_down} · ${fmt(s.contexts)} contexts of ${c.inputs.corpus || "?"} · ${fmt(s.n_down)} downstream features, top ${fmt(s.top_k)} upstream each` }),
    el("p", {}, "Dictionaries: ", c.dict_up ? link(`#/dict/${c.dict_up}`, c.dict_up) : "upstream SAE not in this run", " → ", c.dict_down ? link(`#/dict/${c.dict_down}`, c.dict_down) : "downstream SAE not in this run"),
  ];
  const facts = [
    el("li", { text: `edge weight: a's activation × the gradient of b's pre-activation along a's decoder direction, linearised (${s.linearisation || "–"}), averaged over contexts` }),
    el("li", { text: `null: ${(s.null || {}).kind || "|weight| over every pair"} — ${Object.entries(q).map(([k, v]) => `${k} ${fmt(v)}`).join(", ")}; an edge above q95 stands out from the pairs computed` }),
  ];
  if (s.method !== undefined) facts.push(el("li", { text: `method: ${summarise(s.method)}` }));
  nodes.push(el("ul", {}, facts));
  nodes.push(
    ...section(
      "Braids",
      el("div", { class: "card", id: "braids" },
        el("p", {}, `braided fraction ${fmt(b.braided_fraction)}${ci(b.ci ? { low: b.ci.low, high: b.ci.high } : null)} (${b.ci?.method || "95%"}) of n = ${fmt(b.n_edges)} strongest edges, vs shuffled contexts${ci(b.null_ci ? { low: b.null_ci.low, high: b.null_ci.high } : null)} (n = ${fmt(b.null_ci?.n)} shuffles): `, badge(braidVerdict(b))),
        el("div", { class: "caption", text: "an edge is braided when the contexts carrying it fall into two or more clusters (by which other upstream features are active) that rarely co-occur; the null shuffles contexts" }),
      ),
    ),
  );
  if (s.ablation !== undefined) {
    const a = s.ablation;
    const block = a && typeof a === "object" && !Array.isArray(a);
    // The per-edge list is a table of its own below: as one line it is a wall of JSON.
    const items = block ? Object.entries(a).filter(([k]) => k !== "edges").map(([k, v]) => el("li", { text: `${k}: ${summarise(v)}` })) : [el("li", { text: summarise(a) })];
    nodes.push(...section("Edge ablation", el("ul", { id: "ablation" }, items)));
    if (block && Array.isArray(a.edges) && a.edges.length) nodes.push(ablationTable(c, a.edges));
  }
  if (!c.edges.length) nodes.push(el("p", { text: "This analysis kept no edges." }));
  else nodes.push(...section("Graph of the strongest edges", graph(c)), ...section("Edges", el("p", { class: "caption", text: "click a column's header to sort by it (again: reverse)" }), edgeTable(c)));
  return render(`circuit ${id}`, "circuit", nodes);
}

// ---- registration hooks called from app.js

function circuitsOf(dict) {
  return (INDEX.circuits || []).filter((c) => c.dict_up === dict || c.dict_down === dict);
}

// The feature page's "In circuits" section: the edges this feature takes part in.
async function circuitEdgesSection(dict, f) {
  if (!circuitsOf(dict).length) return [];
  const byFeature = await getJSON(`circuits/features/${dict}.json`);
  const edges = (byFeature || {})[String(f)];
  if (!edges || !edges.length) return [];
  const rows = edges.map((e) => [
    link(`#/circuit/${e.circuit}`, e.circuit),
    e.role === "up" ? "feeds →" : "← fed by",
    e.other_dict ? link(`#/feature/${e.other_dict}/${e.other}`, `${e.other_dict} feature ${e.other}`) : `feature ${e.other}`,
    e.weight,
    ci(e.ci).trim(),
    e.contexts,
    badge(e.verdict),
  ]);
  return section("In circuits", el("p", { class: "caption", text: "strongest edges of circuits analyses this feature is an endpoint of: mean weight over contexts, 95% bootstrap interval (n = contexts)" }), table(["circuit", "role", "other end", "weight", "interval", "contexts", "verdict"], rows));
}

function circuitsHome() {
  const list = INDEX.circuits || [];
  if (!list.length) return [];
  return section(
    "Circuits",
    el("ul", { id: "circuits-list" }, list.map((c) => el("li", {}, link(`#/circuit/${c.id}`, c.id), ` ${c.site_up} → ${c.site_down}: ${fmt(c.n_edges)} edges over ${fmt(c.contexts)} contexts; braided ${interval(c.ci ? { ...c.ci, estimate: c.braided_fraction } : c.braided_fraction)} vs null ${ci(c.null_ci)}`))),
  );
}

function circuitsNav(nav) {
  for (const c of INDEX.circuits || []) nav.append(link(`#/circuit/${c.id}`, `circuit ${c.id}`));
}

// Search: circuits whose id, sites, model, corpus or dictionaries hold every word's prefix.
function circuitSearch(words) {
  const hits = (INDEX.circuits || []).filter((c) => words.every((w) => c.terms.split(/[\s.\-_/]+/).some((t) => t.startsWith(w))));
  if (!hits.length) return [];
  return section("Circuits", el("ul", { class: "results circuits" }, hits.map((c) => el("li", {}, link(`#/circuit/${c.id}`, `circuit ${c.id}`), ` ${c.site_up} → ${c.site_down}, ${fmt(c.n_edges)} edges`))));
}
