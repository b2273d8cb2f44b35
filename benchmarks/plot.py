"""
The throughput-against-concurrency plot (needs matplotlib: ``pip install relaycall[bench]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.throughput import summarize

STYLE: dict[str, dict[str, Any]] = {
    "relaycall": {"color": "tab:blue", "marker": "o", "label": "relaycall (handles)"},
    "aiohttp": {"color": "tab:gray", "marker": "s", "label": "bare aiohttp"},
    "sdk": {"color": "tab:orange", "marker": "^", "label": "signalwire-sdk (threads)"},
}


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401, PLC0415
    except Exception:
        return False
    return True


def plot(result: dict[str, Any], path: Path, *, title_note: str = "") -> Path:
    """Commands/s (median, with the min-max range as error bars) against concurrency."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    s = summarize(result)
    concs = sorted(int(c) for c in s)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for side in result["sides"]:
        med = [s[str(c)][side]["commands_per_s"].median for c in concs]
        lo = [m - s[str(c)][side]["commands_per_s"].min for c, m in zip(concs, med, strict=True)]
        hi = [s[str(c)][side]["commands_per_s"].max - m for c, m in zip(concs, med, strict=True)]
        ax.errorbar(concs, med, yerr=[lo, hi], capsize=3, linewidth=1.8, **STYLE[side])
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(concs)
    ax.set_xticklabels([str(c) for c in concs])
    ax.set_xlabel("concurrent call flows")
    ax.set_ylabel("commands / s (median; bars: min-max)")
    ax.set_ylim(bottom=0)
    ax.grid(visible=True, alpha=0.3)
    ax.set_title("Calling API command throughput, one client process" + title_note, fontsize=10)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
