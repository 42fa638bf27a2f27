"""The README's paper-budget block is what the benchmark reports from its committed records."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ("sparse", "psaq", "smi")


def _bench():
    spec = importlib.util.spec_from_file_location("bench_budget", ROOT / "benchmarks" / "bench_budget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_paper_budget_block_comes_from_the_committed_records():
    records = [json.loads((ROOT / "results" / "budget" / f"bench_budget_{n}_cpu.json").read_text()) for n in RECORDS]
    readme = (ROOT / "README.md").read_text()
    flat = " ".join(readme.replace("\\\n", " ").split())
    for record in records:  # each record's command, as the README lists it
        flags = " ".join(record["command"].split("bench_budget.py", 1)[1].split())
        assert flags in flat, f"the README's command is not the record's: {flags}"
        assert record["machine"]["flags"] is not None and record["settings"]["roofline"]
    begin, end = "<!-- bench_budget: begin -->\n", "<!-- bench_budget: end -->"
    block = readme.split(begin)[1].split(end)[0].strip()
    assert block == _bench().budget_report(records)
    sardfq = records[0]["rows"]
    assert all(row["bit_identical"] is True for row in sardfq)  # the shortcut changed nothing
    assert {row["threads"] for row in sardfq} == {1, 2}
