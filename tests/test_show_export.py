"""`cosma show` (PNG and the interactive HTML map, checked in a real headless browser) and
`cosma export` (MiniMalloc CSV read back and re-checked, C header compiled)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cosma.cli.export import c_identifier, residency_rows, to_c_header, to_csv
from cosma.cli.html_map import render_html_map, write_html_map
from cosma.cli.main import EXIT_USAGE, main
from cosma.cli.planview import load_plan_view, write_map
from cosma.core.errors import UsageError
from cosma.core.hardware import get_hardware
from cosma.core.ir import Graph, Operator, Plan, Problem, Residency, Tensor, TensorKind
from cosma.core.paths import write_atomically
from cosma.packing.problem import check_packing, read_csv, read_solution

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "zoo" / "resnet18.onnx"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def plan_path(tmp_path_factory) -> Path:
    """ResNet-18 at M_R (8-bit) by best-greedy: it spills and reloads, so every mark shows."""
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    argv = ["optimize", MODEL, "--scratchpad", "M_R", "--dtype-bytes", "1", "--solver", "best-greedy", "-o", path, "-q"]
    assert main([str(a) for a in argv]) == 0
    return path


@pytest.fixture(scope="module")
def plan_data(plan_path) -> dict:
    data = json.loads(plan_path.read_text())
    assert any(r["spilled"] for r in data["residencies"]), "the fixture plan should spill"
    return data


# ---------------------------------------------------------------------------- the HTML map


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def dump_dom(url: str, tmp_path: Path) -> str:
    """The DOM a real headless browser holds after loading ``url`` and running its scripts."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium binary found (apt-get install chromium): the map's script cannot be run")
    cmd = [
        browser,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--window-size=1400,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "<html" in done.stdout, done.stderr[-2000:]
    return done.stdout


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside each element with an id."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text_by_id: dict[str, str] = {}
        self._open: list[str | None] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag not in ("meta", "br", "input", "link", "img"):
            self._open.append(a.get("id"))
            if a.get("id"):
                self.text_by_id.setdefault(a["id"], "")

    def handle_endtag(self, tag):
        if self._open and tag not in ("meta", "br", "input", "link", "img"):
            self._open.pop()

    def handle_data(self, data):
        for open_id in self._open:
            if open_id:
                self.text_by_id[open_id] += data

    def find(self, tag: str, **attrs) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    def by_id(self, id_: str) -> dict[str, str]:
        (found,) = [a for _, a in self.tags if a.get("id") == id_]
        return found


def test_html_map_is_self_contained(plan_path, tmp_path, capsys):
    out = tmp_path / "map.html"
    code, stdout, err = run(capsys, "show", plan_path, "-o", out)
    assert code == 0, err
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "<link" not in text and not re.search(r"<script[^>]*\bsrc=", text) and "@import" not in text
    # No network resource: the only URL is the SVG namespace (an identifier, never fetched).
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg"}
    # The data is JSON that cannot close its script element early.
    data = re.search(r'<script type="application/json" id="plan-data">(.*?)</script>', text, re.S).group(1)
    assert "<" not in data
    assert len(json.loads(data)["residencies"]) == len(json.loads(plan_path.read_text())["residencies"])


def test_html_map_in_a_browser(plan_path, plan_data, tmp_path):
    """After the page's script ran: one rect per residency with its data, the tooltip of the
    tensor named in the URL filled in, the capacity line, an address axis in KiB/MiB."""
    view = load_plan_view(plan_path)
    out = tmp_path / "map.html"
    write_map(view, view.plan, out)
    spilled = next(r for r in plan_data["residencies"] if r["spilled"])
    dom = Elements(dump_dom(f"{out.as_uri()}#tensor={spilled['tensor']}", tmp_path))

    rects = dom.find("rect", **{"class": "res"}) + dom.find("rect", **{"class": "res hl"})
    rects += dom.find("rect", **{"class": "res dim"})
    residencies = plan_data["residencies"]
    assert len(rects) == len(residencies) and dom.by_id("blocks") is not None
    assert dom.find("body")[0]["data-rendered"] == str(len(residencies))
    drawn = sorted((a["data-tensor"], int(a["data-start"]), int(a["data-end"]), int(a["data-offset"])) for a in rects)
    assert drawn == sorted((r["tensor"], r["start"], r["end"], r["offset"]) for r in residencies)
    assert sum(a["data-spilled"] == "1" for a in rects) == sum(r["spilled"] for r in residencies)
    first = {}
    for r in sorted(residencies, key=lambda r: r["start"]):
        first.setdefault(r["tensor"], r["start"])
    assert sum(a["data-reload"] == "1" for a in rects) == sum(r["start"] != first[r["tensor"]] for r in residencies)
    # Laid out: positive sizes in px, inside the plot.
    assert all(float(a["width"]) > 0 and float(a["height"]) > 0 for a in rects)
    assert len(dom.find("path", **{"class": "spill-mark"})) == sum(r["spilled"] for r in residencies)

    # The tensor named by #tensor= is highlighted and its tooltip shown, filled in.
    assert all(a["data-tensor"] == spilled["tensor"] for a in dom.find("rect", **{"class": "res hl"}))
    tip = dom.by_id("tooltip")
    assert "hidden" not in tip
    tip_text = dom.text_by_id["tooltip"]
    size = plan_data["tensors"][spilled["tensor"]]["size"]
    assert spilled["tensor"] in tip_text and plan_data["tensors"][spilled["tensor"]]["kind"] in tip_text
    assert f"{size:,} B" in tip_text and f"[{spilled['start']}, {spilled['end']})" in tip_text
    assert f"{spilled['offset']:,} B" in tip_text and "written to DRAM when evicted" in tip_text

    # Axes: capacity line, address axis in MiB (capacity is ~2.3 MiB), step ticks.
    assert dom.by_id("capacity")["x2"] and "capacity" in dom.text_by_id["cap-label"]
    assert dom.by_id("y-title")["data-unit"] == "MiB"
    assert len(dom.find("text", **{"class": "y-tick"})) >= 4


PROBE = """
<script>
(function () {
  const svg = document.getElementById("map"), out = {};
  const rect = document.querySelector("rect.res[data-spilled='1']");
  const b = rect.getBoundingClientRect();
  rect.dispatchEvent(new MouseEvent("mousemove", {bubbles: true, clientX: b.left + b.width / 2,
                                                   clientY: b.top + b.height / 2}));
  out.tipHidden = document.getElementById("tooltip").hidden;
  out.tipI = document.getElementById("tooltip").getAttribute("data-i");
  out.rectI = rect.getAttribute("data-i");
  out.tipText = document.getElementById("tooltip").textContent;
  const bg = document.getElementById("plot-bg").getBoundingClientRect();
  const ticks = () => Array.from(document.querySelectorAll("#x-axis text")).map(t => +t.textContent);
  out.ticksBefore = ticks();
  // hover the plot one third of the way along the time axis: the operator at that step
  const px = bg.left + bg.width / 3 + 1, py = bg.top + 5;
  out.plotWidth = bg.width;
  document.getElementById("plot-bg").dispatchEvent(new MouseEvent("mousemove", {bubbles: true, clientX: px,
                                                                                 clientY: py}));
  out.stepLabel = document.getElementById("step-label").textContent;
  out.cursor = document.getElementById("cursor").getAttribute("visibility");
  svg.dispatchEvent(new WheelEvent("wheel", {bubbles: true, cancelable: true, deltaY: -400,
                                             clientX: px, clientY: py}));
  out.ticksWheel = ticks();
  out.unitBefore = document.getElementById("y-title").getAttribute("data-unit");
  for (let k = 0; k < 4; k++) document.getElementById("addr-in").click();
  out.unitZoomed = document.getElementById("y-title").getAttribute("data-unit");
  document.getElementById("reset").click();
  out.ticksReset = ticks();
  out.unitReset = document.getElementById("y-title").getAttribute("data-unit");
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""


def test_html_map_hover_zoom_pan_in_a_browser(plan_path, plan_data, tmp_path):
    """The page's own event handlers, driven by synthetic mouse and wheel events."""
    view = load_plan_view(plan_path)
    page = render_html_map(view.problem, view.plan, title="probe").replace("</body>", PROBE + "</body>")
    out = tmp_path / "probe.html"
    out.write_text(page)
    probe = json.loads(Elements(dump_dom(out.as_uri(), tmp_path)).text_by_id["probe"])

    assert probe["tipHidden"] is False and probe["tipI"] == probe["rectI"]
    assert "spilled" in probe["tipText"] and "written to DRAM" in probe["tipText"]
    steps = [op["name"] for op in plan_data["ops"]]
    label = re.fullmatch(r"step (\d+): (\S+) \((\w+)\)", probe["stepLabel"])
    assert label and probe["cursor"] == "visible"
    step = int(label.group(1))
    assert step == int(len(steps) * (probe["plotWidth"] / 3 + 1) / probe["plotWidth"])
    assert label.group(2) == steps[step] and label.group(3) == plan_data["ops"][step]["op_type"]
    # the wheel zoomed the time axis in around the cursor; reset restores the full plan
    before, wheel = probe["ticksBefore"], probe["ticksWheel"]
    assert wheel[-1] - wheel[0] < before[-1] - before[0] and wheel[0] <= step <= wheel[-1]
    assert probe["ticksReset"] == before
    assert probe["unitBefore"] == "MiB" and probe["unitZoomed"] == "KiB" and probe["unitReset"] == "MiB"


def test_html_map_screenshot(plan_path, tmp_path):
    """The page paints (non-blank) in a real browser: kept in tmp for a person to look at."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium binary found (apt-get install chromium)")
    view = load_plan_view(plan_path)
    page, shot = tmp_path / "map.html", tmp_path / "map.png"
    write_html_map(view, view.plan, page)
    cmd = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--window-size=1400,900"]
    cmd += [f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", page.as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120)
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (900, 1400)
    # blocks in the activation colour (#dd8452 at fill-opacity 0.85 over white) cover a fair share
    want = [(0.85 * c + 0.15 * 255) / 255 for c in (0xDD, 0x84, 0x52)]
    close = (abs(pixels[..., 0] - want[0]) < 0.03) & (abs(pixels[..., 1] - want[1]) < 0.03)
    close &= abs(pixels[..., 2] - want[2]) < 0.03
    assert close.mean() > 0.05


# ---------------------------------------------------------------------------- the PNG map


def test_png_map_units_and_legend_outside(plan_path, tmp_path, capsys):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cosma.cli.show import draw_memory_map

    view = load_plan_view(plan_path)
    fig, ax = plt.subplots(figsize=(8, 4))
    draw_memory_map(view.problem, view.plan, ax, "t")
    fig.tight_layout()
    fig.canvas.draw()
    assert ax.get_ylabel() == "address (MiB)"
    bottom, top = ax.get_ylim()
    shown = [t for t in ax.get_yticklabels() if bottom <= t.get_position()[1] <= top]
    labels = [t.get_text() for t in shown]
    assert labels and all(re.fullmatch(r"\d+(\.\d+)?", s) for s in labels) and max(map(float, labels)) < 3
    legend, axes = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.y1 <= axes.y0  # below the axes: it covers no block
    plt.close(fig)

    for name in ("map.png", "map.svg"):
        code, out, err = run(capsys, "show", plan_path, "-o", tmp_path / name)
        assert code == 0 and (tmp_path / name).stat().st_size > 1000, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.png", "map.svg"]  # no temp files left
    code, out, err = run(capsys, "show", plan_path, "-o", tmp_path / "map.txt")
    assert code == EXIT_USAGE and "unknown map format" in err


# ---------------------------------------------------------------------------- export


def test_csv_export_round_trips(plan_path, plan_data, tmp_path, capsys):
    out = tmp_path / "plan.csv"
    code, stdout, err = run(capsys, "export", plan_path, "--format", "csv", "-o", out)
    assert code == 0, err
    problem = read_csv(out, capacity=plan_data["capacity"], alignment=plan_data["alignment"])
    offsets = read_solution(out)
    residencies = plan_data["residencies"]
    assert len(problem.buffers) == len(offsets) == len(residencies)  # ids unique
    assert check_packing(problem, offsets) == []
    alignment = plan_data["alignment"]
    rows = sorted((b.lower, b.upper, offsets[b.id], b.id.split("#")[0]) for b in problem.buffers)
    assert rows == sorted((r["start"], r["end"], r["offset"], r["tensor"]) for r in residencies)
    for b in problem.buffers:
        size = plan_data["tensors"][b.id.split("#")[0]]["size"]
        assert b.size == -(-size // alignment) * alignment  # the footprint the residency reserves
    # a reloaded tensor has its first residency under its name and the k-th reload as name#k
    reloaded = {b.id.split("#")[0] for b in problem.buffers if "#" in b.id}
    assert reloaded and all(t in offsets and f"{t}#1" in offsets for t in reloaded)

    # default name: beside the plan, with the capacity in it (MiniMalloc's convention)
    code, stdout, err = run(capsys, "export", plan_path)
    default = plan_path.with_name(f"plan.{plan_data['capacity']}.csv")
    assert code == 0 and default.read_text() == out.read_text()
    assert len(read_csv(default).buffers) == len(residencies)


def test_csv_export_ids_stay_unique():
    graph = Graph(
        "g",
        {"x": Tensor("x", 10, TensorKind.INPUT), "x#1": Tensor("x#1", 8, TensorKind.ACTIVATION)},
        (Operator("a", "Relu", ("x",), ("x#1",)), Operator("b", "Add", ("x", "x#1"), ())),
    )
    problem = Problem(graph, 64, get_hardware("ideal"))
    plan = Plan(("a", "b"), (Residency("x", 0, 1, 0), Residency("x#1", 0, 2, 16), Residency("x", 1, 2, 32)))
    ids = [row.id for row in residency_rows(problem, plan)]
    assert len(set(ids)) == 3 and "x" in ids and "x#1" in ids
    assert to_csv(problem, plan).count("\n") == 4


def _compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def test_c_header_compiles_and_matches_the_plan(plan_path, plan_data, tmp_path, capsys):
    out = tmp_path / "plan.h"
    code, stdout, err = run(capsys, "export", plan_path, "--format", "c-header", "-o", out)
    assert code == 0, err
    text = out.read_text()
    assert "#ifndef COSMA_RESNET18_H" in text and "cosma 0.1" in text and "models/zoo/resnet18.onnx" in text
    assert f"COSMA_RESNET18_CAPACITY {plan_data['capacity']}u" in text and "alignment: 64 bytes" in text
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler found")
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
    (tmp_path / "only.c").write_text('#include "plan.h"\n')
    done = subprocess.run([cc, *flags, "-fsyntax-only", tmp_path / "only.c"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # Twice in one unit (the guard), then used: print the array and compare it with the plan.
    (tmp_path / "dump.c").write_text(
        '#include "plan.h"\n#include "plan.h"\n#include <stdio.h>\n'
        "int main(void) {\n  unsigned i;\n"
        "  for (i = 0; i < COSMA_RESNET18_NUM_RESIDENCIES; i++) {\n"
        "    const cosma_residency_t *r = &cosma_resnet18_residencies[i];\n"
        '    printf("%s %u %u %u %u %u\\n", r->tensor, (unsigned)r->first_step, (unsigned)r->last_step,\n'
        "           (unsigned)r->offset, (unsigned)r->size, (unsigned)r->spilled);\n  }\n"
        '  printf("%s\\n", cosma_resnet18_ops[COSMA_RESNET18_NUM_STEPS - 1]);\n  return 0;\n}\n'
    )
    exe = tmp_path / "dump"
    done = subprocess.run([cc, *flags, "-o", exe, tmp_path / "dump.c"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = subprocess.run([exe], capture_output=True, text=True, check=True).stdout.splitlines()
    assert lines[-1] == plan_data["ops"][-1]["name"]
    printed = sorted(tuple(line.split(" ")) for line in lines[:-1])
    sizes = {name: t["size"] for name, t in plan_data["tensors"].items()}
    expected = sorted(
        (
            r["tensor"],
            str(r["start"]),
            str(r["end"] - 1),
            str(r["offset"]),
            str(sizes[r["tensor"]]),
            str(int(r["spilled"])),
        )
        for r in plan_data["residencies"]
    )
    assert printed == expected


def test_c_header_sanitizes_names(tmp_path):
    names = ["a.b", "a_b", "1x", 'q"uote*/', "r\\s?", "caf\u00e9/0"]
    tensors = {n: Tensor(n, 4 * (i + 1), TensorKind.ACTIVATION) for i, n in enumerate(names)}
    ops = tuple(Operator(f"op/{i}", "Relu", (), (n,)) for i, n in enumerate(names))
    problem = Problem(Graph("my-net.v2", tensors, ops), 1024, get_hardware("ideal"))
    plan = Plan(tuple(op.name for op in ops), tuple(Residency(n, i, i + 1, 0) for i, n in enumerate(names)))
    text = to_c_header(problem, plan, model="dir/my net*/.onnx")
    assert "#ifndef COSMA_MY_NET_V2_H" in text and "*/.onnx" not in text
    enum = re.findall(r"^    (\w+) = \d+,$", text, re.M)
    assert len(enum) == len(set(enum)) == len(names)  # "a.b" and "a_b" sanitize alike: still distinct
    assert c_identifier("caf\u00e9/0") == "caf__0"
    cc = _compiler()
    if cc is None:
        pytest.skip("no C compiler found")
    (tmp_path / "net.h").write_text(text)
    (tmp_path / "use.c").write_text(
        '#include "net.h"\n#include <string.h>\n'
        "int check(void) {\n"
        '  return strcmp(cosma_my_net_v2_residencies[COSMA_MY_NET_V2_R_q_uote__].tensor, "q\\"uote*/");\n'
        "}\n"
    )
    done = subprocess.run(
        [cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only", tmp_path / "use.c"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_export_to_an_unwritable_path_is_one_line(plan_path, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, out, err = run(capsys, "export", plan_path, "--format", "c-header", "-o", blocker / "plan.h")
    assert code == EXIT_USAGE and err.count("\n") == 1 and err.startswith("cosma: error:") and "plan.h" in err
    code, out, err = run(capsys, "show", plan_path, "-o", blocker / "map.html")
    assert code == EXIT_USAGE and err.count("\n") == 1
    code, out, err = run(capsys, "export", tmp_path / "missing.json")
    assert code == EXIT_USAGE and err.count("\n") == 1


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(UsageError, match="out.csv: cannot write"):
        write_atomically(target, half_then_fail)
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    write_atomically(target, lambda tmp: tmp.write_text("new\n"))
    assert target.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_export_to_stdout(plan_path, capsys):
    code, out, err = run(capsys, "export", plan_path, "--format", "csv", "-o", "-")
    assert code == 0 and out.startswith("id,lower,upper,size,offset\n")
