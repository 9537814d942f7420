"""Render the adversarial suite's results (JSON lines written by ``RTML_ADVERSARIAL_REPORT=path pytest
tests/adversarial``) as the Markdown table of docs/guarantees.md, replacing what follows its marker.

Usage: ``python scripts/adversarial_table.py RESULTS.jsonl [docs/guarantees.md]``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MARKER = "<!-- adversarial-table -->"


def table(rows: list[dict]) -> str:
    lines = [f"{len(rows)} hostile inputs; early fires: **{sum(r['early'] for r in rows)}**; waiters affected "
             f"beyond the bad one: **{sum(r['bystander_affected'] for r in rows)}**.", "",
             "| hostile input | early fire | other waiter affected | the victim's wait |", "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["case"]):
        victim = r["victim"] + (f" ({r['reason']})" if r.get("reason") else "")
        lines.append(f"| `{r['case']}` | {'**yes**' if r['early'] else 'no'} | "
                     f"{'**yes**' if r['bystander_affected'] else 'no'} | {victim} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    results = Path(sys.argv[1])
    doc = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).resolve().parents[1] / "docs" / "guarantees.md"
    rows = {}
    for line in results.read_text().splitlines():
        row = json.loads(line)
        rows[row["case"]] = row  # a case run twice counts once (its last run)
    text = doc.read_text()
    if MARKER not in text:
        raise SystemExit(f"{doc} has no {MARKER} line")
    doc.write_text(text.split(MARKER)[0] + MARKER + "\n\n" + table(list(rows.values())))
    print(f"{len(rows)} rows -> {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
