"""Medians over repeats, markdown tables with ratios to Insight (or, for the cluster, to the
single Redis), and PNG plots.

Every row of every repeat is kept in `<scenario>.json` next to the medians, so a reader can
see the spread the medians hide.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.layout import WORST, Layout
from bench.layouts import LAYOUTS
from bench.window import median

Row = dict[str, Any]


def medians(rows: Iterable[Row], layout: Layout) -> list[Row]:
    """One row per key: the median of each figure over the repeats, in first-seen order."""
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(k) for k in layout.key), []).append(row)
    out = []
    for key, group in groups.items():
        merged: Row = dict(zip(layout.key, key, strict=True))
        merged["runs"] = len(group)
        for column in layout.columns:
            values = [r.get(column) for r in group]
            numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
            if not numbers:
                merged[column] = values[0]
            else:
                merged[column] = max(numbers) if column in WORST else median(numbers)
        out.append(merged)
    return out


def markdown(name: str, rows: list[Row]) -> str:
    layout = LAYOUTS[name]
    shown = [c for c in layout.columns if any(r.get(c) is not None for r in rows)]
    header = [*layout.key, "runs", *shown]
    lines = [
        f"### {layout.title}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in rows:
        base = _baseline_row(rows, row, layout)
        cells = [str(row.get(k)) for k in layout.key] + [str(row["runs"])]
        for column in shown:
            value = row.get(column)
            cell = "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
            reference = base.get(column) if base is not None and base is not row else None
            if (
                isinstance(value, int | float)
                and isinstance(reference, int | float)
                and reference
                and not isinstance(value, bool)
                and column not in WORST
            ):
                cell += f" ({value / reference:.2f}x)"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Medians over the runs (lost, misrouted and duplicated: the worst run); "
        f"(n.nnx) is the ratio to {layout.baseline_name}"
        + (
            f"; on Insight's own row, to {baseline} (the same run)."
            if (baseline := _commit_measured(rows))
            else "."
        ),
        "",
    ]
    if layout.note:
        lines += [layout.note, ""]
    return "\n".join(lines)


def _baseline_row(rows: list[Row], row: Row, layout: Layout) -> Row | None:
    """The row `row`'s ratios are to: the layout's baseline in the same group; for Insight's
    own row, Insight at the baseline commit (`--baseline`: target `insight@<commit>`) if the
    run measured it."""
    field, value = layout.baseline
    group = [k for k in layout.key if k != field]

    def matching(wanted: Any) -> Row | None:
        return next(
            (r for r in rows if wanted(r.get(field)) and all(r[k] == row[k] for k in group)),
            None,
        )

    if str(row.get(field, "")).startswith(f"{value}@"):
        return None  # the baseline commit's own row: the figures the others are read against
    if field == "target" and row.get(field) == value:
        earlier = matching(lambda target: str(target).startswith(f"{value}@"))
        if earlier is not None:
            return earlier
    return matching(lambda target: target == value)


def _commit_measured(rows: list[Row]) -> str | None:
    """`insight@<commit>` if the run measured Insight at a baseline commit."""
    return next(
        (str(r["target"]) for r in rows if str(r.get("target", "")).startswith("insight@")),
        None,
    )


def plot(name: str, rows: list[Row], path: Path) -> None:
    """One PNG per scenario, the figure that scenario is about."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    targets = list(dict.fromkeys(r.get("target") for r in rows))
    if name == "targeted_push":
        for users in sorted({r["users"] for r in rows}):
            for target in targets:
                mine = [r for r in rows if r["target"] == target and r["users"] == users]
                rates = [r["rate"] for r in mine]
                axes[0].plot(
                    rates, [r["p99_ms"] for r in mine], marker="o", label=f"{target} U={users}"
                )
                if target != "floor":
                    axes[1].plot(
                        rates,
                        [r["server_cpu_us_per_event"] for r in mine],
                        marker="o",
                        label=f"{target} U={users}",
                    )
        axes[0].set(xlabel="events/s", ylabel="p99 latency (ms)", yscale="log")
        axes[1].set(xlabel="events/s", ylabel="server CPU per event (µs)")
    elif name == "scale_out":
        for target in targets:
            mine = [r for r in rows if r["target"] == target]
            axes[0].plot(
                [r["servers"] for r in mine],
                [r["server_cpu_us_per_event"] for r in mine],
                marker="o",
                label=target,
            )
            axes[1].plot(
                [r["servers"] for r in mine], [r["p99_ms"] for r in mine], marker="o", label=target
            )
        axes[0].set(xlabel="server processes", ylabel="total server CPU per event (µs)")
        axes[1].set(xlabel="server processes", ylabel="p99 latency (ms)")
    elif name == "cluster":
        _plot_cluster(rows, axes)
    elif name == "rolling_deploy":
        _grouped(axes[0], rows, "target", ("resume_p50_s", "resume_p99_s", "resume_max_s"))
        _grouped(axes[1], rows, "target", ("outage_p50_s", "outage_p99_s", "outage_max_s"))
        axes[0].set(ylabel="resume (s)")
        axes[1].set(ylabel="outage each client saw (s)")
    elif name == "large_replay":
        _grouped(axes[0], rows, "measure", ("p50_ms", "p99_ms"))
        _grouped(axes[1], rows, "measure", ("rss_before_mib", "rss_peak_mib", "rss_after_mib"))
        axes[0].set(ylabel="other user's publish-to-frame (ms)", yscale="log")
        axes[1].set(ylabel="edge RSS (MiB)")
    elif name == "server_api":
        labels = [
            str(r["measure"]).replace(", ", "\n")
            + (f"\n{r['target']}" if "@" in str(r.get("target")) else "")
            for r in rows
        ]
        for axis, column in ((axes[0], "p50_ms"), (axes[1], "cpu_us_per_call")):
            axis.bar(labels, [r.get(column) or 0 for r in rows])
            axis.set(ylabel=column)
    else:
        left, right = {
            "highest_rate": ("sustained_per_s", "server_cpu_us_per_event"),
            "connections": ("rss_kib_per_connection", "seconds_to_accept_all"),
            "reconnect_storm": ("seconds_to_catch_up", "lost"),
            "job_pipeline": ("p50_ms", "p99_ms"),
            "event_at_open": ("open_p50_ms", "steady_p50_ms"),
            "jitter": ("replay_p99_s", "delivered_pct"),
            "sse": ("server_cpu_us_per_event", "rss_kib_per_connection"),
            "blocked_page": ("open_ms", "first_event_ms"),
            "broadcast": ("last_frame_ms", "server_cpu_ms_per_broadcast"),
        }[name]
        labels = [
            textwrap.fill(str(r["target"]), 16)
            + (f" {r['rate']}/s" if "rate" in LAYOUTS[name].key else "")
            for r in rows
        ]
        for axis, column in ((axes[0], left), (axes[1], right)):
            axis.bar(labels, [r.get(column) or 0 for r in rows])
            axis.set(ylabel=column)
    for axis in axes:
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
        axis.grid(alpha=0.3)
    figure.suptitle(LAYOUTS[name].title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _grouped(axis: Any, rows: list[Row], label: str, columns: tuple[str, ...]) -> None:
    """One group of bars per row (named by its `label` field), one bar per column."""
    width = 0.8 / len(columns)
    for i, column in enumerate(columns):
        positions = [x + (i - (len(columns) - 1) / 2) * width for x in range(len(rows))]
        axis.bar(positions, [r.get(column) or 0 for r in rows], width, label=column)
    names = [str(r[label]).replace(" of ", "\nof ") for r in rows]
    axis.set_xticks(range(len(rows)), names, fontsize=7)


def _plot_cluster(rows: list[Row], axes: Any) -> None:
    """Left: CPU per event at the fixed rate, by process, one bar group per setup. Right:
    the highest sustained rate of each."""
    pushed = [r for r in rows if r.get("sustained_per_s") is None]
    labels = [f"{r['redis']}\n{r['producer']}".replace(", ", "\n") for r in pushed]
    parts = (("edge", "server_cpu_us_per_event"), ("producer", "producer_cpu_us_per_event"),
             ("Redis, all nodes", "redis_cpu_us_per_event"))  # fmt: skip
    width = 0.8 / len(parts)
    for i, (part, column) in enumerate(parts):
        positions = [x + (i - 1) * width for x in range(len(pushed))]
        axes[0].bar(positions, [r.get(column) or 0 for r in pushed], width, label=part)
    axes[0].set_xticks(range(len(pushed)), labels, fontsize=6)
    axes[0].set(ylabel=f"CPU per event (µs), {pushed[0]['measure'] if pushed else ''}")
    highest = [r for r in rows if r.get("sustained_per_s") is not None]
    axes[1].bar([r["redis"] for r in highest], [r["sustained_per_s"] for r in highest])
    axes[1].set(ylabel="highest sustained rate (events/s)")


def write(name: str, runs: list[Row], out: Path) -> str:
    """Write `<name>.json`, `.md` and `.png` into `out`; returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    rows = medians(runs, LAYOUTS[name])
    (out / f"{name}.json").write_text(json.dumps({"medians": rows, "runs": runs}, indent=2))
    table = markdown(name, rows)
    (out / f"{name}.md").write_text(table)
    plot(name, rows, out / f"{name}.png")
    return table
