"""An architecture drawn as inline SVG: no script, readable offline and in print.

The network reads left to right and wraps into rows: the input, the stem, one box per block
(type, kernel, expansion, output channels, stride, squeeze-excite, activation, output size),
the head and the classifier. An identity residual is a short arc over its block (dashed where
``res``/``bneck`` project a shortcut whose shape changes), a long skip an arc under the blocks
it spans, and a dashed line marks where a stride-2 block starts a new stage.

Example:
    >>> svg = architecture_svg("r64-stem16-ir_k3_e4_c24_s2-ds_k5x3_c24_id-head128", classes=4)
    >>> svg.count('class="block"')
    2
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from edgenas.arch import BlockShape, Genotype

__all__ = ["BLOCK_COLOURS", "architecture_svg"]

#: Fill and stroke of each block type (Okabe–Ito hues, light fills so that text stays legible).
BLOCK_COLOURS: dict[str, tuple[str, str]] = {
    "conv": ("#dcebf7", "#0072B2"),
    "res": ("#fbe8cc", "#B36B00"),
    "bneck": ("#f5dcea", "#AA4488"),
    "ds": ("#d5f0e6", "#007A5A"),
    "ir": ("#f7f1c6", "#8A7A00"),
}
_NAMES = {
    "conv": "conv",
    "res": "ResNet basic",
    "bneck": "bottleneck",
    "ds": "depthwise-sep.",
    "ir": "inverted res.",
}
_OTHER = ("#eeeeee", "#555555")

# Geometry, in SVG user units (pixels at 100%).
_W, _H = 128, 84  # a box
_GAP = 30  # between boxes of a row (the arrow)
_MARGIN = 28
_ABOVE = 40  # room above a row: identity arcs and stage labels
_BELOW = 44  # room below a row: long-skip arcs and the connector to the next row
_PITCH = _ABOVE + _H + _BELOW


@dataclass(frozen=True)
class _Node:
    kind: str  # input, stem, block, head, classifier
    lines: tuple[str, ...]
    shape: BlockShape | None = None


def _k(kernel: tuple[int, int]) -> str:
    return str(kernel[0]) if kernel[0] == kernel[1] else f"{kernel[0]}×{kernel[1]}"


def _nodes(g: Genotype, classes: int | None, channels: int | None) -> list[_Node]:
    size = f"{g.resolution}×{g.resolution}"
    nodes = [
        _Node("input", ("input", f"{channels}×{size}" if channels else size, "pixels 0–1")),
        _Node("stem", ("stem", f"conv 3×3 · c{g.stem}", "s2", f"→ {g.stem_size}×{g.stem_size}")),
    ]
    for shape in g.shapes():
        b = shape.gene
        parts = [f"c{b.out_channels}"]
        if b.type == "ir":
            parts.insert(0, f"e{b.expansion}")
        if b.stride != 1:
            parts.append(f"s{b.stride}")
        extras = ["SE"] if b.se else []
        extras.append("h-swish" if b.act == "hswish" else "ReLU")
        nodes.append(
            _Node(
                "block",
                (
                    f"{b.type} {_k(b.kernel)}",
                    " · ".join(parts),
                    " · ".join(extras),
                    f"b{shape.index} → {shape.out_size}×{shape.out_size}",
                ),
                shape,
            )
        )
    if g.head:
        nodes.append(_Node("head", ("head", f"conv 1×1 · c{g.head}", "")))
    out = f"{classes} classes" if classes else "classes"
    nodes.append(_Node("classifier", ("pool + linear", f"{g.final_channels} → {out}", "")))
    return nodes


def _text(x: float, y: float, s: str, cls: str, anchor: str = "middle") -> str:
    return f'<text x="{x:g}" y="{y:g}" class="{cls}" text-anchor="{anchor}">{escape(s)}</text>'


def architecture_svg(
    genotype: Genotype | str,
    *,
    classes: int | None = None,
    channels: int | None = None,
    per_row: int = 7,
) -> str:
    """The architecture as an ``<svg>`` element (one ``<g class="block">`` per block).

    Args:
        genotype: a :class:`Genotype` or its notation.
        classes: the number of classes the classifier outputs (shown when given).
        channels: image channels at the input (shown when given).
        per_row: boxes per row before the drawing wraps.
    """
    g = genotype if isinstance(genotype, Genotype) else Genotype.parse(genotype)
    nodes = _nodes(g, classes, channels)
    per_row = max(2, per_row)
    rows = (len(nodes) + per_row - 1) // per_row
    width = 2 * _MARGIN + per_row * _W + (per_row - 1) * _GAP
    legend_h = 48
    height = rows * _PITCH + legend_h

    def place(i: int) -> tuple[float, float]:
        row, col = divmod(i, per_row)
        return _MARGIN + col * (_W + _GAP), row * _PITCH + _ABOVE

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="architecture" role="img" '
        f'viewBox="0 0 {width} {height}" width="100%" '
        f'style="max-width:{width}px" aria-label="{escape(str(g))}">',
        "<title>" + escape(str(g)) + "</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
        "<style>"
        ".architecture text{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;"
        "font-size:12px;fill:#222}"
        ".architecture .t1{font-weight:600;font-size:13px}"
        ".architecture .t4{fill:#666;font-size:11px}"
        ".architecture .stage{fill:#777;font-size:11px}"
        ".architecture .note{fill:#555;font-size:11px}"
        ".architecture .flow{stroke:#555;stroke-width:1.4;fill:none}"
        ".architecture .idarc{stroke:#333;stroke-width:1.4;fill:none}"
        ".architecture .skip{stroke:#AA3377;stroke-width:1.6;fill:none}"
        "</style>",
    ]
    # Boxes.
    for i, node in enumerate(nodes):
        x, y = place(i)
        fill, stroke = _OTHER
        attrs = f'class="{node.kind}"'
        if node.shape is not None:
            fill, stroke = BLOCK_COLOURS.get(node.shape.gene.type, _OTHER)
            attrs = f'class="block" data-block="{node.shape.index}"'
        out.append(f"<g {attrs}>")
        out.append(
            f'<rect x="{x:g}" y="{y:g}" width="{_W}" height="{_H}" rx="7" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.6"/>'
        )
        lines = [s for s in node.lines if s]
        top = y + (_H - 17 * len(lines)) / 2 + 13
        for j, line in enumerate(lines):
            cls = "t1" if j == 0 else "t4" if j == 3 else "t2"
            out.append(_text(x + _W / 2, top + 17 * j, line, cls))
        out.append("</g>")
    # The flow: arrows within a row, an elbow from the end of a row to the next.
    for i in range(len(nodes) - 1):
        x, y = place(i)
        nx, ny = place(i + 1)
        mid = y + _H / 2
        if ny == y:
            out.append(
                f'<path class="flow" d="M{x + _W:g},{mid:g} H{nx - 2:g}" marker-end="url(#arrow)"/>'
            )
        else:
            down = y + _H + _BELOW - 8
            side = x + _W + 10
            left = nx - 14
            out.append(
                f'<path class="flow" d="M{x + _W:g},{mid:g} H{side:g} V{down:g} H{left:g} '
                f'V{ny + _H / 2:g} H{nx - 2:g}" marker-end="url(#arrow)"/>'
            )
    # Stage boundaries: a stride-2 block starts a stage at a new spatial size.
    for i, node in enumerate(nodes):
        if node.shape is None or node.shape.gene.stride != 2:
            continue
        x, y = place(i)
        # First in its row: the boundary sits in the left margin.
        line_x = x - 6 if x == _MARGIN else x - _GAP / 2
        out.append(
            f'<line x1="{line_x:g}" y1="{y - 36:g}" x2="{line_x:g}" y2="{y + _H + 6:g}" '
            'stroke="#999" stroke-dasharray="4 3"/>'
        )
        s = node.shape.out_size
        out.append(_text(line_x + 4, y - 27, f"stage · {s}×{s}", "stage", "start"))
    # Identity residuals (short arcs over the block) and long skips (arcs under the span).
    first_block = 2  # nodes[0] is the input, nodes[1] the stem
    outgoing: dict[int, list[str]] = {}  # skips that cross a row break, by source node
    for i, node in enumerate(nodes):
        if node.shape is None:
            continue
        b, shape = node.shape.gene, node.shape
        x, y = place(i)
        if b.residual:
            projected = b.always_residual and (
                shape.in_channels != shape.out_channels or b.stride != 1
            )
            dash = ' stroke-dasharray="4 3"' if projected else ""
            out.append(
                f'<path class="idarc"{dash} d="M{x + 10:g},{y:g} '
                f'C{x + 24:g},{y - 24:g} {x + _W - 24:g},{y - 24:g} {x + _W - 10:g},{y:g}" '
                'marker-end="url(#arrow)"/>'
            )
        if b.skip:
            source = i - b.skip  # the node whose output is added (the stem for block -1)
            sx, sy = place(source)
            bottom = y + _H
            if sy == y:
                depth = 14 + 7 * b.skip
                x0, x1 = sx + _W / 2 + 6, x + _W / 2 - 6
                out.append(
                    f'<path class="skip" d="M{x0:g},{bottom:g} C{x0:g},{bottom + depth:g} '
                    f'{x1:g},{bottom + depth:g} {x1:g},{bottom:g}" marker-end="url(#arrow)"/>'
                )
                out.append(
                    _text((x0 + x1) / 2, bottom + depth * 0.75 + 4, f"skip {b.skip}", "note")
                )
            else:  # the span crosses a row break: a stub at each end, named
                name = "stem" if source < first_block else f"b{source - first_block}"
                outgoing.setdefault(source, []).append(f"b{shape.index}")
                out.append(
                    f'<path class="skip" d="M{x + _W / 2 - 22:g},{bottom + 22:g} q22,-4 22,-22" '
                    'marker-end="url(#arrow)"/>'
                )
                out.append(_text(x + _W / 2 - 26, bottom + 25, f"from {name}", "note", "end"))
    for source, targets in outgoing.items():  # one stub per source, naming every target
        sx, sy = place(source)
        sb = sy + _H
        out.append(
            f'<path class="skip" d="M{sx + _W / 2:g},{sb:g} q0,18 22,22" marker-end="url(#arrow)"/>'
        )
        out.append(_text(sx + _W / 2 + 26, sb + 25, "to " + ", ".join(targets), "note", "start"))
    # Key.
    ky = rows * _PITCH + 14
    kx = float(_MARGIN)
    for t, (fill, stroke) in BLOCK_COLOURS.items():
        out.append(
            f'<rect x="{kx:g}" y="{ky - 10:g}" width="14" height="14" rx="3" fill="{fill}" '
            f'stroke="{stroke}"/>'
        )
        out.append(_text(kx + 19, ky + 1, f"{t}: {_NAMES[t]}", "note", "start"))
        kx += 150
    out.append(
        _text(
            _MARGIN, ky + 22,
            "arc over a block: residual shortcut (dashed: projected, as the shapes change) · "
            "arc under blocks: long skip · dashed line: a stride-2 block starts a stage",
            "note", "start",
        )
    )  # fmt: skip
    out.append("</svg>")
    return "\n".join(out)
