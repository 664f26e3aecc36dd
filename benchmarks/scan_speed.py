"""Parallel against step mode for the cells with a whole-sequence form, and both
against torch.nn.LSTM, measured in the same run.

For each length T (default 512, 2048, 4096) and each cell with a parallel form
(``mingru``, ``minlstm``, ``mlstm``), forward+backward through
``memnets.Recurrent`` in ``mode="parallel"`` and in ``mode="step"`` (the same
parameters), timed in turn with ``torch.nn.LSTM`` of the same input and hidden
size (oneDNN's fused kernel on CPU, cuDNN on CUDA); ``sLSTM``, which has no
parallel form, is timed in its one mode.  Rows give milliseconds, the
step/parallel speed-up and each design's time as a ratio to torch.nn.LSTM.

Feng et al. 2024 ("Were RNNs all we needed?") report the parallel minGRU/minLSTM
175x faster than their step mode at T = 512 and about 1300x at T = 4096, on a
GPU; this script gives ours on the machine it runs on.

Usage::

    python benchmarks/scan_speed.py [--lengths 512,2048,4096] [--batch 16]
        [--hidden 128] [--repeats 3] [--out results/scan_speed.json]
    python benchmarks/scan_speed.py --device cuda --out results/scan_speed_cuda.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import rnn_speed  # noqa: E402  (the timing helpers shared by the benchmarks)

import memnets  # noqa: E402
from memnets.train.provenance import git_commit  # noqa: E402

# options beyond the mode; mLSTM with the paper's four heads
CELLS = {"mingru": {}, "minlstm": {}, "mlstm": {"num_heads": 4}}


def designs(T: int, N: int, H: int) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    out = {"torch.nn.LSTM": torch.nn.LSTM(H, H)}
    for name, options in CELLS.items():
        for mode in ("parallel", "step"):
            cell = memnets.make_cell(name, input_size=H, hidden_size=H, mode=mode, **options)
            out[f"{name} {mode}"] = memnets.Recurrent(cell)
    out["slstm step"] = memnets.Recurrent(
        memnets.make_cell("slstm", input_size=H, hidden_size=H, num_heads=4))
    return {k: m.to(rnn_speed.DEVICE) for k, m in out.items()}


def table(lengths: list[int], N: int, H: int, repeats: int) -> list[dict]:
    rows = []
    for T in lengths:
        x = torch.randn(T, N, H, device=rnn_speed.DEVICE)
        mods = designs(T, N, H)
        steps = {k: rnn_speed.make_step(m, x, "forward_backward") for k, m in mods.items()}
        seconds = rnn_speed.time_interleaved(steps, repeats)
        base = seconds["torch.nn.LSTM"]
        for name, s in seconds.items():
            cell, _, mode = name.partition(" ")
            row = {"T": T, "N": N, "H": H, "design": name, "seconds": round(s, 6),
                   "ratio_to_torch_lstm": round(s / base, 3)}
            if mode == "parallel":
                row["step_over_parallel"] = round(seconds[f"{cell} step"] / s, 2)
            rows.append(row)
            extra = (f"  step/parallel {row['step_over_parallel']:7.2f}x"
                     if "step_over_parallel" in row else "")
            print(f"T={T:5d} {name:16s} {s * 1000:10.1f} ms {s / base:7.2f}x torch.nn.LSTM"
                  f"{extra}", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", default="512,2048,4096")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--hidden", type=int, default=128, help="input and hidden size")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--out", default="results/scan_speed.json")
    args = p.parse_args()
    rnn_speed.DEVICE = torch.device(args.device)
    start = time.perf_counter()
    lengths = [int(t) for t in args.lengths.split(",")]
    rows = table(lengths, args.batch, args.hidden, args.repeats)
    header = {"machine": rnn_speed.machine(), "torch": torch.__version__,
              "commit": git_commit(Path(__file__).parent), "device": str(rnn_speed.DEVICE),
              "command": "python benchmarks/scan_speed.py " + " ".join(sys.argv[1:]),
              "pass": "forward_backward", "repeats": args.repeats,
              "wall_seconds": round(time.perf_counter() - start, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**header, "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
