"""`python -m testbed.partition_report RESULTS.jsonl`: the partition runs as a Markdown table.

Reads the JSON lines tests/partition writes to $PARTITION_RESULTS and prints one row per
(configuration, scenario) with the range of each figure over its runs, for
docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

COLUMNS = ("longest stall (s)", "flowing again (s)", "first after heal (s)",
           "all workers back (s)", "cluster healthy (s)")


def span(values: list[float]) -> str:
    """'3' or '2\u20137' (a range over the runs, en dash as in the docs)."""
    lo, hi = min(values), max(values)
    whole = all(v == int(v) for v in values)
    fmt = "{:,.0f}" if whole or hi >= 100 else "{:.1f}"
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}\u2013{fmt.format(hi)}"


def table(rows: list[dict[str, object]]) -> str:
    groups: dict[tuple[str, str], list[dict[str, object]]] = defaultdict(list)
    for row in rows:
        groups[(str(row["config"]), str(row["scenario"]))].append(row)
    head = ("| config | scenario | runs | confirmed | lost | unexpected | duplicates (bound) "
            "| parked (unrun) "
            "| " + " | ".join(COLUMNS) + " | operator restarts |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for (config, scenario), runs in groups.items():
        if scenario == "negative-control":
            continue
        numbers = {c: span([float(str(r[c])) for r in runs]) for c in COLUMNS}
        restarts = sum(1 for r in runs if r.get("operator restarts"))
        lines.append(
            f"| {config} | {scenario} | {len(runs)} "
            f"| {span([float(str(r['confirmed'])) for r in runs])} "
            f"| {sum(int(str(r['lost'])) for r in runs)} "
            f"| {sum(int(str(r['unexpected'])) for r in runs)} "
            f"| {span([float(str(r['duplicates'])) for r in runs])} "
            f"({span([float(str(r['dup bound'])) for r in runs])}) "
            f"| {sum(int(str(r['parked'])) for r in runs)} "
            f"({sum(int(str(r['parked unrun'])) for r in runs)}) "
            f"| " + " | ".join(numbers[c] for c in COLUMNS) + f" | {restarts} of {len(runs)} |")
    return "\n".join(lines)


def controls(rows: list[dict[str, object]]) -> str:
    found = [r for r in rows if r["scenario"] == "negative-control"]
    return "\n".join(f"negative control: confirmed {r['confirmed']}, lost {r['lost']}, "
                     f"unexpected {r['unexpected']}, healed {r['healed']}, "
                     f"{r['autoheal']}" for r in found)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 64
    rows = [json.loads(line) for line in Path(argv[0]).read_text().splitlines() if line]
    print(table(rows))
    print(controls(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
