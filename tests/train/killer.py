"""Run the ``memnets`` command line and SIGKILL the process at a chosen point.

Used by the resume tests, as ``python killer.py POINT N ARGS...``: ``ARGS`` go to
``memnets``; the process kills itself with SIGKILL (no clean-up, as a power cut
or the OOM killer would) at the ``N``-th checkpoint (1-based), at ``POINT``:

* ``after``: once that checkpoint and its pointers are completely written;
* ``before-pointer``: its folder is in place, its pointers not yet written;
* ``mid-folder``: its ``model.safetensors`` is written, the rest not yet;
* ``folder-rename``: its folder is complete under the temporary name, about to be
  renamed into place.

Nothing here is part of memnets; it patches the checkpoint module from outside.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    point, n, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    from memnets.train import checkpoint as ckpt
    from memnets.train import trainer

    count = {"checkpoints": 0, "files": 0}

    def die():
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    real_save, real_pointer = ckpt.save_checkpoint, ckpt.atomic_write_text
    real_file = ckpt.save_file

    def save_checkpoint(*a, **k):
        count["checkpoints"] += 1
        count["files"] = 0
        out = real_save(*a, **k)
        if point == "after" and count["checkpoints"] == n:
            die()
        return out

    def atomic_write_text(path, text):
        if (point == "before-pointer" and count["checkpoints"] == n
                and os.path.basename(path) in ("latest.json", "best.json")):
            die()
        real_pointer(path, text)

    def save_file(tensors, path):
        count["files"] += 1
        if point == "mid-folder" and count["checkpoints"] == n and count["files"] == 2:
            die()
        real_file(tensors, path)

    real_replace = os.replace

    def replace(src, dst):
        if (point == "folder-rename" and count["checkpoints"] == n
                and os.path.basename(dst).startswith("step-")):
            die()
        real_replace(src, dst)

    os.replace = replace  # the checkpoint module calls os.replace
    if point not in ("after", "before-pointer", "mid-folder", "folder-rename"):
        raise SystemExit(f"unknown kill point {point!r}")
    ckpt.save_checkpoint, ckpt.atomic_write_text, ckpt.save_file = (
        save_checkpoint, atomic_write_text, save_file)
    trainer.save_checkpoint = save_checkpoint
    from memnets.cli import main as memnets_main

    raise SystemExit(memnets_main(args))


if __name__ == "__main__":
    main()
