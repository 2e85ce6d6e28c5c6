// replicate ui: live rows, charts and the copy button. Builds DOM with textContent only.
"use strict";

(function () {
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const refreshMs = Number(document.body.dataset.refreshMs || 0);

  function cell(tag, c) {
    const td = document.createElement(tag);
    if (c.cls) td.className = c.cls;
    if (c.check !== null && c.check !== undefined) {
      const box = document.createElement("input");
      box.type = "checkbox"; box.name = "id"; box.value = c.check;
      td.appendChild(box);
    }
    if (c.href) {
      const a = document.createElement("a");
      a.href = c.href; a.textContent = c.text;
      td.appendChild(a);
    } else {
      td.appendChild(document.createTextNode(c.text));
    }
    if (c.sub) {
      const sub = document.createElement("div");
      sub.className = "sub"; sub.textContent = c.sub;
      td.appendChild(sub);
    }
    return td;
  }

  // Rebuild a table from {columns, rows, ids}, keeping ticked checkboxes ticked.
  function fillTable(table, data) {
    const ticked = new Set(Array.from(table.querySelectorAll("input[type=checkbox]:checked"))
      .map((box) => box.value));
    const head = document.createElement("tr");
    data.columns.forEach((c) => head.appendChild(cell("th", c)));
    table.tHead.replaceChildren(head);
    const rows = data.rows.map((row, i) => {
      const tr = document.createElement("tr");
      tr.dataset.id = data.ids[i];
      row.forEach((c) => tr.appendChild(cell("td", c)));
      return tr;
    });
    table.tBodies[0].replaceChildren(...rows);
    table.querySelectorAll("input[type=checkbox]").forEach((box) => {
      box.checked = ticked.has(box.value);
    });
  }

  async function getJSON(url) {
    const response = await fetch(url, {headers: {"Accept": "application/json"}});
    return {status: response.status, body: await response.json()};
  }

  function every(ms, fn) {
    if (ms <= 0) return;
    const tick = async () => {
      try { await fn(); } catch (e) { console.warn("refresh failed", e); }
      setTimeout(tick, ms);
    };
    setTimeout(tick, ms);
  }

  function stamp() {
    const updated = document.getElementById("updated");
    if (updated) updated.textContent = "updated " + new Date().toLocaleTimeString();
  }

  // ---- the experiments list ----------------------------------------------------------
  const list = document.getElementById("experiments");
  if (list) {
    stamp();
    every(refreshMs, async () => {
      const {body} = await getJSON(list.dataset.live + window.location.search);
      if (body.table) fillTable(list, body.table);
      document.getElementById("count").textContent = body.count || "";
      document.getElementById("error").textContent = body.error || "";
      stamp();
    });
  }

  // ---- charts ------------------------------------------------------------------------
  function chartBox(container, title) {
    const box = document.createElement("div");
    box.className = "chart";
    const h = document.createElement("h3");
    h.textContent = title;
    box.appendChild(h);
    container.appendChild(box);
    return box;
  }

  function drawSeries(container, data) {
    container.replaceChildren();
    const width = Math.max(320, Math.min(560, container.clientWidth - 16));
    Object.entries(data.metrics).forEach(([name, m]) => {
      const box = chartBox(container, name);
      const series = [{label: "step"}].concat(data.runs.map((run, i) => ({
        label: run.label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
      })));
      performance.mark("chart-start:" + name);
      new uPlot({
        width: width, height: 220, series: series,
        scales: {x: {time: false}},
        legend: {show: data.runs.length > 1},
        hooks: {draw: [() => performance.measure("chart:" + name, "chart-start:" + name)]},
      }, [m.x].concat(m.y), box);
    });
    container.dataset.drawn = String(Object.keys(data.metrics).length);
  }

  async function loadSeries(container) {
    const {body} = await getJSON(container.dataset.series);
    drawSeries(container, body);
    return body;
  }

  const charts = document.getElementById("charts");
  if (charts && charts.dataset.series) loadSeries(charts);

  // ---- one experiment: its checkpoints, live -------------------------------------------
  const live = document.querySelector("div[data-live]");
  if (live) {
    const table = live.querySelector("table");
    let count = table.tBodies[0].rows.length;
    every(refreshMs, async () => {
      const {status, body} = await getJSON(live.dataset.live);
      if (status !== 200) return;
      fillTable(table, body.checkpoints);
      if (body.checkpoints.rows.length !== count) {
        count = body.checkpoints.rows.length;
        if (charts) loadSeries(charts);
      }
    });
  }

  // ---- scatter of a param against a best metric -----------------------------------------
  const form = document.getElementById("scatter-form");
  if (form) {
    const target = document.getElementById("scatter");
    const draw = async () => {
      const query = new URLSearchParams(new FormData(form));
      const {body} = await getJSON(form.dataset.url + "?" + query.toString());
      target.replaceChildren();
      const box = chartBox(target, body.metric + " against " + body.param);
      const cats = body.categories;
      new uPlot({
        width: 560, height: 260,
        mode: 1,
        scales: {x: {time: false}},
        legend: {show: false},
        axes: [{values: cats.length ? (u, ticks) => ticks.map((t) => cats[t] ?? "") : undefined},
               {}],
        series: [{label: body.param}, {
          label: body.metric, stroke: COLORS[0], paths: () => null,
          points: {show: true, size: 8, fill: COLORS[0]},
        }],
      }, [body.points.map((p) => p.x), body.points.map((p) => p.y)], box);
      target.dataset.points = String(body.points.length);
    };
    form.addEventListener("change", draw);
    draw();
  }

  // ---- copy the checkout command ----------------------------------------------------------
  document.querySelectorAll("button.copy").forEach((button) => {
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "copied";
      } catch (e) {
        window.getSelection().selectAllChildren(document.getElementById(button.dataset.copy));
        button.textContent = "press Ctrl-C";
      }
    });
  });
})();
