"""The benchmark script, at a tiny size: it runs, and writes every figure it promises."""

import subprocess
import sys


def test_tiny_benchmark_writes_each_run_linkage_blocking_and_targets(tmp_path) -> None:
    results = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--sizes", "600", "--weeks", "1",
         "--results", str(results)],
        capture_output=True, text=True, check=False, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = results.read_text()
    for words in ("Machine:", "Date:", "| 600 | full |", "| 600 | week 1 |", "peak RSS MB",
                  "person_id churn", "incremental F1", "full relink F1",
                  "Comparisons per blocking rule", "**all rules**", "bare Splink",
                  "recordlinkage", "incremental F1 within 0.002", "Where the time goes"):
        assert words in text, words
