"""Write the docs' diagrams (SVG): ``python docs/_static/diagrams/make_diagrams.py``.

Hand-placed boxes and arrows, no dependencies (no graphviz, no network). The layer map is
read from ``[tool.importlinter]`` in pyproject.toml, so it follows the contract the build
checks. Rerun after changing either, and commit the SVGs with this script.
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"
INK = "#1f2933"
MUTED = "#52606d"
BLUE = ("#e3f0fb", "#2f6fa8")
GREEN = ("#e4f5e8", "#2f8a4a")
AMBER = ("#fdf1dc", "#b7791f")
RED = ("#fbe3e3", "#b83232")
GREY = ("#eef1f4", "#7b8794")


class Svg:
    """A tiny SVG writer: boxes, arrows, text."""

    def __init__(self, width: int, height: int, title: str) -> None:
        self.width, self.height = width, height
        self.parts = [
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"viewBox='0 0 {width} {height}' {FONT} font-size='14'>",
            f"<title>{escape(title)}</title>",
            "<defs><marker id='arrow' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='8' "
            f"markerHeight='8' orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' "
            f"fill='{INK}'/></marker></defs>",
            f"<rect width='{width}' height='{height}' fill='white'/>",
        ]

    def box(
        self,
        x: float,
        y: float,
        w: float,
        h: float,
        lines: list[str],
        colours: tuple[str, str] = BLUE,
        bold_first: bool = True,
    ) -> None:
        fill, stroke = colours
        self.parts.append(
            f"<rect x='{x}' y='{y}' width='{w}' height='{h}' rx='8' fill='{fill}' "
            f"stroke='{stroke}' stroke-width='1.6'/>"
        )
        step = 17
        top = y + h / 2 - (len(lines) - 1) * step / 2 + 5
        for i, line in enumerate(lines):
            weight = "bold" if i == 0 and bold_first else "normal"
            size = 15 if i == 0 and bold_first else 12.5
            colour = INK if i == 0 else MUTED
            self.text(x + w / 2, top + i * step, line, size=size, weight=weight, colour=colour)

    def text(
        self,
        x: float,
        y: float,
        content: str,
        size: float = 13,
        weight: str = "normal",
        colour: str = INK,
        anchor: str = "middle",
    ) -> None:
        self.parts.append(
            f"<text x='{x}' y='{y}' font-size='{size}' font-weight='{weight}' fill='{colour}' "
            f"text-anchor='{anchor}'>{escape(content)}</text>"
        )

    def arrow(self, points: list[tuple[float, float]], dashed: bool = False) -> None:
        path = " ".join(f"{'M' if i == 0 else 'L'}{x},{y}" for i, (x, y) in enumerate(points))
        dash = " stroke-dasharray='5,4'" if dashed else ""
        self.parts.append(
            f"<path d='{path}' fill='none' stroke='{INK}' stroke-width='1.6'{dash} "
            "marker-end='url(#arrow)'/>"
        )

    def rect(self, x: float, y: float, w: float, h: float, fill: str, stroke: str = "none") -> None:
        self.parts.append(
            f"<rect x='{x}' y='{y}' width='{w}' height='{h}' fill='{fill}' stroke='{stroke}'/>"
        )

    def line(self, x1: float, y1: float, x2: float, y2: float, colour: str = INK) -> None:
        self.parts.append(
            f"<line x1='{x1}' y1='{y1}' x2='{x2}' y2='{y2}' stroke='{colour}' stroke-width='1.6'/>"
        )

    def write(self, name: str) -> None:
        (HERE / name).write_text("\n".join([*self.parts, "</svg>"]) + "\n")


def lifecycle() -> None:
    """A child's states, from spawn to one of its three ends."""
    svg = Svg(780, 330, "A child's lifecycle")
    svg.text(20, 28, "A child's lifecycle", size=17, weight="bold", anchor="start")
    svg.box(20, 80, 120, 64, ["spawned", "pidfd from birth"])
    svg.box(190, 80, 130, 64, ["running", "signals via pidfd"])
    svg.box(190, 215, 130, 56, ["stopped", "counts as running"], GREY)
    svg.box(375, 80, 140, 64, ["exited", "a zombie: status", "kept by the kernel"], AMBER)
    svg.box(
        580, 50, 180, 70, ["reaped", "wait / poll / stop / scope", "or the reaper thread"], GREEN
    )
    svg.box(
        580, 135, 180, 70, ["lost", "someone else reaped it:", "status from pidfd (6.15+)"], RED
    )
    svg.box(
        580,
        225,
        180,
        70,
        ["detached", "detach(): runs on, reaped", "by tether-reaper at exit"],
        GREY,
    )
    svg.arrow([(140, 112), (188, 112)])
    svg.arrow([(320, 112), (373, 112)])
    svg.text(347, 104, "exit", size=12, colour=MUTED)
    svg.arrow([(235, 144), (235, 213)])
    svg.arrow([(275, 215), (275, 146)])
    svg.text(228, 184, "SIGSTOP", size=11.5, colour=MUTED, anchor="end")
    svg.text(282, 184, "SIGCONT", size=11.5, colour=MUTED, anchor="start")
    svg.arrow([(515, 100), (578, 85)])
    svg.arrow([(515, 124), (578, 165)])
    svg.arrow([(320, 135), (545, 250), (578, 255)], dashed=True)
    svg.text(425, 172, "detach()", size=12, colour=MUTED)
    svg.text(
        20,
        318,
        "A signal after the reap does nothing; the status is cached on the handle.",
        size=12.5,
        colour=MUTED,
        anchor="start",
    )
    svg.write("lifecycle.svg")


def stop_timeline() -> None:
    """What a supervisor does when its scope ends, on one time axis."""
    svg = Svg(780, 330, "A supervisor's stop timeline")
    svg.text(
        760,
        28,
        "kill= decides what a tree is: group, cgroup, process, namespace",
        size=12,
        colour=MUTED,
        anchor="end",
    )
    svg.text(20, 28, "Leaving a Supervisor scope", size=17, weight="bold", anchor="start")
    left, kill, reap, end = 150, 410, 550, 695
    svg.rect(left, 60, kill - left, 190, "#e3f0fb")
    svg.text((left + kill) / 2, 78, "one shared grace period (5 s by default)", size=12.5)
    svg.text((left + kill) / 2, 94, "a ceiling: it ends when the trees do", size=12)
    lanes = [
        ("child A", 215, GREEN, "exits at once"),
        ("child B", 330, GREEN, "exits after its cleanup"),
        ("child C", kill, RED, "ignores SIGTERM: SIGKILL"),
    ]
    for i, (name, stop, colours, note) in enumerate(lanes):
        y = 125 + i * 40
        svg.text(20, y + 5, name, size=13, weight="bold", anchor="start")
        svg.rect(90, y - 8, stop - 90, 16, colours[0], colours[1])
        svg.text(stop + 8, y + 5, note, size=12, colour=MUTED, anchor="start")
    svg.line(left, 55, left, 262)
    svg.line(kill, 55, kill, 262, RED[1])
    svg.line(reap, 55, reap, 262, GREEN[1])
    svg.arrow([(40, 275), (760, 275)])
    svg.text(770, 290, "time", size=12, colour=MUTED, anchor="end")
    steps = [
        (left, "1. stop signal", "(+ SIGCONT) to every tree"),
        (kill, "2. SIGKILL", "to what is left"),
        (reap, "3. reap", "all, trees empty"),
        (end, "4. with returns", "re-raises the error"),
    ]
    for x, head, sub in steps:
        svg.text(x, 298, head, size=13, weight="bold")
        svg.text(x, 315, sub, size=11.5, colour=MUTED)
    svg.write("stop-timeline.svg")


def layers() -> None:
    """The import layers of [tool.importlinter], highest first."""
    text = (ROOT / "pyproject.toml").read_text()
    found = re.search(r"^layers = \[(.*?)^\]", text, re.S | re.M)
    if found is None:
        raise SystemExit("no layers list in pyproject.toml")
    rows = [
        [name.strip() for name in entry.split("|")]
        for entry in re.findall(r'"([^"]+)"', found.group(1))
    ]
    height = 70 + len(rows) * 44 + 40
    svg = Svg(780, height, "tether's import layers")
    svg.text(
        20,
        28,
        "Import layers (pyproject.toml, [tool.importlinter])",
        size=17,
        weight="bold",
        anchor="start",
    )
    svg.text(
        20,
        48,
        "A module imports only from layers below its own; siblings on one row not from each other.",
        size=12.5,
        colour=MUTED,
        anchor="start",
    )
    roles = {
        "__main__": "python -m tether",
        "_cli": "the tether command: run, init, daemon",
        "_supervise": "scopes, kill modes, restarts, readiness, lifeline",
        "daemon": "public",
        "subprocess": "public",
        "asyncio": "public",
        "_popen": "the drop-in's Popen",
        "_aio": "AsyncProcess on anyio",
        "_core": "Process, spawn, run, the reaper, exit policy",
        "_spawn": "option planning, stdio, one module per backend",
        "_native": "the C spawner and the namespace init",
        "_linux": "raw kernel calls: pidfd, cgroup, prctl, probes",
        "_errors": "the error tree",
        "limits": "public: Limits, presets",
        "_status": "statuses",
        "_durations": "timeouts",
        "_version": "version",
    }
    palette = [GREY, BLUE, BLUE, GREEN, GREEN, AMBER, AMBER, AMBER, RED, GREY, GREY]
    for i, row in enumerate(rows):
        y = 64 + i * 44
        width = 600 / len(row)
        for j, name in enumerate(row):
            role = roles.get(name, "")
            label = f"tether.{name}" + (f": {role}" if role and len(row) < 3 else "")
            if len(row) >= 3 and role:
                label = f"tether.{name} ({role})" if role.startswith("public") else label
            svg.box(
                80 + j * width + 4,
                y,
                width - 8,
                36,
                [label],
                palette[i % len(palette)],
                bold_first=False,
            )
    bottom = 64 + len(rows) * 44
    svg.arrow([(720, 70), (720, bottom - 10)])
    svg.text(735, (70 + bottom) / 2, "imports", size=12, colour=MUTED, anchor="start")
    svg.text(
        20,
        bottom + 22,
        "tether/__init__.py sits above them all (public names only); no module imports it back.",
        size=12.5,
        colour=MUTED,
        anchor="start",
    )
    svg.write("layers.svg")


if __name__ == "__main__":
    lifecycle()
    stop_timeline()
    layers()
