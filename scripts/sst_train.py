"""Train a recurrent sentiment classifier on SST-2 or SST-5 and write a JSON log.

The same model and data as the ``sst*`` recipes (``memnets train sst2_bilstm``),
in a compact loop made for this 2-core CPU: batches of similar lengths
(examples sorted by length inside shuffled pools), a sparse embedding updated
by SparseAdam and Adam for the rest, dev accuracy measured ``--evals-per-epoch``
times per epoch, and test accuracy of the best-dev weights.

Usage::

    OMP_NUM_THREADS=1 python scripts/sst_train.py --classes 2 --bidirectional --phrases \\
        --out runs/sst/sst2_bilstm_phrases.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from memnets.data.sst import load_sst
from memnets.data.vocab import Vocab
from memnets.models.classifier import SequenceClassifier, load_word_vectors


def make_batches(examples, vocab, batch_size, *, shuffle, rng, pool=50):
    """Length-bucketed batches ``(tokens (N, T), lengths (N,), labels (N,))``."""
    order = list(range(len(examples)))
    if shuffle:
        rng.shuffle(order)
    chunks = [order[i:i + batch_size * pool] for i in range(0, len(order), batch_size * pool)]
    batches = []
    for chunk in chunks:
        chunk.sort(key=lambda i: len(examples[i][0]))
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    for idx in batches:
        lengths = torch.tensor([len(examples[i][0]) for i in idx])
        x = torch.full((len(idx), int(lengths.max())), vocab.pad_id, dtype=torch.long)
        for row, i in enumerate(idx):
            x[row, : lengths[row]] = torch.tensor(vocab.encode(examples[i][0]))
        yield x, lengths, torch.tensor([examples[i][1] for i in idx])


def predict(model, examples, vocab, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities ``(N, C)`` and gold labels ``(N,)``, in the examples' order."""
    model.eval()
    probs, gold = [], []
    with torch.no_grad():
        for x, lengths, y in make_batches(examples, vocab, 256, shuffle=False, rng=None):
            probs.append(model(x.to(device), lengths).softmax(-1).float().cpu())
            gold.append(y)
    model.train()
    return torch.cat(probs), torch.cat(gold)


def accuracy(model, examples, vocab, device="cpu") -> float:
    probs, gold = predict(model, examples, vocab, device)
    return 100.0 * float((probs.argmax(-1) == gold).float().mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.environ.get("MEMNETS_DATA", "../shared/data") + "/sst")
    ap.add_argument("--classes", type=int, choices=(2, 5), default=2)
    ap.add_argument("--phrases", action="store_true", help="train on every labelled phrase")
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--bidirectional", action="store_true")
    ap.add_argument("--pooling", default="max")
    ap.add_argument("--embedding", type=int, default=300)
    ap.add_argument("--hidden", type=int, default=168)
    ap.add_argument("--embedding-dropout", type=float, default=0.5)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--vectors", default=None, help="GloVe-format text file (optional)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--embedding-lr", type=float, default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--evals-per-epoch", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--save-probs", action="store_true",
                    help="also store dev/test class probabilities of the kept weights "
                         "(for scripts/sst_ensemble.py)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    torch.set_num_threads(1)
    t0 = time.time()
    data = load_sst(args.data, fine=args.classes == 5, phrases=args.phrases)
    vocab = Vocab.build(t for t, _ in data["train"])
    pretrained, found = None, 0
    if args.vectors:
        pretrained, found = load_word_vectors(args.vectors, vocab, dim=args.embedding)
    model = SequenceClassifier(
        len(vocab), args.embedding, args.hidden, args.classes, cell=args.cell,
        bidirectional=args.bidirectional, pooling=args.pooling,
        embedding_dropout=args.embedding_dropout, dropout=args.dropout,
        padding_idx=vocab.pad_id, pretrained=pretrained).to(args.device)
    # the embedding's gradient is sparse (only the rows of the batch's words)
    model.embedding.sparse = True
    emb = [model.embedding.weight]
    rest = [p for n, p in model.named_parameters() if n != "embedding.weight"]
    opts = [torch.optim.SparseAdam(emb, lr=args.embedding_lr or args.lr),
            torch.optim.Adam(rest, lr=args.lr)]
    log = {"args": vars(args), "vocab": len(vocab), "train_examples": len(data["train"]),
           "vectors_found": found, "evals": []}
    n_batches = -(-len(data["train"]) // args.batch)
    every = max(1, n_batches // args.evals_per_epoch)
    best, best_state, step = -1.0, None, 0
    for epoch in range(1, args.epochs + 1):
        total, count = 0.0, 0
        for x, lengths, y in make_batches(data["train"], vocab, args.batch, shuffle=True,
                                          rng=rng):
            x, y = x.to(args.device), y.to(args.device)
            loss = F.cross_entropy(model(x, lengths), y)
            for o in opts:
                o.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(rest, 5.0)
            for o in opts:
                o.step()
            step += 1
            total += loss.item() * len(y)
            count += len(y)
            if step % every == 0:
                dev = accuracy(model, data["dev"], vocab, args.device)
                entry = {"epoch": epoch, "step": step, "train_loss": total / count,
                         "dev_accuracy": dev, "seconds": time.time() - t0}
                log["evals"].append(entry)
                print(json.dumps(entry), flush=True)
                if dev > best:
                    best, best_state = dev, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    log["dev_accuracy"] = accuracy(model, data["dev"], vocab, args.device)
    log["test_accuracy"] = accuracy(model, data["test"], vocab, args.device)
    if args.save_probs:
        for split in ("dev", "test"):
            probs, gold = predict(model, data[split], vocab, args.device)
            log[f"{split}_probs"] = [[round(v, 5) for v in row] for row in probs.tolist()]
            log[f"{split}_labels"] = gold.tolist()
    log["wall_seconds"] = time.time() - t0
    log["command"] = " ".join(["python", *sys.argv])
    log["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True,
                                       text=True).stdout.strip()
    gpu = (torch.cuda.get_device_name(args.device) if str(args.device).startswith("cuda")
           else "no GPU")
    log["machine"] = f"{platform.node()}: {os.cpu_count()} CPU cores, {gpu}, " \
                     f"torch {torch.__version__}, 1 thread"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(log, indent=1))
    print(json.dumps({k: log[k] for k in ("dev_accuracy", "test_accuracy", "wall_seconds")}),
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
