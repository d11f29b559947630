"""scripts/bench.py: one tiny WGAN-GP row runs in both frameworks and is written as the JSON schema
promises. Times are only checked to be positive: timings are not specifications."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"
FIELDS = {"arch": str, "size": int, "batch": int, "n_critic": int, "threads": int, "device": str,
          "jgan_s": float, "torch_s": float, "speedup": float, "jgan_warmup_s": float,
          "recompiles": int, "kernels_compiled": int, "jgan_peak_mb": float, "torch_peak_mb": float}


def test_a_tiny_row_writes_the_json_schema(tmp_path):
    out = tmp_path / "out.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--archs", "wgan-gp", "--sizes", "32",
                             "--batch", "2", "--repeats", "1", "--warmup", "1", "--check", "1",
                             "--tiny", "--json", str(out)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"bench.py exited with {result.returncode}:\n{result.stderr[-2000:]}"
    assert "wgan-gp" in result.stdout, f"no table row on stdout:\n{result.stdout}"
    rows = json.loads(out.read_text())
    assert len(rows) == 1, f"expected one row, got {len(rows)}"
    row = rows[0]
    for field, kind in FIELDS.items():
        assert isinstance(row.get(field), kind), f"{field} is {row.get(field)!r}, not a {kind.__name__}"
    assert (row["arch"], row["size"], row["batch"], row["n_critic"]) == ("wgan-gp", 32, 2, 5)
    for field in ("jgan_s", "torch_s", "jgan_peak_mb", "torch_peak_mb"):
        assert row[field] > 0, f"{field} is {row[field]}, not positive"
    assert abs(row["speedup"] - row["torch_s"] / row["jgan_s"]) <= 1e-9 * row["speedup"], (
        f"speedup {row['speedup']} is not torch_s / jgan_s = {row['torch_s'] / row['jgan_s']}")
    assert row["recompiles"] >= 0
