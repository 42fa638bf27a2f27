"""The README's paper-budget rows are the committed benchmark record's numbers."""
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_paper_budget_rows_come_from_the_committed_record():
    record = json.loads((ROOT / "results" / "budget" / "bench_budget_cpu.json").read_text())
    row = next(r for r in record["rows"] if r["threads"] == 1)
    readme = (ROOT / "README.md").read_text()
    flags = " ".join(record["command"].split("bench_budget.py", 1)[1].split())
    assert flags in " ".join(readme.replace("\\\n", " ").split()), "the README's command is not the record's"
    plain_total = row["plain"]["synthesis"][1] + row["plain"]["reconstruction"][1]
    for path, label in (("plain", "before (plain path)"), ("fast", "class-token tail (default, bit-exact)"),
                        ("mixed", "+ `autocast: bf16-mlp` (opt-in)")):
        r = row[path]
        synth, recon = r["synthesis"][1], r["reconstruction"][1]
        cells = (f"| {label} | {synth:.1f} | {recon:.1f} | {synth + recon:.1f} | "
                 f"{plain_total / (synth + recon):.2f} | {100 * r['top1']:.2f} |")
        assert cells in readme, cells
    assert row["bit_identical"] is True
