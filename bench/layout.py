"""How one scenario's table is drawn (`Layout`), and which figures are the worst run's rather
than the median (`WORST`); the tables themselves are in `bench.layouts`."""

from __future__ import annotations

from dataclasses import dataclass

# Figures of which any run's is reported, not the median: a loss in one run is a loss.
WORST = frozenset(
    {
        "lost",
        "misrouted",
        "duplicated",
        "burst_lost",
        "out_of_order",
        "gaps",
        "refused_1013",
        "exit_hung",
    }
)


@dataclass(frozen=True)
class Layout:
    """How one scenario's rows are grouped (the key, target last) and which figures show."""

    title: str
    key: tuple[str, ...]
    columns: tuple[str, ...]
    # The row a ratio is to: the same key but for this one field, which has this value.
    baseline: tuple[str, str] = ("target", "insight")
    baseline_name: str = "Insight's figure in the same group"
    note: str = ""  # printed under the table: what a reader must know to read it
