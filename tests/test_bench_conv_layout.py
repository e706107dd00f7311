"""bench/bench_conv_layout.py runs end to end at tiny scale and prints each figure it promises: both layouts, the
folded frozen layers (what AddressCLIP runs), bf16 autocast and the step with the pooled gradient channels-last, each
with how far the outputs move."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_conv_layout_prints_every_comparison():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_conv_layout.py"), "--threads", "1",
                           "--batch-size", "20", "--repeats", "1", "--bf16", "--chunk", "--pool-grad"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "frozen layers, forward: NCHW" in out and "training step of the last 1 block(s) + head: NCHW" in out
    folded = re.search(r"batch norms apart [\d.]+ ms, folded [\d.]+ ms, [\d.]+x; largest difference of the outputs (\S+)", out)
    assert folded and float(folded.group(1)) < 1e-3  # folding moves the frozen outputs by rounding only
    chunked = re.search(r"batch of 20 in one pass [\d.]+ ms, in chunks of \d+ [\d.]+ ms, [\d.]+x; (.+)", out)
    assert chunked and (chunked.group(1) == "the same bits" or float(chunked.group(1).split()[-1]) < 1e-3)
    assert out.count("bf16 autocast") == 2 and "largest difference of the bf16 frozen outputs" in out
    turned = re.search(r"as AddressCLIP runs it [\d.]+ ms, pooled gradient channels-last [\d.]+ ms, [\d.]+x \(medians of 3 "
                       r"alternating rounds\); gradients (.+)", out)
    assert turned and (turned.group(1) == "the same bits" or float(turned.group(1).split()[-1].rstrip(")")) < 1e-3)
