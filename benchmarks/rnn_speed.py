"""Speed of memnets' recurrent layers against torch.nn, measured in the same run.

Main table (``results/rnn_speed.json``): LSTM and GRU at a small size
(L=50, N=32, H_in=64, H=128) and a large size (L=100, N=64, H_in=256, H=512),
forward (inference, no autograd graph) and forward+backward, for

* ``torch``   torch.nn.LSTM / torch.nn.GRU,
* ``dropin``  memnets.LSTM / memnets.GRU (dispatches to torch's fused kernel),
* ``generic`` memnets.Recurrent over memnets.LSTMCell / GRUCell (the path every
  other cell takes),
* ``torch_native`` torch.nn with its vendor RNN library disabled (oneDNN on
  CPU, cuDNN on CUDA): torch's own recurrence over the same matrix products
  the generic path uses.  This row separates the cost of the recurrence
  machinery from the speed of a fused vendor kernel.

each as a ratio to torch.nn in the same run.  Implementations are timed in
turn inside each repeat (interleaved), and the median over repeats is kept,
so that drifts of a shared machine hit all of them alike.

``--zoo`` adds every registered cell and stack at the large size,
forward+backward, as a ratio to torch.nn.LSTM (``results/cell_speed.json``).

Usage::

    python benchmarks/rnn_speed.py [--repeats 7] [--zoo] [--out results/rnn_speed.json]
    python benchmarks/rnn_speed.py --device cuda --out results/rnn_speed_cuda.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import memnets
from memnets.train.provenance import cpu_name, git_commit

SIZES = {
    "small": {"L": 50, "N": 32, "H_in": 64, "H": 128},
    "large": {"L": 100, "N": 64, "H_in": 256, "H": 512},
}
TORCH_CLASSES = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
DROPIN_CLASSES = {"lstm": memnets.LSTM, "gru": memnets.GRU}
DEVICE = torch.device("cpu")  # set by --device


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def vendor_flags(enabled: bool):
    """oneDNN on CPU, cuDNN on CUDA: torch.nn's fused vendor RNN kernels."""
    if DEVICE.type == "cuda":
        return torch.backends.cudnn.flags(enabled=enabled)
    return torch.backends.mkldnn.flags(enabled=enabled)


def machine() -> str:
    desc = f"{cpu_name()}, {torch.get_num_threads()} threads, {platform.system()}"
    if DEVICE.type == "cuda":
        desc = f"{torch.cuda.get_device_name(DEVICE)} (CUDA {torch.version.cuda}, " \
               f"cuDNN {torch.backends.cudnn.version()}); host {desc}"
    return desc


def make_step(module, x: torch.Tensor, pass_: str, vendor: bool = True):
    """A callable running one forward (no autograd) or forward+backward pass."""
    params = [p for p in module.parameters() if p.requires_grad]

    def step():
        with vendor_flags(vendor):
            if pass_ == "forward":
                with torch.no_grad():
                    module(x)
                return
            for p in params:
                p.grad = None
            module(x)[0].sum().backward()

    return step


def time_interleaved(steps: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call of each step, timing them in turn in every repeat."""
    for step in steps.values():  # warm-up: allocator, kernels, first-call costs
        step()
    samples = {name: [] for name in steps}
    names = list(steps)
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]  # rotate who goes first
        for name in order:
            sync()
            start = time.perf_counter()
            steps[name]()
            sync()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def main_table(repeats: int) -> list[dict]:
    rows = []
    for cell in ("lstm", "gru"):
        for size, d in SIZES.items():
            torch.manual_seed(0)
            x = torch.randn(d["L"], d["N"], d["H_in"], device=DEVICE)
            impls = {
                "torch": TORCH_CLASSES[cell](d["H_in"], d["H"]),
                "dropin": DROPIN_CLASSES[cell](d["H_in"], d["H"]),
                "generic": memnets.Recurrent(
                    memnets.make_cell(cell, input_size=d["H_in"], hidden_size=d["H"])
                ),
            }
            impls = {k: m.to(DEVICE) for k, m in impls.items()}
            for pass_ in ("forward", "forward_backward"):
                steps = {name: make_step(m, x, pass_) for name, m in impls.items()}
                steps["torch_native"] = make_step(impls["torch"], x, pass_, vendor=False)
                seconds = time_interleaved(steps, repeats)
                for impl, s in seconds.items():
                    rows.append({
                        "cell": cell, "size": size, "pass": pass_, "impl": impl,
                        "seconds": round(s, 6), "ratio_to_torch": round(s / seconds["torch"], 3),
                    })
                    print(f"{cell:5s} {size:5s} {pass_:16s} {impl:12s} {s * 1000:9.2f} ms "
                          f"{s / seconds['torch']:6.2f}x", flush=True)
    return rows


def zoo_table(repeats: int) -> list[dict]:
    d = SIZES["large"]
    torch.manual_seed(0)
    x = torch.randn(d["L"], d["N"], d["H_in"], device=DEVICE)
    designs = {"torch.nn.LSTM": torch.nn.LSTM(d["H_in"], d["H"])}
    for name in memnets.cell_names():
        cell = memnets.make_cell(name, input_size=d["H_in"], hidden_size=d["H"])
        designs[f"cell:{name}"] = memnets.Recurrent(cell)
    for name in memnets.stack_names():
        stack = memnets.make_stack(name, input_size=d["H_in"], hidden_size=d["H"], num_layers=2)
        if isinstance(stack, memnets.RecurrentCell):
            stack = memnets.Recurrent(stack)
        designs[f"stack:{name} (2 layers)"] = stack
    designs = {k: m.to(DEVICE) for k, m in designs.items()}
    rows = []
    base = None
    for name, module in designs.items():
        # one design at a time against torch.nn.LSTM, interleaved, so each
        # ratio comes from a paired measurement
        pair = {"torch.nn.LSTM": designs["torch.nn.LSTM"], name: module}
        steps = {k: make_step(m, x, "forward_backward") for k, m in pair.items()}
        seconds = time_interleaved(steps, repeats)
        base = seconds["torch.nn.LSTM"]
        n_params = sum(p.numel() for p in module.parameters())
        rows.append({"design": name, "seconds": round(seconds[name], 6),
                     "ratio_to_torch_lstm": round(seconds[name] / base, 3),
                     "parameters": n_params})
        print(f"{name:32s} {seconds[name] * 1000:9.1f} ms {seconds[name] / base:6.2f}x "
              f"{n_params:>10,d} parameters", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="results/rnn_speed.json")
    parser.add_argument("--zoo", action="store_true", help="also time every registered design")
    parser.add_argument("--zoo-out", default="results/cell_speed.json")
    parser.add_argument("--zoo-repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    start = time.perf_counter()
    header = {"machine": machine(), "torch": torch.__version__,
              "commit": git_commit(Path(__file__).parent),
              "device": str(DEVICE),
              "command": "python benchmarks/rnn_speed.py" + (" --zoo" if args.zoo else "")
              + (f" --device {args.device}" if DEVICE.type != "cpu" else "")}
    rows = main_table(args.repeats)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(
        {**header, "repeats": args.repeats,
         "wall_seconds": round(time.perf_counter() - start, 1), "rows": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")
    if args.zoo:
        zoo_start = time.perf_counter()
        zoo = zoo_table(args.zoo_repeats)
        Path(args.zoo_out).write_text(json.dumps(
            {**header, "size": SIZES["large"], "pass": "forward_backward",
             "repeats": args.zoo_repeats,
             "wall_seconds": round(time.perf_counter() - zoo_start, 1), "rows": zoo},
            indent=1) + "\n")
        print(f"wrote {args.zoo_out}")


if __name__ == "__main__":
    main()
