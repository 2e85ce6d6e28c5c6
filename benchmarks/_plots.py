"""PNG plots of a run's series (matplotlib, the ``plot`` extra), one file per plot."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

#: Plots whose x axis spans decades are drawn on log scales.
LOG_X = {"blocking vs size", "time to durable vs size", "cold ls vs experiments"}


def draw(series: list[dict[str, Any]], out_dir: Path, stem: str) -> list[Path]:
    """Draw every plot named in ``series``; return the files written (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    plots: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in series:
        plots[entry["plot"]].append(entry)
    written = []
    for name, lines in plots.items():
        figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=100)
        for line in lines:
            points = sorted(line["points"])
            if points:
                axes.plot(
                    [p[0] for p in points], [p[1] for p in points], marker="o", label=line["line"]
                )
        if name in LOG_X:
            axes.set_xscale("log")
            axes.set_yscale("log")
        axes.set_title(name)
        axes.set_xlabel(lines[0]["x"])
        axes.set_ylabel(lines[0]["y"])
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="small")
        figure.tight_layout()
        path = out_dir / f"{stem}-{name.replace(' ', '-')}.png"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written
