"""Write results/babi.md from results/babi.json (and attention examples from a run).

    python scripts/babi_results_md.py --explain-run runs/babi/en/seed0 --task 2 --task 16

The notes section comes from ``--notes FILE`` (Markdown) when given; without it,
the ``## Notes`` section of the page being replaced is kept.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from memnets.data.babi import TASK_NAMES

TARGETS = {
    "en": "mean test error <= 12.4% with <= 10 failed tasks (goal <= 11%)",
    "en-10k": "mean test error <= 4.2% on the tasks present (the paper's best 10k result)",
}
ENCODING_NAMES = {"bow": "BoW", "pe": "PE (the paper's form)",
                  "pe_centered": "PE in the released code's centred form"}
TITLES = {"en": "1k (en), 20 tasks jointly", "en-10k": "10k (en-10k), tasks jointly"}


def section(key: str, s: dict) -> str:
    out = [f"## {TITLES.get(key, key)}", ""]
    cfg = s["config"]
    m, o, sch, tr = cfg["model"], cfg["optimizer"], cfg["schedule"], cfg["trainer"]
    ls = (f"for {m['ls_epochs']} epochs" if m["ls_epochs"]
          else "until the dev loss stops falling")
    out += [
        f"Command: `python {s['command']}` (git {s['git_commit']}).",
        "",
        f"Model: MemN2N, {m['hops']} hops, {ENCODING_NAMES.get(m['encoding'], m['encoding'])}"
        f"{' with one J (the longest sentence)' if m.get('pe_width') == 'max' else ''}, temporal "
        f"{'with' if m['temporal'] else 'without'} random noise {m['random_noise']}, "
        f"{m['tying']} tying"
        f"{' with the map H between hops' if m.get('hop_map') and m['tying'] == 'adjacent' else ''}"
        f"{', ReLU after each hop' if m.get('nonlinearity') == 'relu' else ''}"
        f", d = {m['embed_dim']}, "
        f"{'empty memories' if m.get('empty_memories') else 'padded slots masked'}, linear start "
        f"{ls}"
        f" (lr x {m['ls_lr_scale']}); SGD lr {o['lr']}, clip {o['grad_clip']}, batch "
        f"{cfg['data']['batch_size']}, loss summed over the batch, {tr['max_epochs']} epochs, lr x "
        f"{sch['gamma']} at epoch {sch['start_epoch']} and every {sch['step_size']} after.",
        "",
        f"Repeats: {s['repeats']} (seeds {', '.join(str(r['seed']) for r in s['runs'])}); kept: "
        f"seed {s['selected_seed']}, the lowest dev (10% of train) mean task error.",
        "",
        "| seed | dev mean error % | test mean error % | wall s |",
        "|---:|---:|---:|---:|",
    ]
    for r in s["runs"]:
        out.append(f"| {r['seed']} | {r['dev_mean_task_error']:.2f} | "
                   f"{r['test_mean_task_error']:.2f} | {r['wall_seconds']:.0f} |")
    paper = {int(k): v for k, v in s.get("paper_per_task_error", {}).items()}
    out += ["", "| task | ours: test error % | paper: test error % |", "|---|---:|---:|"]
    for t in range(1, 21):
        ours = s["per_task_error"].get(str(t))
        ours_s = "not run (train file missing)" if ours is None else f"{ours:.1f}"
        fail = " (failed)" if ours is not None and ours > 5 else ""
        theirs = f"{paper[t]:.1f}" if t in paper else "-"
        out.append(f"| {t}: {TASK_NAMES[t]} | {ours_s}{fail} | {theirs} |")
    n = s["tasks_present"]
    paper_mean = (f"{sum(paper.values()) / len(paper):.1f}" if len(paper) == 20 else "4.2"
                  if key == "en-10k" else "-")
    out += [
        f"| **mean over {n} tasks** | **{s['mean_error']:.2f}** | {paper_mean} |",
        f"| failed tasks (> 5%) | {s['failed_tasks']} | |",
        "",
        f"Target: {TARGETS.get(key, '-')}.",
        "",
        f"Wall time of the reproduction: {s['wall_seconds']:.0f} s ({s['wall_seconds'] / 60:.1f} "
        f"min) summed over {s['repeats']} run(s), on {s['machine']}, 1 thread each "
        "(OMP_NUM_THREADS=1), 2 cores shared with other jobs; runs that ran side by side "
        "took less time from start to end than the sum.",
        "",
    ]
    if s.get("missing_tasks"):
        out += [f"Tasks not covered: {s['missing_tasks']} (the project's copy of en-10k lacks "
                "task 3's train file); the mean is over the tasks present.", ""]
    return "\n".join(out)


def lstm_section(key: str, s: dict) -> str:
    """The LSTM baseline's per-task table (``scripts/babi_lstm_baseline.py``)."""
    m = s["model"]
    paper = {int(k): v for k, v in s.get("paper_per_task_error", {}).items()}
    out = [f"## LSTM baseline ({key.split('-', 1)[1]}, each task alone)", "",
           f"Command: `{s['command']}` (git {s['git_commit']}); recipe `{s['recipe']}`: "
           f"the story's words then the question's, read by one {m['cell'].upper()} of "
           f"{m['hidden_size']} units over {m['embed_dim']}-d embeddings, the last state "
           "classified (Weston et al. 2015's baseline; Adam, not their SGD).", "",
           "| task | ours: test error % | Weston et al. 2015 LSTM |", "|---|---:|---:|"]
    for t in range(1, 21):
        ours = s["per_task_error"].get(str(t))
        ours_s = "-" if ours is None else f"{ours:.1f}"
        theirs = f"{paper[t]:.1f}" if t in paper else "-"
        out.append(f"| {t}: {TASK_NAMES[t]} | {ours_s} | {theirs} |")
    paper_mean = f"{sum(paper.values()) / len(paper):.1f}" if len(paper) == 20 else "-"
    out += [f"| **mean over {len(s['per_task_error'])} tasks** | **{s['mean_error']:.2f}** | "
            f"{paper_mean} |",
            f"| failed tasks (> 5%) | {s['failed_tasks']} | |", "",
            f"Wall time: {s['wall_seconds']:.0f} s for the {len(s['per_task_error'])} runs "
            f"({s['machine']}).", ""]
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default="results/babi.json")
    p.add_argument("--out", default="results/babi.md")
    p.add_argument("--explain-run")
    p.add_argument("--task", type=int, action="append", default=[])
    p.add_argument("--notes", help="a Markdown file appended as the notes section "
                   "(default: keep the notes of the page being replaced)")
    args = p.parse_args(argv)
    data = json.loads(Path(args.results).read_text())
    parts = ["# bAbI: end-to-end memory networks (Sukhbaatar et al. 2015)", "",
             "Test error (%) per task; a task fails above 5%. Produced by "
             "`scripts/babi_reproduce.py` (training) and `scripts/babi_results_md.py` "
             "(this page); the LSTM baseline by `scripts/babi_lstm_baseline.py`; machine: "
             "2 CPU cores, no GPU.", ""]
    for key in ("en", "en-10k"):
        if key in data:
            parts.append(section(key, data[key]))
    for key in ("lstm-en", "lstm-en-10k"):
        if key in data:
            parts.append(lstm_section(key, data[key]))
    if args.explain_run and args.task:
        folder = Path(args.out).parent
        texts = []
        for t in args.task:
            png = folder / f"babi_attention_task{t}.png"
            cmd = [sys.executable, "-m", "memnets", "predict", args.explain_run,
                   "--test-task", str(t), "--png", str(png)]
            texts.append(subprocess.run(cmd, capture_output=True, text=True,
                                        check=True).stdout.rstrip())
        parts += ["## Which sentence each hop reads", "",
                  f"`memnets predict {args.explain_run} --test-task T --png "
                  f"{folder}/babi_attention_taskT.png` for T in "
                  + ", ".join(str(t) for t in args.task)
                  + ": the first test question of each task; `*` marks the supporting "
                  "facts, `<` each hop's largest weight.", "", "```", "\n\n".join(texts),
                  "```", ""]
        parts += [f"![task {t}](babi_attention_task{t}.png)" for t in args.task] + [""]
    old_page = Path(args.out).read_text() if Path(args.out).is_file() else ""
    if args.notes:
        parts += [Path(args.notes).read_text()]
    elif "\n## Notes\n" in old_page:
        parts += ["## Notes\n" + old_page.split("\n## Notes\n", 1)[1]]
    Path(args.out).write_text("\n".join(parts).rstrip() + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
