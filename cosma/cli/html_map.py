"""The interactive memory map: one self-contained HTML file (inline SVG, JS and CSS, no
network resource) drawing a plan as time (steps) x scratchpad address, one rectangle per
residency.

Hovering a block shows its tensor, kind, size, step interval, offset, whether it is a
reload and whether it was spilled when evicted; hovering the plot shows the operator at
that step along the time axis. The wheel zooms (time; with Shift the address axis), a drag
pans, the toolbar does both, a double click resets. The address axis is in B/KiB/MiB
(whichever suits the zoom), the capacity is a dashed line. Clicking a block highlights
every residency of its tensor; ``map.html#tensor=NAME`` opens with that tensor picked
and ``#steps=A-B`` with the time axis zoomed to steps ``[A, B)``.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from cosma.cli.show import KIND_COLORS
from cosma.core.ir import Plan, Problem
from cosma.core.units import format_bytes


def map_data(problem: Problem, plan: Plan, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the page's script draws, as plain JSON: steps, tensors and residencies (one
    row per residency: tensor index, start, end, offset, spilled, k-th residency of k_n)."""
    graph = problem.graph
    steps = []
    for name in plan.schedule:
        op = graph.operators[graph.op_index[name]] if name in graph.op_index else None
        steps.append([name, op.op_type if op else ""])
    by_tensor: dict[str, list] = defaultdict(list)
    for r in plan.residencies:
        by_tensor[r.tensor].append(r)
    names = sorted(by_tensor, key=lambda t: min(r.start for r in by_tensor[t]))
    index = {t: i for i, t in enumerate(names)}
    tensors = []
    for t in names:
        tensor = graph.tensors[t]
        tensors.append(
            {
                "name": t,
                "kind": tensor.kind.value,
                "size": tensor.size,
                "footprint": problem.footprint(t),
                "shape": list(tensor.shape),
            }
        )
    rows = []
    for t in names:
        rs = sorted(by_tensor[t], key=lambda r: r.start)
        for k, r in enumerate(rs):
            rows.append([index[t], r.start, r.end, r.offset, bool(r.spilled), k, len(rs)])
    return {
        "info": info or {},
        "capacity": problem.capacity,
        "alignment": problem.alignment,
        "steps": steps,
        "tensors": tensors,
        "residencies": rows,
        "colors": {k.value: c for k, c in KIND_COLORS.items()},
    }


def _json_for_script(data: Any) -> str:
    """JSON that cannot end its ``<script>`` element early."""
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_html_map(problem: Problem, plan: Plan, *, title: str = "", info: dict[str, Any] | None = None) -> str:
    """The page as a string."""
    title = title or f"{problem.graph.name}: capacity {format_bytes(problem.capacity)}"
    info = dict(info or {})
    facts = [f"capacity {format_bytes(problem.capacity)} ({problem.capacity:,} B)", f"alignment {problem.alignment} B"]
    facts.append("weights counted" if problem.weights_counted else "activations only")
    cost = info.get("cost") or {}
    labels = (("spill_bytes", "spill"), ("reload_bytes", "reload"), ("non_compulsory_bytes", "non-compulsory"))
    for key, label in labels:
        if cost.get(key) is not None:
            facts.append(f"{label} {format_bytes(cost[key])}")
    if cost.get("latency_cycles") is not None:
        facts.append(f"latency {cost['latency_cycles']:,} cycles")
    facts.append(f"{len(plan.schedule)} steps, {len(plan.residencies)} residencies")
    legend = "".join(
        f'<span class="key"><i style="background:{c}"></i>{html.escape(k.value)}</span>' for k, c in KIND_COLORS.items()
    )
    legend += '<span class="key"><b class="tri spill">&#9660;</b>spilled when evicted</span>'
    legend += '<span class="key"><b class="tri reload">&#9650;</b>reload</span>'
    legend += '<span class="key"><b class="capline"></b>capacity</span>'
    return (
        _PAGE.replace("%TITLE%", html.escape(title))
        .replace("%FACTS%", html.escape(" · ".join(facts)))
        .replace("%LEGEND%", legend)
        .replace("%DATA%", _json_for_script(map_data(problem, plan, info)))
        .replace("%STYLE%", _STYLE)
        .replace("%SCRIPT%", _SCRIPT)
    )


def write_html_map(problem_or_plan_data: Any, plan: Plan, path: str | Path, *, title: str = "") -> None:
    """Write the interactive map of ``plan`` to ``path`` (atomically).

    ``problem_or_plan_data``: a ``Problem``, or a ``PlanView`` (a plan file read back by
    ``cosma.cli.planview.load_plan_view``), whose title, solver and cost go in the header.
    """
    from cosma.cli.planview import PlanView
    from cosma.core.paths import write_text_atomically

    info: dict[str, Any] = {}
    if isinstance(problem_or_plan_data, PlanView):
        view = problem_or_plan_data
        problem = view.problem
        title = title or view.title
        info = {
            "model": view.planfile.model,
            "solver": view.planfile.solver.get("name"),
            "status": view.planfile.solver.get("status"),
            "cost": view.planfile.cost,
        }
    else:
        problem = problem_or_plan_data
    write_text_atomically(path, render_html_map(problem, plan, title=title, info=info))


_STYLE = """
:root { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 13px; color: #222; }
body { margin: 0; padding: 10px 14px; background: #fafafa; }
h1 { font-size: 16px; margin: 0 0 4px; }
#facts { color: #555; margin-bottom: 6px; }
#toolbar { display: flex; flex-wrap: wrap; gap: 4px; align-items: center; margin-bottom: 6px; }
#toolbar button { font: inherit; padding: 2px 8px; border: 1px solid #bbb; background: #fff; border-radius: 3px;
  cursor: pointer; }
#toolbar button:hover { background: #eef; }
#toolbar .hint { color: #777; margin-left: 10px; }
#legend { display: flex; flex-wrap: wrap; gap: 14px; margin: 4px 0 6px; }
#legend .key { display: inline-flex; align-items: center; gap: 5px; }
#legend i { display: inline-block; width: 14px; height: 10px; border: 1px solid #333; opacity: 0.85; }
#legend .tri { font-size: 11px; } .spill { color: #d62728; } .reload { color: #2ca02c; }
#legend .capline { display: inline-block; width: 20px; border-top: 2px dashed #000; }
#wrap { position: relative; background: #fff; border: 1px solid #ddd; }
svg { display: block; user-select: none; }
svg.dragging { cursor: grabbing; }
.res { stroke: #000; stroke-width: 0.4; fill-opacity: 0.85; }
.res:hover, .res.hl { stroke: #000; stroke-width: 2; fill-opacity: 1; }
.res.dim { fill-opacity: 0.25; }
.axis text { font-size: 11px; fill: #333; }
.axis line, .axis path { stroke: #888; }
.grid line { stroke: #eee; }
.axis-title { font-size: 12px; fill: #333; }
#capacity { stroke: #000; stroke-width: 1.2; stroke-dasharray: 6 4; }
#cap-label { font-size: 11px; fill: #000; }
#cursor { stroke: #1f77b4; stroke-width: 1; stroke-dasharray: 2 2; pointer-events: none; }
#step-label { font-size: 11px; fill: #1f77b4; font-weight: 600; }
#step-label-bg { fill: #fff; stroke: #1f77b4; stroke-width: 0.6; }
#tooltip { position: fixed; z-index: 10; pointer-events: none; background: rgba(255,255,255,0.97);
  border: 1px solid #888; border-radius: 4px; padding: 6px 8px; box-shadow: 0 2px 6px rgba(0,0,0,0.2);
  max-width: 460px; font-size: 12px; line-height: 1.45; }
#tooltip[hidden] { display: none; }
#tooltip .name { font-weight: 600; word-break: break-all; }
#tooltip td { padding: 0 6px 0 0; vertical-align: top; }
#tooltip td:first-child { color: #666; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%TITLE%</title>
<style>%STYLE%</style>
</head>
<body>
<h1>%TITLE%</h1>
<div id="facts">%FACTS%</div>
<div id="toolbar">
 <button id="zoom-in" title="zoom in (time and address)">+</button>
 <button id="zoom-out" title="zoom out (time and address)">&minus;</button>
 <button id="time-in" title="zoom in along time">time +</button>
 <button id="time-out" title="zoom out along time">time &minus;</button>
 <button id="addr-in" title="zoom in along address">address +</button>
 <button id="addr-out" title="zoom out along address">address &minus;</button>
 <button id="pan-left" title="pan earlier">&larr;</button>
 <button id="pan-right" title="pan later">&rarr;</button>
 <button id="pan-up" title="pan to higher addresses">&uarr;</button>
 <button id="pan-down" title="pan to lower addresses">&darr;</button>
 <button id="reset" title="show the whole plan">reset</button>
 <span class="hint">wheel: zoom time (Shift: address) &middot; drag: pan &middot; double-click: reset
  &middot; click a block: highlight its tensor</span>
</div>
<div id="legend">%LEGEND%</div>
<div id="wrap"><svg id="map" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="memory map"></svg></div>
<div id="tooltip" role="tooltip" hidden></div>
<script type="application/json" id="plan-data">%DATA%</script>
<script>%SCRIPT%</script>
</body>
</html>
"""

_SCRIPT = r"""
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("plan-data").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.getElementById("map");
  const tip = document.getElementById("tooltip");
  const M = { left: 78, right: 18, top: 14, bottom: 52 };
  const nSteps = Math.max(1, D.steps.length);
  const addrMax = Math.max(D.capacity * 1.04, 1);
  const FULL = { t0: 0, t1: nSteps, a0: 0, a1: addrMax };
  let view = Object.assign({}, FULL);
  let W = 800, H = 400;  // plot area in px
  let picked = null;      // tensor index highlighted by a click or #tensor=

  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function esc(s) {
    const map = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
    return String(s).replace(/[&<>"']/g, c => map[c]);
  }
  function fmtBytes(n) {
    const units = [["GiB", 1073741824], ["MiB", 1048576], ["KiB", 1024]];
    for (const [u, s] of units) if (Math.abs(n) >= s) return (n / s).toFixed(2) + " " + u;
    return Math.round(n) + " B";
  }
  function niceStep(raw) {
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }
  function addrUnit(span) {
    if (span >= 2 * 1048576) return ["MiB", 1048576];
    if (span >= 2 * 1024) return ["KiB", 1024];
    return ["B", 1];
  }

  // ------------------------------------------------------------------ the static scene
  const defs = el("defs", {}, svg);
  const clip = el("clipPath", { id: "plot-clip" }, defs);
  const clipRect = el("rect", {}, clip);
  const gridG = el("g", { class: "grid" }, svg);
  const plotG = el("g", { "clip-path": "url(#plot-clip)" }, svg);
  const bg = el("rect", { fill: "transparent", id: "plot-bg" }, plotG);
  const blocksG = el("g", { id: "blocks" }, plotG);
  const marksG = el("g", { id: "marks" }, plotG);
  const capLine = el("line", { id: "capacity" }, plotG);
  const capLabel = el("text", { id: "cap-label", "text-anchor": "end" }, plotG);
  capLabel.textContent = "capacity " + fmtBytes(D.capacity);
  const cursor = el("line", { id: "cursor", visibility: "hidden" }, plotG);
  const xAxis = el("g", { class: "axis", id: "x-axis" }, svg);
  const yAxis = el("g", { class: "axis", id: "y-axis" }, svg);
  const xTitle = el("text", { class: "axis-title", "text-anchor": "middle" }, svg);
  xTitle.textContent = "step (operator)";
  const yTitle = el("text", { class: "axis-title", "text-anchor": "middle", id: "y-title" }, svg);
  const stepBg = el("rect", { id: "step-label-bg", visibility: "hidden", rx: 3 }, svg);
  const stepLabel = el("text", { id: "step-label", "text-anchor": "middle", visibility: "hidden" }, svg);

  const rects = [], spills = [], reloads = [];
  D.residencies.forEach((r, i) => {
    const t = D.tensors[r[0]];
    const rect = el("rect", {
      class: "res", fill: D.colors[t.kind] || "#999",
      "data-i": i, "data-tensor": t.name, "data-kind": t.kind, "data-start": r[1], "data-end": r[2],
      "data-offset": r[3], "data-size": t.size, "data-spilled": r[4] ? 1 : 0, "data-reload": r[5] > 0 ? 1 : 0,
    }, blocksG);
    rects.push(rect);
    const mark = (cls, fill) => el("path", { class: cls, fill: fill, "pointer-events": "none" }, marksG);
    if (r[4]) spills.push([mark("spill-mark", "#d62728"), i]);
    if (r[5] > 0) reloads.push([mark("reload-mark", "#2ca02c"), i]);
  });

  // ------------------------------------------------------------------ geometry
  const X = t => M.left + (t - view.t0) * W / (view.t1 - view.t0);
  const Y = a => M.top + H - (a - view.a0) * H / (view.a1 - view.a0);
  const T = px => view.t0 + (px - M.left) * (view.t1 - view.t0) / W;
  const A = py => view.a0 + (M.top + H - py) * (view.a1 - view.a0) / H;

  function layout() {
    const width = Math.max(480, (svg.parentNode.clientWidth || window.innerWidth || 900) - 2);
    const height = Math.max(320, Math.min(760, (window.innerHeight || 700) - 190));
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    W = width - M.left - M.right;
    H = height - M.top - M.bottom;
    for (const [k, v] of Object.entries({ x: M.left, y: M.top, width: W, height: H })) {
      clipRect.setAttribute(k, v);
      bg.setAttribute(k, v);
    }
  }

  function clampView() {
    const minT = Math.min(2, nSteps), minA = Math.max(16, D.alignment);
    let tw = Math.min(Math.max(view.t1 - view.t0, minT), nSteps);
    let aw = Math.min(Math.max(view.a1 - view.a0, minA), addrMax);
    let t0 = Math.min(Math.max(view.t0, 0), nSteps - tw);
    let a0 = Math.min(Math.max(view.a0, 0), addrMax - aw);
    view = { t0: t0, t1: t0 + tw, a0: a0, a1: a0 + aw };
  }

  function drawAxes() {
    xAxis.textContent = ""; yAxis.textContent = ""; gridG.textContent = "";
    const x0 = M.left, y0 = M.top + H;
    el("line", { x1: x0, y1: y0, x2: x0 + W, y2: y0 }, xAxis);
    el("line", { x1: x0, y1: M.top, x2: x0, y2: y0 }, yAxis);
    // time: integer steps, a tick at the middle of each labelled step
    const ts = Math.max(1, niceStep((view.t1 - view.t0) / Math.max(2, W / 70)));
    for (let t = Math.ceil(view.t0 / ts) * ts; t <= view.t1; t += ts) {
      const x = X(t);
      el("line", { x1: x, y1: y0, x2: x, y2: y0 + 5 }, xAxis);
      el("line", { x1: x, y1: M.top, x2: x, y2: y0 }, gridG);
      const lbl = el("text", { x: x, y: y0 + 17, "text-anchor": "middle" }, xAxis);
      lbl.textContent = String(t);
    }
    // address: B / KiB / MiB, by the span on screen
    const [unit, scale] = addrUnit(view.a1 - view.a0);
    const as = niceStep((view.a1 - view.a0) / scale / Math.max(2, H / 45)) * scale;
    for (let a = Math.ceil(view.a0 / as) * as; a <= view.a1 + 1e-9; a += as) {
      const y = Y(a);
      el("line", { x1: x0 - 5, y1: y, x2: x0, y2: y }, yAxis);
      el("line", { x1: x0, y1: y, x2: x0 + W, y2: y }, gridG);
      const lbl = el("text", { x: x0 - 8, y: y + 4, "text-anchor": "end", class: "y-tick" }, yAxis);
      lbl.textContent = String(+(a / scale).toFixed(3));
    }
    xTitle.setAttribute("x", M.left + W / 2);
    xTitle.setAttribute("y", y0 + 44);
    yTitle.setAttribute("transform", "translate(16," + (M.top + H / 2) + ") rotate(-90)");
    yTitle.textContent = "address (" + unit + ")";
    yTitle.setAttribute("data-unit", unit);
  }

  function render() {
    clampView();
    drawAxes();
    D.residencies.forEach((r, i) => {
      const t = D.tensors[r[0]];
      const x = X(r[1]), y = Y(r[3] + t.footprint);
      const rect = rects[i];
      rect.setAttribute("x", x);
      rect.setAttribute("y", y);
      rect.setAttribute("width", Math.max(0.5, X(r[2]) - x));
      rect.setAttribute("height", Math.max(0.5, Y(r[3]) - y));
      rect.classList.toggle("hl", picked !== null && r[0] === picked);
      rect.classList.toggle("dim", picked !== null && r[0] !== picked);
    });
    const tri = (x, y, down) => down
      ? "M" + (x - 4) + "," + (y - 4) + "h8l-4,7z"
      : "M" + (x - 4) + "," + (y + 4) + "h8l-4,-7z";
    for (const [m, i] of spills) {
      const r = D.residencies[i], f = D.tensors[r[0]].footprint;
      m.setAttribute("d", tri(X(r[2]), Y(r[3] + f / 2), true));
    }
    for (const [m, i] of reloads) {
      const r = D.residencies[i], f = D.tensors[r[0]].footprint;
      m.setAttribute("d", tri(X(r[1]), Y(r[3] + f / 2), false));
    }
    const cy = Y(D.capacity);
    for (const [k, v] of Object.entries({ x1: M.left, x2: M.left + W, y1: cy, y2: cy })) capLine.setAttribute(k, v);
    capLabel.setAttribute("x", M.left + W - 4);
    capLabel.setAttribute("y", cy - 4);
  }

  // ------------------------------------------------------------------ hover: blocks and steps
  function opAt(step) {
    const s = D.steps[step];
    return s ? s[0] + (s[1] ? " (" + s[1] + ")" : "") : "";
  }
  function tooltipHtml(i) {
    const r = D.residencies[i], t = D.tensors[r[0]];
    const last = r[2] - 1;
    const ops = r[2] - r[1] === 1 ? esc(opAt(r[1])) : esc(opAt(r[1])) + " &hellip; " + esc(opAt(last));
    const reload = r[5] > 0 ? "yes (residency " + (r[5] + 1) + " of " + r[6] + ", from DRAM)"
      : "no (first residency" + (r[6] > 1 ? " of " + r[6] : "") + ")";
    const evicted = r[4] ? "yes (written to DRAM when evicted at step " + r[2] + ")"
      : (r[5] + 1 < r[6] ? "no (a DRAM copy already exists)" : "no");
    const rows = [
      ["kind", esc(t.kind)],
      ["size", fmtBytes(t.size) + " (" + t.size.toLocaleString("en-US") + " B)"
        + (t.footprint !== t.size ? ", footprint " + t.footprint.toLocaleString("en-US") + " B" : "")],
      ["shape", t.shape.length ? esc(t.shape.join("\u00d7")) : "scalar"],
      ["steps", "[" + r[1] + ", " + r[2] + ") &mdash; " + (r[2] - r[1]) + " step" + (r[2] - r[1] === 1 ? "" : "s")],
      ["ops", ops],
      ["offset", r[3].toLocaleString("en-US") + " B (0x" + r[3].toString(16) + ", " + fmtBytes(r[3]) + ")"
        + " &ndash; end " + fmtBytes(r[3] + t.footprint)],
      ["reload", reload],
      ["spilled", evicted],
    ];
    return '<div class="name">' + esc(t.name) + "</div><table>"
      + rows.map(([k, v]) => '<tr><td>' + k + '</td><td class="v-' + k + '">' + v + "</td></tr>").join("")
      + "</table>";
  }
  function showTip(i, cx, cy) {
    tip.innerHTML = tooltipHtml(i);
    tip.setAttribute("data-i", i);
    tip.hidden = false;
    const w = tip.offsetWidth, h = tip.offsetHeight;
    const vw = window.innerWidth || 1200, vh = window.innerHeight || 800;
    tip.style.left = Math.max(4, cx + 14 + w > vw ? cx - w - 14 : cx + 14) + "px";
    tip.style.top = Math.max(4, cy + 14 + h > vh ? cy - h - 14 : cy + 14) + "px";
  }
  function hideTip() { tip.hidden = true; }

  function showStep(px) {
    const t = T(px);
    const step = Math.floor(t);
    if (px < M.left || px > M.left + W || step < 0 || step >= nSteps) { hideStep(); return; }
    const x = X(step + 0.5);
    for (const [k, v] of Object.entries({ x1: x, x2: x, y1: M.top, y2: M.top + H })) cursor.setAttribute(k, v);
    cursor.setAttribute("visibility", "visible");
    stepLabel.textContent = "step " + step + ": " + opAt(step);
    stepLabel.setAttribute("y", M.top + H + 32);
    stepLabel.setAttribute("visibility", "visible");
    const bw = stepLabel.getComputedTextLength ? stepLabel.getComputedTextLength() + 10 : 200;
    const lx = Math.min(Math.max(x, M.left + bw / 2), M.left + W - bw / 2 + M.right);
    stepLabel.setAttribute("x", lx);
    const box = { x: lx - bw / 2, y: M.top + H + 20, width: bw, height: 16 };
    for (const [k, v] of Object.entries(box)) stepBg.setAttribute(k, v);
    stepBg.setAttribute("visibility", "visible");
  }
  function hideStep() {
    for (const e of [cursor, stepLabel, stepBg]) e.setAttribute("visibility", "hidden");
  }

  function svgPoint(ev) {
    const b = svg.getBoundingClientRect();
    return [ev.clientX - b.left, ev.clientY - b.top];
  }

  // ------------------------------------------------------------------ zoom and pan
  function zoom(ft, fa, px, py) {
    const tc = px === undefined ? (view.t0 + view.t1) / 2 : T(px);
    const ac = py === undefined ? (view.a0 + view.a1) / 2 : A(py);
    view = { t0: tc - (tc - view.t0) * ft, t1: tc + (view.t1 - tc) * ft,
             a0: ac - (ac - view.a0) * fa, a1: ac + (view.a1 - ac) * fa };
    render();
  }
  function pan(dt, da) {
    view = { t0: view.t0 + dt, t1: view.t1 + dt, a0: view.a0 + da, a1: view.a1 + da };
    render();
  }
  function reset() { view = Object.assign({}, FULL); render(); }

  svg.addEventListener("wheel", ev => {
    ev.preventDefault();
    const f = Math.exp(Math.max(-1, Math.min(1, ev.deltaY * 0.002)));
    const [px, py] = svgPoint(ev);
    if (ev.shiftKey) zoom(1, f, px, py); else zoom(f, 1, px, py);
  }, { passive: false });

  let drag = null;
  svg.addEventListener("mousedown", ev => {
    if (ev.button !== 0) return;
    drag = { x: ev.clientX, y: ev.clientY, v: Object.assign({}, view), moved: false };
    svg.classList.add("dragging");
  });
  window.addEventListener("mousemove", ev => {
    if (!drag) return;
    const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    const v = drag.v;
    const dt = -dx * (v.t1 - v.t0) / W, da = dy * (v.a1 - v.a0) / H;
    view = { t0: v.t0 + dt, t1: v.t1 + dt, a0: v.a0 + da, a1: v.a1 + da };
    hideTip();
    render();
  });
  window.addEventListener("mouseup", () => {
    if (drag) setTimeout(() => { drag = null; }, 0);
    svg.classList.remove("dragging");
  });
  svg.addEventListener("dblclick", reset);

  svg.addEventListener("mousemove", ev => {
    const [px] = svgPoint(ev);
    showStep(px);
    const i = ev.target.getAttribute && ev.target.getAttribute("data-i");
    if (i !== null && i !== undefined && !(drag && drag.moved)) showTip(+i, ev.clientX, ev.clientY);
    else hideTip();
  });
  svg.addEventListener("mouseleave", () => { hideTip(); hideStep(); });
  svg.addEventListener("click", ev => {
    if (drag && drag.moved) return;
    const i = ev.target.getAttribute("data-i");
    const ti = i === null ? null : D.residencies[+i][0];
    picked = ti === picked ? null : ti;
    history.replaceState(null, "", picked === null ? "#" : "#tensor=" + encodeURIComponent(D.tensors[picked].name));
    render();
  });

  const buttons = {
    "zoom-in": () => zoom(0.5, 0.5), "zoom-out": () => zoom(2, 2),
    "time-in": () => zoom(0.5, 1), "time-out": () => zoom(2, 1),
    "addr-in": () => zoom(1, 0.5), "addr-out": () => zoom(1, 2),
    "pan-left": () => pan(-(view.t1 - view.t0) / 4, 0), "pan-right": () => pan((view.t1 - view.t0) / 4, 0),
    "pan-up": () => pan(0, (view.a1 - view.a0) / 4), "pan-down": () => pan(0, -(view.a1 - view.a0) / 4),
    "reset": reset,
  };
  for (const id in buttons) document.getElementById(id).addEventListener("click", buttons[id]);
  window.addEventListener("resize", () => { layout(); render(); });

  // ------------------------------------------------------------------ deep links: #tensor=NAME, #steps=A-B
  function applyHash() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const steps = /^(\d+)-(\d+)$/.exec(params.get("steps") || "");
    if (steps && +steps[2] > +steps[1]) { view.t0 = +steps[1]; view.t1 = +steps[2]; }
    const name = params.get("tensor");
    picked = null;
    if (name !== null) {
      const ti = D.tensors.findIndex(t => t.name === name);
      if (ti >= 0) picked = ti;
    }
    render();
    if (picked !== null) {
      const i = D.residencies.findIndex(r => r[0] === picked);
      const b = rects[i].getBoundingClientRect();
      showTip(i, b.left + b.width / 2, b.top + b.height / 2);
    }
  }
  window.addEventListener("hashchange", applyHash);
  layout();
  applyHash();
  document.body.setAttribute("data-rendered", rects.length);
})();
"""


__all__ = ["map_data", "render_html_map", "write_html_map"]
