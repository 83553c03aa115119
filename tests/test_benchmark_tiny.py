"""The benchmark script, at a tiny size: it runs, and prints every figure it promises."""

import subprocess
import sys


def test_tiny_benchmark_prints_stage_times_delta_and_linkage_ratios(tmp_path) -> None:
    results = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--sizes", "600", "--results", str(results)],
        capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = results.read_text()
    for words in ("Machine:", "full run s", "peak RSS MB", "delta run s", "bare Splink",
                  "recordlinkage", "| 600 |"):
        assert words in text
