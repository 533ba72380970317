// polysemy explorer: draws the JSON that polysemy.explorer.build_index precomputed.
// Plain JS, no framework; pages are hash routes (#/feature/<dict>/<f>, ...). Every text from
// the run goes into the page through textContent, never innerHTML.
"use strict";

const main = document.getElementById("main");
// plotly.min.js (4.6 MB, from the installed plotly package) is loaded on first need, after
// the page's text is painted: parsing it takes a second or more on a busy machine, and only
// the first page with plots of a session pays it.
let plotlyPromise = null;
function plotlyReady() {
  if (!plotlyPromise) {
    plotlyPromise = new Promise((resolve, reject) => {
      if (window.Plotly) return resolve();
      const script = el("script", { src: "/static/plotly.min.js" });
      script.addEventListener("load", () => resolve());
      script.addEventListener("error", () => reject(new Error("plotly.min.js did not load")));
      document.head.append(script);
    });
  }
  return plotlyPromise;
}
const cache = new Map();
let INDEX = null;

// ------------------------------------------------------------------ helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

async function getJSON(path) {
  if (cache.has(path)) return cache.get(path);
  const response = await fetch("/data/" + path);
  if (!response.ok) return null;
  const value = await response.json();
  cache.set(path, value);
  return value;
}

// One feature's (or neuron's) page from its shard file (INDEX.shard_size ids per file).
async function pageOf(folder, id) {
  const shard = await getJSON(`${folder}/${Math.floor(id / INDEX.shard_size)}.json`);
  return shard ? shard[String(id)] || null : null;
}

function fmt(x, digits = 3) {
  if (x === null || x === undefined) return "–";
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x)) return x.toLocaleString("en");
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return x.toExponential(2);
  return x.toFixed(digits);
}

function pct(x) {
  return x === null || x === undefined ? "–" : (100 * x).toFixed(2) + "%";
}

function ci(obj) {
  // An Interval's to_dict(), or a [low, high] pair.
  if (!obj) return "";
  if (Array.isArray(obj)) return ` [${fmt(obj[0])}, ${fmt(obj[1])}]`;
  return ` [${fmt(obj.low)}, ${fmt(obj.high)}]` + (obj.n ? ` (n = ${fmt(obj.n)})` : "");
}

function badge(verdict) {
  const v = String(verdict || "unknown");
  return el("span", { class: "badge " + v.replace(/\s+/g, "-"), text: v });
}

function link(href, text) {
  return el("a", { href, text });
}

function featureLink(dict, f) {
  return link(`#/feature/${dict}/${f}`, `feature ${f}`);
}

function neuronLink(dict, j) {
  return link(`#/neuron/${dict}/${j}`, `neuron ${j}`);
}

// A token window "... the [[bank]] was ..." with its own token highlighted, and the search's
// words (lowercase) marked.
function tokenText(text, words) {
  const span = el("span", { class: "text" });
  const parts = String(text).split(/\[\[(.*?)\]\]/);
  parts.forEach((part, i) => {
    if (i % 2 === 1) {
      span.append(el("mark", { class: "tok", text: part }));
    } else if (words && words.length) {
      for (const piece of part.split(/(\w+)/)) {
        if (words.some((w) => piece.toLowerCase().startsWith(w)) && /\w/.test(piece)) {
          span.append(el("b", { class: "hit", text: piece }));
        } else span.append(piece);
      }
    } else span.append(part);
  });
  return span;
}

function examples(list) {
  return el(
    "ol",
    { class: "examples" },
    list.map((ex) =>
      el(
        "li",
        {},
        ex.text ? tokenText(ex.text) : el("span", { class: "muted", text: `row ${ex.row}` }),
        el("span", { class: "act", text: `${fmt(ex.activation)} · row ${ex.row}` }),
      ),
    ),
  );
}

function table(head, rows) {
  return el(
    "table",
    {},
    el("tr", {}, head.map((h) => el("th", { text: h }))),
    rows.map((r) =>
      el(
        "tr",
        {},
        r.map((c) => el("td", { class: typeof c === "number" ? "num" : null }, typeof c === "number" ? fmt(c) : c)),
      ),
    ),
  );
}

const pending = [];

// A plotly figure in a card, with a caption saying sample size and interval.
function plot(title, traces, layout, caption) {
  // plotly.js 3 takes axis titles only as {text}.
  for (const axis of ["xaxis", "yaxis"]) {
    if (layout && layout[axis] && typeof layout[axis].title === "string") layout[axis].title = { text: layout[axis].title };
  }
  const div = el("div", { class: "plot" });
  const card = el("div", { class: "card" }, el("strong", { text: title }), div, caption ? el("div", { class: "caption", text: caption }) : null);
  pending.push(() =>
    Plotly.newPlot(
      div,
      traces,
      Object.assign({ margin: { l: 55, r: 15, t: 15, b: 45 }, height: 280, font: { size: 12 }, showlegend: traces.length > 1, legend: { orientation: "h", y: 1.12 } }, layout),
      { displaylogo: false, responsive: true },
    ),
  );
  return card;
}

function section(title, ...content) {
  return [el("h2", { text: title }), ...content];
}

function centers(edges, log) {
  const out = [];
  for (let i = 0; i + 1 < edges.length; i++) out.push(log ? Math.sqrt(edges[i] * edges[i + 1]) : (edges[i] + edges[i + 1]) / 2);
  return out;
}

function claimsList(claims) {
  return el(
    "div",
    {},
    claims.map((c) =>
      el(
        "div",
        { class: "card claim" },
        badge(c.verdict),
        " ",
        el("span", { text: c.sentence || "" }),
        el("div", { class: "caption", text: "evidence: " + JSON.stringify(c.evidence || {}) }),
      ),
    ),
  );
}

function dictOf(id) {
  return (INDEX.dictionaries || []).find((d) => d.id === id);
}

async function render(title, kind, nodes) {
  document.title = `${title} · polysemy explorer`;
  main.replaceChildren(...nodes.flat().filter((n) => n));
  main.dataset.shown = kind;
  const jobs = pending.splice(0);
  if (jobs.length) {
    if (!window.Plotly) await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));  // paint the text first
    await plotlyReady();
  }
  await Promise.all(jobs.map((job) => job()));
  main.dataset.hash = location.hash;  // which route is drawn: a test waits for the one it asked for
  main.dataset.ready = kind;
}

function notFound(what) {
  return render("not found", "notfound", [el("h1", { text: "Not found" }), el("p", { text: what })]);
}

// ------------------------------------------------------------------ pages

async function home() {
  const nodes = [el("h1", { text: `Run ${INDEX.run}` })];
  for (const d of INDEX.dictionaries) {
    const s = d.summaries || {};
    const lines = [];
    if (s.features) lines.push(`${fmt(s.features.n_features)} features over ${fmt(s.features.rows)} rows; dead ${pct(s.features.dead_fraction)}`);
    if (s.neurons) lines.push(`neurons: median effective features ${fmt(s.neurons.effective_features_median)}${ci(s.neurons.effective_features_median_ci)} vs rotated basis ${fmt(s.neurons.baseline?.effective_features_median)} (${s.neurons.verdict})`);
    if (s.geometry) lines.push(`geometry: overlap vs co-occurrence ${s.geometry.verdict}`);
    nodes.push(
      el(
        "div",
        { class: "card" },
        el("h2", {}, link(`#/dict/${d.id}`, `Dictionary ${d.id}`), el("span", { class: "muted", text: ` ${d.site || ""} · d_in ${fmt(d.d_in)} · d_sae ${fmt(d.d_sae)}` })),
        el("ul", {}, lines.map((t) => el("li", { text: t }))),
        el("p", {}, (d.pages || []).map((p) => [link(p === "features" ? `#/dict/${d.id}` : `#/${p}/${d.id}`, p), " "])),
      ),
    );
  }
  if (INDEX.toys.length) {
    nodes.push(...section("Toy models", el("ul", {}, INDEX.toys.map((t) => el("li", {}, link(`#/toy/${t.id}`, t.id), ` ${t.model}: ${t.n_features} features in ${t.n_hidden} dimensions, ${t.n_instances} instances`)))));
  }
  if (INDEX.claims) nodes.push(...section("Claims", el("p", {}, link("#/claims", `${INDEX.claims} claims with verdicts`))));
  nodes.push(...driftHome());  // static/drift.js
  nodes.push(...circuitsHome());  // circuits.js
  return render("home", "home", nodes);
}

async function dictionary(id) {
  const d = dictOf(id);
  if (!d) return notFound(`no dictionary ${id}`);
  const s = d.summaries.features;
  const nodes = [el("h1", { text: `Dictionary ${id}` }), el("p", { class: "muted", text: `${d.site || ""} · d_in ${fmt(d.d_in)} · d_sae ${fmt(d.d_sae)}` })];
  const form = el("form", { id: "goto-feature" }, "open feature ", el("input", { id: "goto", type: "number", min: "0", max: String(d.d_sae - 1), value: "0" }), " ", el("button", { type: "submit", text: "Open" }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/feature/${id}/${document.getElementById("goto").value}`;
  });
  nodes.push(form, el("p", {}, (d.pages || []).filter((p) => p !== "features").map((p) => [link(`#/${p}/${id}`, p), " "])));
  if (s) {
    nodes.push(
      el("ul", {}, [
        el("li", { text: `dead features ${pct(s.dead_fraction)} over ${fmt(s.rows)} rows` }),
        el("li", { text: `spread over neurons: median participation ratio ${fmt(s.participation_ratio_median)}${ci(s.participation_ratio_median_ci)} vs random directions ${fmt(s.baseline?.participation_ratio_median)}${ci(s.baseline?.participation_ratio_range)}` }),
        el("li", { text: `concentrated (PR below the null's 2.5% quantile): ${pct(s.concentrated_fraction)}${ci(s.concentrated_fraction_ci)}` }),
      ]),
    );
  }
  if (d.density) {
    const c = centers(d.density.edges, true);
    nodes.push(plot("Feature density (log scale)", [{ type: "bar", x: c, y: d.density.counts, name: "features" }], { xaxis: { type: "log", title: "fraction of rows where the feature fires" }, yaxis: { title: "features" } }, `n = ${fmt(d.density.n)} features, ${fmt(d.density.dead)} dead (never fire) not drawn`));
  }
  if (d.top_features) {
    nodes.push(...section("Most frequent features", table(["feature", "density", "strongest example"], d.top_features.map((t) => [featureLink(id, t.feature), pct(t.density), t.label ? tokenText(t.label) : ""]))));
  }
  return render(`dictionary ${id}`, "dictionary", nodes);
}

async function feature(id, f) {
  const d = dictOf(id);
  if (!d || !Number.isInteger(f) || f < 0 || (d.d_sae && f >= d.d_sae)) return notFound(`dictionary ${id} has no feature ${f}` + (d ? ` (d_sae = ${d.d_sae})` : ""));
  const p = await pageOf(`dicts/${id}/features`, f);
  if (!p) return notFound(`dictionary ${id} has no feature ${f}`);
  const nodes = [
    el("h1", { text: `Feature ${f}` }, el("span", { class: "muted", text: ` of ${id}` })),
    el("p", {}, f > 0 ? link(`#/feature/${id}/${f - 1}`, "← previous") : "", " ", link(`#/dict/${id}`, "dictionary"), " ", f + 1 < p.d_sae ? link(`#/feature/${id}/${f + 1}`, "next →") : ""),
  ];
  if (p.density !== undefined) nodes.push(el("p", { text: `fires on ${pct(p.density)} of ${fmt(p.rows)} rows; mean activation when firing ${fmt(p.mean_activation)}` }));
  if (p.claims) nodes.push(...section("Claim verdicts", claimsList(p.claims)));
  if (p.top) nodes.push(...section("Top examples", examples(p.top)));
  if (p.quantiles && p.quantiles.length) nodes.push(...section("Examples at evenly spaced activation quantiles", el("p", { class: "caption", text: "weakest first: where the feature fires weakly, not only where it peaks" }), examples(p.quantiles)));
  const plots = [];
  if (p.histogram && p.histogram.edges) {
    const n = p.histogram.counts.reduce((a, b) => a + b, 0);
    plots.push(plot("Activation histogram", [{ type: "bar", x: centers(p.histogram.edges, true), y: p.histogram.counts, name: "firings" }], { xaxis: { type: "log", title: "activation" }, yaxis: { title: "rows" } }, `n = ${fmt(n)} firings (log-spaced bins shared by every feature)`));
  }
  if (d.density && p.density !== undefined) {
    const x = centers(d.density.edges, true);
    plots.push(plot("Density among all features", [{ type: "bar", x, y: d.density.counts, name: "all features", marker: { color: "#b0bec5" } }, { type: "scatter", mode: "lines", x: [p.density, p.density], y: [0, Math.max(...d.density.counts, 1)], name: `feature ${f}`, line: { color: "#c62828", width: 3 } }], { xaxis: { type: "log", title: "density" }, yaxis: { title: "features" } }, `this feature (red) among n = ${fmt(d.density.n)} features`));
  }
  const sp = p.spread;
  if (sp && sp.top_neurons) {
    plots.push(plot("Neurons it spans", [{ type: "bar", x: sp.top_neurons.map((t) => "n" + t[0]), y: sp.top_neurons.map((t) => t[1]), name: "share of ||w||²" }], { xaxis: { title: "neuron" }, yaxis: { title: "share of squared decoder norm", range: [0, 1] } }, sp.participation_ratio !== undefined ? `participation ratio ${fmt(sp.participation_ratio)} vs random directions of equal norm: central 95% ${ci(sp.null_range)} (n = ${fmt(sp.null_n)}); 50% of ||w||² in ${sp.neurons_50} neurons, 90% in ${sp.neurons_90} of ${fmt(sp.d_in)}` : `largest ${sp.top_neurons.length} of ${fmt(sp.d_in)} neurons`));
  }
  if (p.ablation) {
    const a = p.ablation;
    const x = centers(a.edges, false);
    const s = a.summary || {};
    plots.push(plot("Ablation effect", [{ type: "bar", x, y: a.counts, name: "ablating this feature", opacity: 0.75 }, { type: "bar", x, y: a.null_counts, name: `random directions (mean of ${a.null_directions})`, opacity: 0.6 }], { barmode: "overlay", xaxis: { title: `effect (${a.effect})` }, yaxis: { title: "examples" } }, `n = ${fmt(a.n)} examples; mean effect ${fmt(s.mean_effect)}${ci(s.ci)} vs null ${ci(s.null_range)}: ${s.verdict}`));
  }
  if (plots.length) nodes.push(el("h2", { text: "Distributions" }), el("div", { class: "grid" }, plots));
  if (sp && sp.participation_ratio !== undefined && !sp.top_neurons) nodes.push(el("p", { text: `participation ratio over neurons ${fmt(sp.participation_ratio)} vs random directions ${ci(sp.null_range)}` }));
  if (p.neighbours) nodes.push(...section("Nearest features (decoder cosine)", table(["feature", "cosine"], p.neighbours.map(([g, c]) => [featureLink(id, g), c]))));
  if (p.partners) nodes.push(...section("Co-occurrence partners", el("p", { class: "caption", text: "largest excess co-firing over independence (the shuffled-rows null); lift = observed / expected" }), table(["feature", "rows together", "lift"], p.partners.map(([g, c, l]) => [featureLink(id, g), c, l]))));
  if (p.neurons) nodes.push(...section("A voice in these neurons", table(["neuron", "share of the neuron"], p.neurons.map(([j, s]) => [neuronLink(id, j), pct(s)]))));
  if (p.geometry) nodes.push(...section("Geometry", el("p", { text: `dimensionality ${fmt(p.geometry.dimensionality)}, decoder norm ${fmt(p.geometry.norm)}, fired on ${fmt(p.geometry.firing_count)} rows` })));
  nodes.push(...(await circuitEdgesSection(id, f)));  // circuits.js
  return render(`feature ${f} of ${id}`, "feature", nodes);
}

async function neuronsPage(id) {
  const o = await getJSON(`dicts/${id}/neurons.json`);
  if (!o) return notFound(`dictionary ${id} has no neurons analysis`);
  const s = o.summary || {};
  const nodes = [el("h1", { text: `Neurons of ${id}` })];
  if (s.warning) nodes.push(el("p", { class: "warning", text: s.warning }));
  nodes.push(el("p", { text: `median effective number of features ${fmt(s.effective_features_median)}${ci(s.effective_features_median_ci)} vs rotated basis ${fmt(s.baseline?.effective_features_median)}${ci(s.baseline?.effective_features_median_ci)}: ` }, badge(s.verdict)));
  nodes.push(effectivePlot(o, null));
  nodes.push(...section("Neurons", table(["neuron", "effective features", "top feature"], o.neurons.map(([j, e, f]) => [neuronLink(id, j), e, f === null ? "" : featureLink(id, f)]))));
  return render(`neurons of ${id}`, "neurons", nodes);
}

function effectivePlot(o, value) {
  const x = centers(o.edges, false);
  const traces = [{ type: "bar", x, y: o.counts, name: "neurons", opacity: 0.75 }];
  if (o.baseline_counts) traces.push({ type: "bar", x, y: o.baseline_counts, name: "randomly rotated basis", opacity: 0.55 });
  if (value !== null) traces.push({ type: "scatter", mode: "lines", x: [value, value], y: [0, Math.max(...o.counts, 1)], name: "this neuron", line: { color: "#c62828", width: 3 } });
  return plot("Effective number of features vs rotation baseline", traces, { barmode: "overlay", xaxis: { title: "effective features (exp entropy of shares)" }, yaxis: { title: "neurons" } }, `n = ${fmt(o.n)} neurons; baseline n = ${fmt(o.baseline_n)} rotated directions`);
}

async function neuron(id, j) {
  const p = await pageOf(`dicts/${id}/neurons`, j);
  if (!p) return notFound(`dictionary ${id} has no neuron ${j}`);
  const o = await getJSON(`dicts/${id}/neurons.json`);
  const nodes = [el("h1", { text: `Neuron ${j}` }, el("span", { class: "muted", text: ` of ${id}` })), el("p", {}, link(`#/neurons/${id}`, "all neurons"))];
  if (p.warning) nodes.push(el("p", { class: "warning", text: p.warning }));
  const names = (p.features || []).slice(0, 8).map(([f]) => `feature ${f}`);
  nodes.push(el("p", { text: `A chorus of about ${fmt(p.effective_features, 1)} features (participation ratio ${fmt(p.participation_ratio, 1)}); its strongest voices are ${names.slice(0, 3).join(", ") || "none"}; the SAE's error carries ${pct(p.error_share)} over ${fmt(p.rows)} rows.` }));
  if (p.claims) nodes.push(...section("Claim verdicts", claimsList(p.claims)));
  // Legend off (the Voices table below names every bar); the strongest voices are labelled.
  const traces = (p.features || []).map(([f, s], k) => ({ type: "bar", orientation: "h", y: ["neuron " + j], x: [s], name: `feature ${f}`, text: k < 3 ? [`f${f}`] : [""], textposition: "inside", hovertemplate: `feature ${f}: %{x:.2%}<extra></extra>` }));
  traces.push({ type: "bar", orientation: "h", y: ["neuron " + j], x: [p.other_share], name: "other features", marker: { color: "#cfd8dc" } });
  traces.push({ type: "bar", orientation: "h", y: ["neuron " + j], x: [p.error_share], name: "SAE error", marker: { color: "#455a64" } });
  const plots = [plot("Stacked decomposition by feature", traces, { barmode: "stack", height: 200, showlegend: false, xaxis: { title: "share of the neuron's activation (grey: other features, dark: SAE error)", range: [0, 1] }, margin: { l: 80, r: 15, t: 10, b: 50 } }, `shares over n = ${fmt(p.rows)} rows; the error line is the SAE's reconstruction error`)];
  if (o) plots.push(effectivePlot(o, p.effective_features));
  nodes.push(el("div", { class: "grid" }, plots));
  nodes.push(...section("Voices", table(["feature", "share"], (p.features || []).map(([f, s]) => [featureLink(id, f), pct(s)]))));
  if (p.groups && p.groups.length) {
    nodes.push(el("h2", { text: "Top contexts, grouped by the dominant feature" }));
    for (const g of p.groups) {
      nodes.push(el("div", { class: "card group" }, el("strong", {}, featureLink(id, g.feature), ` dominates ${g.contexts.length} of the top contexts`), examples(g.contexts)));
    }
  }
  return render(`neuron ${j} of ${id}`, "neuron", nodes);
}

async function geometry(id) {
  const p = await getJSON(`dicts/${id}/geometry.json`);
  if (!p) return notFound(`dictionary ${id} has no geometry analysis`);
  const s = p.summary || {};
  const test = s.cooccurrence_overlap || {};
  const nodes = [el("h1", { text: `Geometry of ${id}` })];
  nodes.push(
    el("ul", {}, [
      el("li", { text: `mean feature dimensionality ${fmt(s.dimensionality_mean)}${ci(s.dimensionality_ci)} vs random directions ${fmt(s.dimensionality_null_mean)}` }),
      el("li", { text: `|cos| p99 ${fmt(s.interference_p99)} vs random ${fmt(s.interference_null_p99)}; Welch bound ${fmt(s.welch_bound)}; ${fmt(s.interference_pairs)} pairs` }),
      el("li", {}, `overlap vs co-occurrence (${test.measure || "phi"}): Spearman rho ${fmt(test.rho)}${ci(test.ci)} over n = ${fmt(s.n)} pairs of ${fmt(s.features)} features; null (permuted labels) ${ci(test.null_ci)}: `, badge(s.verdict)),
    ]),
  );
  const plots = [];
  if (p.interference) {
    const x = centers(p.interference.edges, false);
    // Zoom to the bins that hold pairs (|cos| of a wide dictionary stays far below 1).
    let last = 0;
    p.interference.counts.forEach((c, k) => { if (c > 0 || p.interference.null_counts[k] > 0) last = k; });
    const xmax = p.interference.edges[Math.min(last + 2, p.interference.edges.length - 1)];
    plots.push(plot("Interference |cos| between decoder rows", [{ type: "bar", x, y: p.interference.counts, name: "dictionary", opacity: 0.75 }, { type: "bar", x, y: p.interference.null_counts, name: "random directions", opacity: 0.55 }], { barmode: "overlay", xaxis: { title: "|cos|", range: [0, xmax] }, yaxis: { title: "pairs", type: "log" } }, `n = ${fmt(p.interference.pairs)} pairs, same pairs for the null`));
  }
  if (p.map) {
    const labels = p.map.features.map((f) => "f" + f);
    plots.push(plot("Interference map (most frequent features)", [{ type: "heatmap", z: p.map.abs_cos, x: labels, y: labels, colorscale: "Viridis", zmin: 0, hoverongaps: false }], { height: 420, xaxis: { showticklabels: labels.length <= 32 }, yaxis: { showticklabels: labels.length <= 32, autorange: "reversed" } }, `|cos| among the ${labels.length} most frequent features of the test`));
  }
  if (p.scatter) {
    const sc = p.scatter;
    plots.push(plot("Overlap vs co-occurrence", [{ type: "scatter", mode: "markers", x: sc.phi, y: sc.abs_cos, marker: { size: 4, opacity: 0.5 }, name: "pairs", text: sc.feature_i.map((a, k) => `f${a} · f${sc.feature_j[k]}`) }], { xaxis: { title: "co-occurrence (phi)" }, yaxis: { title: "|cos|" } }, `${fmt(sc.shown)} of ${fmt(sc.pairs)} pairs shown; rho ${fmt(test.rho)}${ci(test.ci)} vs permuted-label null ${ci(test.null_ci)}`));
  }
  nodes.push(el("div", { class: "grid" }, plots));
  return render(`geometry of ${id}`, "geometry", nodes);
}

async function toy(id) {
  const p = await getJSON(`toys/${id}.json`);
  if (!p) return notFound(`no toy run ${id}`);
  const c = p.config || {};
  const nodes = [el("h1", { text: `Toy model ${id}` }), el("p", { text: `${c.model}: ${c.n_features} features in ${c.n_hidden} hidden dimensions; ${p.n_instances} instances (${p.instances.length} shown)` })];
  for (const [i, inst] of p.instances.entries()) {
    const plots = [];
    if (inst.WtW) plots.push(plot(`W^T W, sparsity ${fmt(inst.sparsity)}`, [{ type: "heatmap", z: inst.WtW, colorscale: "RdBu", zmid: 0, reversescale: true }], { height: 300, yaxis: { autorange: "reversed", title: "feature" }, xaxis: { title: "feature" } }, `instance ${i}; loss ${fmt(inst.loss)}; off-diagonal entries are interference`));
    if (inst.feature_norms) plots.push(plot(`Feature norms, sparsity ${fmt(inst.sparsity)}`, [{ type: "bar", x: inst.feature_norms.map((_, k) => k), y: inst.feature_norms, name: "||W_i||" }], { height: 300, xaxis: { title: "feature (importance order)" }, yaxis: { title: "||W_i||" } }, `${fmt(inst.represented)} of ${inst.feature_norms.length} features represented; dimensions per feature ${fmt(inst.dimensions_per_feature)}`));
    nodes.push(el("div", { class: "grid" }, plots));
  }
  return render(`toy ${id}`, "toy", nodes);
}

// Links to the pages of the features and neurons a claim names (`feature:12`, "neuron": 7),
// in the dictionary it names (site, sae or dictionary) or, when it names none, the only one.
function targetLinks(claim) {
  const text = JSON.stringify(claim || {});
  const names = [claim?.site, claim?.sae, claim?.dictionary].filter((x) => typeof x === "string");
  const dicts = INDEX.dictionaries.filter((d) => !names.length || names.some((n) => [d.id, d.site, d.store, d.sae].includes(n) || n.split("/").pop() === d.id));
  if (dicts.length !== 1) return null;
  const found = new Set();
  for (const m of text.matchAll(/"?(feature|neuron)"?\s*:\s*"?(\d+)/g)) found.add(`${m[1]}/${m[2]}`);
  return el("div", {}, [...found].map((t) => {
    const [kind, n] = t.split("/");
    return [link(`#/${kind}/${dicts[0].id}/${n}`, `${kind} ${n}`), " "];
  }));
}

// The battery's headline numbers, each with its interval and n; the rest stays one click away.
function claimFigures(ev) {
  const interval = (x) => (x && typeof x === "object" && "estimate" in x ? `${fmt(x.estimate, 2)} [${fmt(x.low, 2)}, ${fmt(x.high, 2)}] (n ${fmt(x.n)})` : null);
  const rows = [
    ["held-out AUROC", interval(ev.heldout && ev.heldout.auroc)],
    ["strongest-context precision", interval(ev.heldout && ev.heldout.top_precision)],
    ["shifted AUROC", interval(ev.shifted && ev.shifted.auroc)],
    ["edit effect", interval(ev.edits && ev.edits.sensitivity && ev.edits.sensitivity.effect)],
    ["edit specificity", ev.edits && typeof ev.edits.specificity === "number" ? fmt(ev.edits.specificity, 2) : null],
    ["ablation", ev.ablation && ev.ablation.verdict ? `${ev.ablation.verdict} (n ${fmt(ev.ablation.n)})` : null],
    ["chorus", ev.chorus && typeof ev.chorus.effective_features === "number" ? `about ${fmt(Math.round(ev.chorus.effective_features))} features` : null],
  ];
  return rows.filter(([, v]) => v !== null).map(([k, v]) => `${k}: ${v}`);
}

async function claimsPage() {
  const claims = (await getJSON("claims.json")) || [];
  const nodes = [el("h1", { text: "Claims" })];
  if (!claims.length) nodes.push(el("p", { text: "No claims folder in this run." }));
  const counts = {};
  for (const c of claims) counts[c.verdict] = (counts[c.verdict] || 0) + 1;
  nodes.push(el("p", {}, Object.entries(counts).map(([v, n]) => [badge(v), ` ${n}  `])));
  nodes.push(
    table(
      ["verdict", "claim", "key figures (95% intervals)"],
      claims.map((c) => [
        badge(c.verdict),
        el("div", {}, el("div", { text: c.sentence || "" }), el("pre", { text: JSON.stringify(c.claim) }), targetLinks(c.claim)),
        el(
          "div",
          { class: "figcol" },
          el("ul", { class: "figures" }, claimFigures(c.evidence || {}).map((f) => el("li", { text: f }))),
          el("details", {}, el("summary", { text: "all evidence" }), el("pre", { text: JSON.stringify(c.evidence, null, 1) })),
        ),
      ]),
    ),
  );
  return render("claims", "claims", nodes);
}

function hex(text) {
  return Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function search(query) {
  const words = (query.toLowerCase().match(/\w+/gu) || []).slice(0, 6);
  document.getElementById("search").value = query;
  const nodes = [el("h1", { text: `Search: ${query}` })];
  if (!words.length) return render("search", "search", [...nodes, el("p", { text: "Type a word from the example texts." })]);
  const perWord = [];
  for (const w of words) {
    const key = hex(Array.from(w).slice(0, 2).join(""));
    const shard = INDEX.search_shards.includes(key) ? await getJSON(`search/${key}.json`) : null;
    const hits = new Map();
    for (const [word, postings] of Object.entries(shard || {})) {
      if (!word.startsWith(w)) continue;
      for (const [d, f, act, text] of postings) {
        const k = `${d}/${f}`;
        if (!hits.has(k) || hits.get(k).act < act) hits.set(k, { d, f, act, text });
      }
    }
    perWord.push(hits);
  }
  const [first, ...rest] = perWord;
  const results = [...first.entries()].filter(([k]) => rest.every((h) => h.has(k))).map(([, v]) => v);
  results.sort((a, b) => b.act - a.act);
  nodes.push(el("p", { class: "caption", text: `${results.length} features whose top or quantile examples contain ${words.map((w) => `"${w}…"`).join(" and ")} (at most 50 per word, strongest first)` }));
  nodes.push(...circuitSearch(words));  // circuits.js
  nodes.push(el("ol", { class: "examples results" }, results.slice(0, 200).map((r) => el("li", {}, link(`#/feature/${r.d}/${r.f}`, `${r.d} feature ${r.f}`), " ", tokenText(r.text, words), el("span", { class: "act", text: fmt(r.act) })))));
  return render(`search ${query}`, "search", nodes);
}

// ------------------------------------------------------------------ router

async function route() {
  main.dataset.ready = "";
  main.dataset.shown = "";
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const [page, a, b] = parts;
  const int = (x) => (/^\d+$/.test(x || "") ? Number(x) : NaN);
  try {
    if (!page) return await home();
    if (page === "dict") return await dictionary(a);
    if (page === "feature") return await feature(a, int(b));
    if (page === "neurons") return await neuronsPage(a);
    if (page === "neuron") return Number.isInteger(int(b)) ? await neuron(a, int(b)) : await notFound(`no neuron ${b}`);
    if (page === "geometry") return await geometry(a);
    if (page === "toy") return await toy(a);
    if (page === "claims") return await claimsPage();
    if (page === "drift") return await driftPage(a, b === undefined ? undefined : int(b));
    if (page === "circuit") return await circuitPage(a);
    if (page === "search") return await search(parts.slice(1).join("/"));
    return await notFound(`no page ${location.hash}`);
  } catch (err) {
    main.replaceChildren(el("p", { class: "warning", text: `could not draw this page: ${err}` }));
    main.dataset.ready = "error";
    throw err;
  }
}

async function start() {
  INDEX = await getJSON("index.json");
  if (!INDEX) {
    main.textContent = "This run has no explorer index; run polysemy explore RUN to build it.";
    return;
  }
  const nav = document.getElementById("nav");
  for (const d of INDEX.dictionaries) {
    nav.append(link(`#/dict/${d.id}`, d.id));
    for (const p of d.pages || []) if (p !== "features") nav.append(link(`#/${p}/${d.id}`, `${d.id} ${p}`));
  }
  for (const t of INDEX.toys) nav.append(link(`#/toy/${t.id}`, `toy ${t.id}`));
  if (INDEX.claims) nav.append(link("#/claims", "claims"));
  driftNav(nav);
  circuitsNav(nav);  // circuits.js
  document.getElementById("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = "#/search/" + encodeURIComponent(document.getElementById("search").value.trim());
  });
  window.addEventListener("hashchange", route);
  await route();
}

start();
