"""Train a word-level language model on Penn Treebank with truncated BPTT.

The defaults are Zaremba, Sutskever & Vinyals (2014)'s small model: 2 x 200
LSTM, no dropout, 13 epochs, SGD lr 1 halved every epoch after the 4th,
gradient norm clipped at 5, batch 20, 20 unrolled steps, U(-0.1, 0.1) init,
loss summed over the unrolled steps and averaged over the batch (as in their
code; the gradient scale matters for lr 1 and clip 5).  The same hyperparameters
are in ``src/memnets/recipes/ptb_small.yaml``.

Usage::

    OMP_NUM_THREADS=1 python scripts/ptb_train.py --out runs/ptb_small.json
    # the clipping experiment (same budget for all three):
    python scripts/ptb_train.py --cell elman --layers 1 --clip 0 --max-steps 2000 ...

Writes a JSON log: per-epoch learning rate and train/valid perplexity, a
training curve (mean train loss every ``--log-every`` steps), the final
valid/test perplexity of the weights with the best valid perplexity, wall
seconds, command, git commit and machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from memnets.data.ptb import batchify, bptt_segments, load_ptb, num_segments
from memnets.metrics.lm import perplexity
from memnets.models.language_model import RNNLanguageModel


def evaluate(model, streams, bptt) -> float:
    """Mean nll (nats) over every target of ``streams``, state carried across segments."""
    model.eval()
    total, count, state = 0.0, 0, None
    with torch.no_grad():
        for x, y in bptt_segments(streams, bptt):
            loss, state = model.loss(x, y, state)
            total += loss.item() * y.numel()
            count += y.numel()
    model.train()
    return total / count


def write_log(args, log: dict, *, complete: bool) -> None:
    log["complete"] = complete
    log["command"] = " ".join(["python", *sys.argv])
    log.setdefault("git_commit", subprocess.run(["git", "rev-parse", "HEAD"],
                                                capture_output=True, text=True).stdout.strip())
    log["machine"] = f"{platform.node()}: {os.cpu_count()} CPU cores, no GPU, " \
                     f"torch {torch.__version__}, {args.threads} thread(s)"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(log, indent=1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("MEMNETS_DATA", "../shared/data") + "/ptb")
    ap.add_argument("--level", default="word", choices=("word", "char"),
                    help="word-level PTB, or its characters ('_' between words)")
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--nonlinearity", default=None, help="for --cell elman: tanh or relu")
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--epochs", type=int, default=13)
    ap.add_argument("--lr", type=float, default=1.0)
    ap.add_argument("--decay", type=float, default=0.5)
    ap.add_argument("--decay-after", type=int, default=4)
    ap.add_argument("--clip", type=float, default=5.0, help="max gradient norm; 0 = no clipping")
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--bptt", type=int, default=20)
    ap.add_argument("--init", type=float, default=0.1)
    ap.add_argument("--loss", default="sequence", choices=("sequence", "token"),
                    help="minimise the loss summed over the unrolled steps, or per token")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many updates")
    ap.add_argument("--valid-every", type=int, default=0,
                    help="also measure valid perplexity every this many updates")
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--test-each-epoch", action="store_true",
                    help="measure test perplexity whenever valid perplexity improves")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    corpus = load_ptb(args.data, level=args.level)
    V = len(corpus.vocab)
    train = batchify(corpus["train"], args.batch)
    valid = batchify(corpus["valid"], args.batch)
    test = batchify(corpus["test"], args.batch)
    options = {"nonlinearity": args.nonlinearity} if args.nonlinearity else {}
    model = RNNLanguageModel(V, args.hidden, args.hidden, args.layers, cell=args.cell,
                             dropout=args.dropout, init_range=args.init, **options)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    log = {"args": vars(args), "epochs": [], "curve": [], "valid_curve": []}
    best, best_state, step, diverged = math.inf, None, 0, False
    steps_per_epoch = num_segments(train, args.bptt)
    for epoch in range(1, args.epochs + 1):
        lr = args.lr * args.decay ** max(epoch - args.decay_after, 0)
        for g in opt.param_groups:
            g["lr"] = lr
        state, ep_loss, ep_count, win_loss, win_n = None, 0.0, 0, 0.0, 0
        te = time.time()
        for x, y in bptt_segments(train, args.bptt):
            state = model.detach_state(state)
            loss, state = model.loss(x, y, state)
            opt.zero_grad()
            # "sequence": summed over the steps, mean over the batch (Zaremba et al.)
            (loss * x.shape[1] if args.loss == "sequence" else loss).backward()
            if args.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            step += 1
            value = loss.item()
            if not math.isfinite(value):
                diverged = True
                break
            ep_loss += value * y.numel()
            ep_count += y.numel()
            win_loss += value
            win_n += 1
            if step % args.log_every == 0:
                log["curve"].append({"step": step, "train_loss": win_loss / win_n})
                print(f"epoch {epoch} step {step} ({step / steps_per_epoch:.2f} ep) "
                      f"train ppl {perplexity(win_loss / win_n):.1f} "
                      f"{time.time() - te:.0f}s", flush=True)
                win_loss, win_n = 0.0, 0
            if args.valid_every and step % args.valid_every == 0:
                v = evaluate(model, valid, args.bptt)
                log["valid_curve"].append({"step": step, "valid_loss": v})
            if args.max_steps and step >= args.max_steps:
                break
        if diverged:
            print(f"diverged at step {step}", flush=True)
            break
        v = evaluate(model, valid, args.bptt)
        entry = {"epoch": epoch, "lr": lr, "train_perplexity": perplexity(ep_loss / ep_count),
                 "valid_perplexity": perplexity(v), "seconds": time.time() - te, "step": step}
        if v < best:
            best, best_state = v, copy.deepcopy(model.state_dict())
            if args.test_each_epoch:  # so that a run cut short still has a result
                entry["test_perplexity"] = perplexity(evaluate(model, test, args.bptt))
        log["epochs"].append(entry)
        print(json.dumps(entry), flush=True)
        log["wall_seconds"] = time.time() - t0
        write_log(args, log, complete=False)
        if args.max_steps and step >= args.max_steps:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
        log["valid_perplexity"] = perplexity(evaluate(model, valid, args.bptt))
        log["test_perplexity"] = perplexity(evaluate(model, test, args.bptt))
    log["diverged"] = diverged
    log["steps"] = step
    log["wall_seconds"] = time.time() - t0
    write_log(args, log, complete=True)
    print(json.dumps({k: log.get(k) for k in ("valid_perplexity", "test_perplexity",
                                              "wall_seconds")}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
