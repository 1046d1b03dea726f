"""Drawing a graph (matplotlib): organs at their anchors, relations as styled edges."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from anatomix.graph.model import OrganGraph


_EDGE_STYLE = {
    "attached_to": ("tab:blue", "-", 2.2),
    "contact": ("tab:green", "-", 2.5),
    "avoid": ("tab:red", ":", 1.2),
    "inside": ("tab:purple", "-", 1.8),
    "direction": ("0.55", "--", 0.8),
}


def draw_graph(graph: OrganGraph, out: str | Path, *, dpi: int = 120) -> Path:
    """Coronal picture of the graph: organs at anchors, 1-sigma anchor ellipses, coloured edges.

    Radiological convention: the subject's right (larger x) is on the image LEFT; z (superior)
    is up. Implicit avoid relations are not drawn (every unrelated pair has one).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Ellipse

    fig, ax = plt.subplots(figsize=(8, 9))
    cmap = plt.get_cmap("tab20")
    pos = {o: graph.organ(o).anchor_mean_mm for o in graph.organs}
    for r in graph.relations(implicit=False):
        col, ls, lw = _EDGE_STYLE[r.type]
        (xa, _, za), (xb, _, zb) = pos[r.a], pos[r.b]
        if r.type == "attached_to":
            ax.annotate("", xy=(xb, zb), xytext=(xa, za),
                        arrowprops=dict(arrowstyle="-|>", color=col, lw=lw, shrinkA=8, shrinkB=8), zorder=2)
        else:
            ax.plot([xa, xb], [za, zb], color=col, ls=ls, lw=lw, zorder=1, alpha=0.6)
    for i, o in enumerate(graph.organs):
        spec = graph.organ(o)
        c = spec.anchor_cov_mm[np.ix_([0, 2], [0, 2])]
        w, v = np.linalg.eigh(c)
        ang = math.degrees(math.atan2(v[1, 1], v[0, 1]))
        color = cmap(i % 20)
        ax.add_patch(Ellipse((spec.anchor_mean_mm[0], spec.anchor_mean_mm[2]), 2 * math.sqrt(w[1]),
                             2 * math.sqrt(w[0]), angle=ang, fc=(*color[:3], 0.18), ec=color, lw=1, zorder=0))
        size = 20 + 6 * spec.typical_volume_ml ** (2 / 3)
        ax.scatter([spec.anchor_mean_mm[0]], [spec.anchor_mean_mm[2]], s=min(size, 900), color=color,
                   edgecolor="k", lw=0.6, zorder=3)
        ax.annotate(f"{o} ({spec.label})", (spec.anchor_mean_mm[0], spec.anchor_mean_mm[2]), fontsize=8,
                    xytext=(5, 5), textcoords="offset points", zorder=4)
    ax.set_aspect("equal", adjustable="datalim")
    ax.autoscale_view()
    ax.invert_xaxis()  # subject's right on the image left
    ax.set_xlabel("x (mm)  <- subject's right  |  subject's left ->")
    ax.set_ylabel("z (mm), superior up")
    ax.set_title(f"{graph.name}: coronal view of anchors (1σ ellipses) and relations")
    handles = [Line2D([0], [0], color=c, ls=ls, lw=lw, label=t) for t, (c, ls, lw) in _EDGE_STYLE.items()]
    ax.legend(handles=handles, loc="lower right", fontsize=8, title="relation", title_fontsize=8)
    ax.grid(alpha=0.3)
    outp = Path(out)
    outp.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(outp, dpi=dpi)
    plt.close(fig)
    return outp
