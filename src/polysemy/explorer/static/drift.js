// polysemy explorer: the drift pages (#/drift/<id> and #/drift/<id>/<neuron>), drawn from
// explorer/drift/<id>.json and its neuron shards (polysemy.explorer.drift_index): snapshot
// drift (organism, toy) and drift across corpora (corpusDriftPage). Loaded
// before app.js; uses its helpers (el, plot, render, fmt, ci, ...) when a page is drawn.
"use strict";

// A pair's figure under either analysis's name (organism: score, toy: drift).
function driftPair(p, key) {
  return p[key] || p[{ score: "drift", null_score: "null_drift" }[key]] || null;
}

function driftInterval(x) {
  return x && x.estimate !== undefined && x.estimate !== null ? `${fmt(x.estimate)}${ci(x)}` : "–";
}

function driftHome() {
  const items = INDEX.drift || [];
  if (!items.length) return [];
  return section(
    "Meaning drift",
    el(
      "ul",
      {},
      items.map((d) =>
        el(
          "li",
          {},
          link(`#/drift/${d.id}`, d.id),
          d.corpora
            ? ` across corpora ${d.corpus_a} vs ${d.corpus_b}: ${fmt(d.n_neurons)} neurons; fraction singing different voices ${driftInterval(d.different_fraction)} vs half-split null ${driftInterval(d.null_different_fraction)}`
            : d.generic
            ? ` summary only${d.steps.length ? ", snapshots " + d.steps.join(", ") : ""}`
            : ` ${d.source}: ${fmt(d.n_neurons)} neurons over snapshots ${d.steps.join(", ")}; switch fraction ${driftInterval(d.switch_fraction)} vs SAE/seed null ${driftInterval(d.null_switch_fraction)}`,
        ),
      ),
    ),
  );
}

function driftNav(nav) {
  for (const d of INDEX.drift || []) nav.append(link(`#/drift/${d.id}`, `drift ${d.id}`));
}

// Legends under the plot: stacked voices and loss curves have more entries than fit above.
const DRIFT_LAYOUT = { height: 400, legend: { orientation: "h", y: -0.3 }, margin: { l: 55, r: 15, t: 15, b: 110 } };

const DRIFT_KNOWN = new Set(["site", "d_mlp", "d_sae", "n_snapshots", "steps", "rows", "dictionary", "neurons", "features", "pairs", "null", "saes", "n_instances", "n_hidden", "span", "late"]);

async function driftPage(id, j) {
  // Known ids only: an unknown one is a "not found" page, not a failed request.
  const known = (INDEX.drift || []).some((d) => d.id === id);
  const o = known ? await getJSON(`drift/${id}.json`) : null;
  if (!o) return notFound(`no drift analysis ${id}`);
  if (o.generic) return driftSummaryPage(o);
  if (o.corpora) return corpusDriftPage(o, j);
  const n = o.n_neurons;
  if (j === undefined) j = (o.picks.switching || [0])[0] ?? 0;
  if (!Number.isInteger(j) || j < 0 || j >= n) return notFound(`drift ${id} has no neuron ${j} (it has ${n})`);
  const shard = await getJSON(`drift/${id}/${Math.floor(j / o.shard_size)}.json`);
  const v = shard ? shard[String(j)] : null;
  if (!v) return notFound(`drift ${id} has no neuron ${j}`);
  const s = o.summary || {};
  const nr = s.neurons || {};
  const nl = s.null || {};
  const nodes = [el("h1", { text: `Meaning drift ${id}` }), el("p", { class: "muted", text: `${o.source} · folder ${o.folder} · snapshots at steps ${o.steps.join(", ")}${s.site ? " · site " + s.site : ""}` })];
  nodes.push(
    el("ul", {}, [
      el("li", { text: `dominant-feature switch fraction ${driftInterval(nr.switch_fraction)} vs null (${nl.kind || "null"}) ${driftInterval(nl.switch_fraction)}` }),
      el("li", { text: `mean meaning-switch score ${driftInterval(nr.mean_score || nr.mean_drift)} vs null ${driftInterval(nl.mean_score || nl.drift)}; n = ${fmt(nr.n)} (${nr.unit || "neuron x pair"})` }),
      el("li", { text: `median activation correlation between consecutive snapshots ${fmt(nr.median_correlation)}` }),
    ]),
  );
  // The picker: the most switching neurons, the most stable one, or any neuron by number.
  const options = [...(o.picks.switching || []).map((k) => [k, "switching"]), ...(o.picks.stable || []).map((k) => [k, "stable"])];
  nodes.push(neuronPicker(id, j, n, options));
  const head = el("h2", { text: `${v.label}` });
  if (o.neuron_dictionary) head.append(" ", link(`#/neuron/${o.neuron_dictionary}/${j}`, "neuron page"));
  nodes.push(head);
  const steps = v.steps.map(String);
  const traces = v.layers.map((l) => ({ type: "scatter", mode: "lines", stackgroup: "voices", x: steps, y: l.shares, name: l.name, hovertemplate: `${l.name}: %{y:.1%}<extra></extra>` }));
  if (v.others.some((x) => x > 0)) traces.push({ type: "scatter", mode: "lines", stackgroup: "voices", x: steps, y: v.others, name: "other shown voices", line: { color: "#b0bec5" } });
  if (v.rest.some((x) => x > 0)) traces.push({ type: "scatter", mode: "lines", stackgroup: "voices", x: steps, y: v.rest, name: v.rest_name, line: { color: "#607d8b" } });
  const voiceNote = o.source === "toy" ? "shares over the toy's true features, read off the weights (exact: no interval)" : "squared-chorus shares over each snapshot's own SAE (seed A); features chained across snapshots into lineages by activation correlation; the lineage labels plots only, the score below is the evidence";
  const plots = [plot("Voices over snapshots", traces, { xaxis: { title: "snapshot step", type: "category" }, yaxis: { title: "share of the neuron", range: [0, 1] }, ...DRIFT_LAYOUT }, `${voiceNote}; ${v.layers.length} strongest voices drawn`)];
  const pairs = o.pairs.map((p) => `${p.from_step}→${p.to_step}`);
  const band = o.null_band;
  plots.push(
    plot(
      "Switch score vs null, per snapshot pair",
      [
        { type: "scatter", mode: "lines", x: pairs, y: band.high, line: { width: 0 }, showlegend: false, hoverinfo: "skip" },
        { type: "scatter", mode: "lines", x: pairs, y: band.low, fill: "tonexty", fillcolor: "rgba(120,144,156,0.3)", line: { width: 0 }, name: `null, central ${Math.round(100 * band.level)}% of ${band.n} neurons` },
        { type: "scatter", mode: "lines+markers", x: pairs, y: v.null_score, name: "this neuron's null", line: { dash: "dot", color: "#546e7a" } },
        { type: "scatter", mode: "lines+markers", x: pairs, y: v.score, name: "this neuron", line: { color: "#c62828", width: 3 } },
      ],
      { xaxis: { title: "snapshot pair (steps)", type: "category" }, yaxis: { title: o.source === "toy" ? "1 - cos of shares" : "meaning-switch score" }, ...DRIFT_LAYOUT },
      `dominant feature switched at: ${v.switch.map((x, k) => (x ? pairs[k] : null)).filter((x) => x).join(", ") || "no pair"}; activation correlation ${v.correlation.map((c) => fmt(c, 2)).join(", ")}`,
    ),
  );
  nodes.push(el("div", { class: "grid" }, plots));
  nodes.push(el("h2", { text: "All neurons" }));
  const overall = [];
  const h = o.score_histogram;
  const x = centers(h.edges, false);
  overall.push(plot("Per-neuron score vs null", [{ type: "bar", x, y: h.counts, name: "score (mean over pairs)", opacity: 0.75 }, { type: "bar", x, y: h.null_counts, name: "null (mean over pairs)", opacity: 0.55 }], { barmode: "overlay", xaxis: { title: "mean score over snapshot pairs" }, yaxis: { title: "neurons" }, ...DRIFT_LAYOUT }, `n = ${fmt(h.n)} neurons; mean score ${driftInterval(nr.mean_score || nr.mean_drift)} vs null ${driftInterval(nl.mean_score || nl.drift)}`));
  const g = o.genealogy;
  if (g) {
    const kinds = ["born", "died", "split", "merged"];
    const colors = { born: "#2e7d32", died: "#c62828", split: "#1565c0", merged: "#6a1b9a" };
    const gt = [];
    for (const k of kinds) {
      gt.push({ type: "bar", x: g.pairs, y: g[k], name: k, marker: { color: colors[k] }, offsetgroup: k });
      gt.push({ type: "bar", x: g.pairs, y: g["null_" + k], name: `${k} (null)`, marker: { color: colors[k], opacity: 0.35, pattern: { shape: "/" } }, offsetgroup: k + "-null", showlegend: k === "born" });
    }
    overall.push(plot("Feature genealogy", gt, { barmode: "group", xaxis: { title: "snapshot pair (steps)", type: "category" }, yaxis: { title: "features" }, ...DRIFT_LAYOUT }, `features of ${fmt(g.d_sae)}-latent SAEs related when their activations correlate ≥ ${fmt(g.threshold, 2)}; hatched: the same counts between two SAE seeds at the later snapshot (SAE noise alone); no interval: counts of one pair of SAEs`));
  }
  const L = o.loss;
  if (L) {
    const lt = [{ type: "scatter", mode: "lines", x: L.history.map((r) => r.step), y: L.history.map((r) => r.loss), name: "training loss", line: { color: "#90a4ae" } }];
    const sn = L.snapshots.filter((r) => r.heldout_loss !== null && r.heldout_loss !== undefined);
    lt.push({ type: "scatter", mode: "markers", x: sn.map((r) => r.step), y: sn.map((r) => r.heldout_loss), name: L.unit ? "loss at snapshots" : "held-out loss at snapshots", marker: { size: 9, color: "#c62828" }, error_y: { type: "data", symmetric: false, array: sn.map((r) => (r.ci95 ? r.ci95[1] - r.heldout_loss : 0)), arrayminus: sn.map((r) => (r.ci95 ? r.heldout_loss - r.ci95[0] : 0)) } });
    const last = Math.max(...L.history.map((r) => r.step), ...sn.map((r) => r.step), 1);
    for (const [name, b] of Object.entries(L.baselines || {})) lt.push({ type: "scatter", mode: "lines", x: [0, last], y: [b.loss, b.loss], name: `${name} baseline ${fmt(b.loss)}${ci(b.ci95)}`, line: { dash: "dash" } });
    const windows = sn.length && sn[0].windows ? `, ${fmt(sn[0].windows)} held-out windows each` : "";
    const how = sn.some((r) => r.ci95) ? `held-out loss with its 95% bootstrap interval over windows${windows}` : "held-out loss (no interval: the run was written before snapshots recorded one)";
    // A toy's curve (training.json with a `unit`): losses at the snapshots on fresh inputs.
    const along = L.history.length && L.history_unit ? `grey: the training run's loss, ${L.history_unit} (one batch: no interval); ` : "";
    const caption = L.unit ? `${along}red: the loss at each snapshot, ${L.unit}, with its 95% normal interval over inputs; dashed: an all-zero output on the same inputs` : `red: the snapshots analysed, ${how}; dashed: baselines of the same corpus on the same windows`;
    overall.push(plot("Loss curve, snapshots marked", lt, { xaxis: { title: "training step" }, yaxis: { title: L.unit ? "importance-weighted MSE" : "cross-entropy (nats/token)" }, ...DRIFT_LAYOUT }, caption));
  }
  nodes.push(el("div", { class: "grid" }, overall));
  nodes.push(...section("Snapshot pairs", driftPairsTable(o.pairs)));
  nodes.push(...driftExtra(s, DRIFT_KNOWN));
  return render(`drift ${id}`, "drift", nodes);
}

// Blocks this page does not draw (added by later versions of the analysis), as recorded.
function driftExtra(s, known) {
  const extra = Object.entries(s).filter(([k]) => !known.has(k));
  if (!extra.length) return [];
  return section("Other results in this analysis", extra.map(([k, val]) => el("details", { class: "card" }, el("summary", { text: k }), el("pre", { text: JSON.stringify(val, null, 1) }))));
}

function driftPairsTable(pairs) {
  return table(
    ["pair", "score", "null", "switch fraction", "null switch fraction", "median correlation", "verdict"],
    pairs.map((p) => [`${p.from_step} → ${p.to_step}`, driftInterval(driftPair(p, "score")), driftInterval(driftPair(p, "null_score")), driftInterval(p.switch_fraction), driftInterval(p.null_switch_fraction), p.median_correlation ?? null, badge(p.verdict)]),
  );
}

// A drift folder without the per-neuron files this version draws: its summary as recorded.
function driftSummaryPage(o) {
  const nodes = [el("h1", { text: `Meaning drift ${o.id}` }), el("p", { class: "muted", text: `folder ${o.folder} · summary only (${o.reason})` })];
  const s = o.summary || {};
  if (o.pairs.length && o.pairs[0].from_step !== undefined) nodes.push(...section("Snapshot pairs", driftPairsTable(o.pairs)));
  nodes.push(...driftExtra(s, new Set(["pairs"])));
  return render(`drift ${o.id}`, "drift", nodes);
}

// ---------------------------------------------------------------- drift across corpora

// One neuron's voices on one corpus as horizontal bars (shares; the SAE error its own bar).
function corpusVoiceBars(voices, name, color) {
  const shown = voices.filter((v) => v.share > 0);
  return { type: "bar", orientation: "h", y: shown.map((v) => v.name), x: shown.map((v) => v.share), name, marker: { color }, hovertemplate: `${name}: %{y} %{x:.1%}<extra></extra>` };
}

async function corpusDriftPage(o, j) {
  const id = o.id;
  const n = o.n_neurons;
  if (j === undefined) j = (o.picks.different || [0])[0] ?? 0;
  if (!Number.isInteger(j) || j < 0 || j >= n) return notFound(`drift ${id} has no neuron ${j} (it has ${n})`);
  const shard = await getJSON(`drift/${id}/${Math.floor(j / o.shard_size)}.json`);
  const v = shard ? shard[String(j)] : null;
  if (!v) return notFound(`drift ${id} has no neuron ${j}`);
  const s = o.summary || {};
  const nr = s.neurons || {};
  const nl = s.null || {};
  const vd = s.verdict || {};
  // Short names for legends and titles (the spec up to its options); the full ones above.
  const A = o.corpus_a.split("(")[0];
  const B = o.corpus_b.split("(")[0];
  const lvl = Math.round(100 * (o.level || 0.95));
  const nodes = [el("h1", { text: `Meaning drift across corpora ${id}` }), el("p", { class: "muted", text: `corpus A ${o.corpus_a} vs corpus B ${o.corpus_b} · folder ${o.folder}${s.site ? " · site " + s.site : ""}${s.model ? " · model " + s.model : ""} · ${fmt(s.d_sae)}-latent SAE, one dictionary for both corpora` })];
  const rows = s.rows || {};
  nodes.push(
    el("ul", {}, [
      el("li", {}, `fraction of neurons singing different voices ${driftInterval(nr.different_fraction)} vs null (${nl.kind || "null"}) ${driftInterval(nl.different_fraction)} `, badge(vd.different)),
      el("li", {}, `fraction whose dominant voice changes ${driftInterval(nr.dominant_change_fraction)} vs null ${driftInterval(nl.dominant_change_fraction)} `, badge(vd.dominant_change)),
      el("li", {}, `mean score (TV distance of shares) ${driftInterval(nr.mean_score)} vs null ${driftInterval(nl.mean_score)} `, badge(vd.mean_score)),
      el("li", {}, `among the features alone (SAE error left out): mean score ${driftInterval(nr.mean_feature_score)} vs null ${driftInterval(nl.mean_feature_score)} `, badge(vd.mean_feature_score)),
      el("li", { text: `the SAE's fit: FVU ${fmt(((s.sae || {}).on_a || {}).fvu)} on A, ${fmt(((s.sae || {}).on_b || {}).fvu)} on B${(s.sae || {}).trained_here ? " (trained here on both corpora)" : ""}; where it fits one corpus worse, the error voice grows there and the features-alone score is the fairer read` }),
      el("li", { text: `n = ${fmt(nr.n)} neurons with some feature share on both corpora, of ${fmt(n)}; ${fmt(rows.a)} tokens of A, ${fmt(rows.b)} of B; null over ${fmt(nl.splits)} splits` }),
    ]),
  );
  const options = [...(o.picks.different || []).map((k) => [k, "most different"]), ...(o.picks.stable || []).map((k) => [k, "most stable"])];
  nodes.push(neuronPicker(id, j, n, options));
  const links = o.links || {};
  const head = el("h2", { text: `neuron ${j}` });
  if (links.neurons) head.append(" ", link(`#/neuron/${links.neurons}/${j}`, "neuron page"));
  nodes.push(head);
  const domLink = (f) => (f === null || f === undefined ? "none" : links.features ? link(`#/feature/${links.features}/${f}`, `feature ${f}`) : `feature ${f}`);
  nodes.push(
    el("ul", {}, [
      el("li", {}, `score ${fmt(v.score)} [${fmt(v.ci[0])}, ${fmt(v.ci[1])}] (${lvl}% bootstrap over documents) vs its null's ${lvl}% point ${fmt(v.null_threshold)}: `, badge(v.active ? (v.different ? "different voices" : "within null") : "inactive")),
      el("li", {}, `dominant voice on A: `, domLink(v.dominant_a), ` · on B: `, domLink(v.dominant_b), v.dominant_a !== v.dominant_b ? " (changes)" : " (same)"),
      el("li", { text: `among the features alone (SAE error left out) the score is ${fmt(v.feature_score)}; SAE error share ${fmt(v.a.find((x) => x.name === "SAE error").share)} on A, ${fmt(v.b.find((x) => x.name === "SAE error").share)} on B` }),
    ]),
  );
  if (links.features) {
    const feats = [...new Set([...v.a, ...v.b].filter((x) => x.feature !== null).map((x) => x.feature))];
    nodes.push(el("p", {}, "feature pages: ", ...feats.flatMap((f, k) => [k ? ", " : "", featureLink(links.features, f)])));
  }
  const names = [...new Set([...v.a, ...v.b].filter((x) => x.share > 0).map((x) => x.name))].reverse();
  const plots = [
    plot(
      `Voices of neuron ${j}: ${A} vs ${B}`,
      [corpusVoiceBars(v.a, `A: ${A}`, "#1565c0"), corpusVoiceBars(v.b, `B: ${B}`, "#c62828")],
      { barmode: "group", xaxis: { title: "share of the neuron (squared chorus)", range: [0, 1] }, yaxis: { type: "category", categoryorder: "array", categoryarray: names, automargin: true }, ...DRIFT_LAYOUT },
      `shares of its top features on each corpus, the SAE error as its own voice, the rest summed as "other features"; each side sums to 1 over ${fmt(rows.a)} (A) and ${fmt(rows.b)} (B) tokens; no interval per share (the score's interval is above)`,
    ),
  ];
  const hgram = o.score_histogram;
  const x = centers(hgram.edges, false);
  plots.push(
    plot(
      "Per-neuron score vs null",
      [
        { type: "bar", x, y: hgram.counts, name: "A vs B", opacity: 0.75 },
        { type: "bar", x, y: hgram.null_counts, name: "null (half vs half, per split)", opacity: 0.55 },
        { type: "scatter", mode: "lines", x: [v.score, v.score], y: [0, Math.max(...hgram.counts, 1)], name: `neuron ${j}`, line: { color: "#c62828", dash: "dot" } },
      ],
      { barmode: "overlay", xaxis: { title: "score: TV distance of the neuron's shares" }, yaxis: { title: "neurons" }, ...DRIFT_LAYOUT },
      `n = ${fmt(hgram.n)} neurons; null: every split's scaled half-vs-half scores, counted per split (${fmt(hgram.splits)} splits); mean score ${driftInterval(nr.mean_score)} vs null ${driftInterval(nl.mean_score)}`,
    ),
  );
  nodes.push(el("div", { class: "grid" }, plots));
  nodes.push(...driftExtra(s, new Set(["across", "model", "site", "corpus_a", "corpus_b", "d", "d_sae", "rows", "documents", "neurons", "null", "verdict", "examples"])));
  return render(`drift ${id}`, "drift", nodes);
}

// The neuron picker of a drift page: the listed neurons ([number, why] pairs), or any
// neuron of 0..n-1 by number; both move to #/drift/<id>/<neuron>.
function neuronPicker(id, j, n, options) {
  const select = el("select", { id: "drift-pick", "aria-label": "pick a neuron" }, options.map(([k, why]) => el("option", { value: String(k), text: `${k} (${why})` })));
  if (options.some(([k]) => k === j)) select.value = String(j);
  else {
    select.prepend(el("option", { value: String(j), text: String(j) }));
    select.value = String(j);
  }
  select.addEventListener("change", () => (location.hash = `#/drift/${id}/${select.value}`));
  const form = el("form", { id: "drift-goto" }, "neuron ", select, " or number ", el("input", { id: "drift-neuron", type: "number", min: "0", max: String(n - 1), value: String(j) }), " ", el("button", { type: "submit", text: "Show" }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/drift/${id}/${document.getElementById("drift-neuron").value}`;
  });
  return form;
}
