"""bAbI reader, task metrics, explanation and download (against a local server)."""

from __future__ import annotations

import functools
import http.server
import io
import os
import tarfile
import threading
from pathlib import Path

import pytest
import torch

from memnets.data.babi import (
    BABI_SHA256,
    BabiFormatError,
    EncodedSet,
    build_vocab,
    encode,
    ensure_babi,
    load_babi,
    parse_lines,
    task_file,
    tokenize,
)
from memnets.data.paths import DataError
from memnets.data.vocab import PAD
from memnets.tasks.babi import (
    BabiDataConfig,
    BabiModelConfig,
    BabiTask,
    attention_heatmap,
    attention_table,
    read_story_file,
)

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("MEMNETS_DATA", REPO.parent / "shared" / "data"))
BABI = DATA / "babi" / "tasks_1-20_v1-2"
needs_data = pytest.mark.skipif(not (BABI / "en").is_dir(),
                                reason=f"bAbI not found under {BABI} (set MEMNETS_DATA)")

STORY = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Sandra moved to the garden.
6 Where is Daniel? \thallway\t4
1 Mary got the milk there.
2 What is Mary carrying?\tmilk\t1
3 John took the apple.
4 Mary picked up the football.
5 What is Mary carrying?\tmilk,football\t1 4
"""


def test_parse_stories_questions_answers_and_supporting_facts():
    ex = parse_lines(STORY.splitlines(), task=8, name="t.txt")
    assert len(ex) == 4
    assert ex[0].story == (("mary", "moved", "to", "the", "bathroom"),
                           ("john", "went", "to", "the", "hallway"))
    assert ex[0].question == ("where", "is", "mary") and ex[0].answer == ("bathroom",)
    assert ex[0].supporting == (0,)
    # questions are not memories: the second question sees 4 statements
    assert len(ex[1].story) == 4 and ex[1].supporting == (2,)
    # a new story starts at ID 1
    assert ex[2].story == (("mary", "got", "the", "milk", "there"),)
    assert ex[3].answer == ("milk", "football") and ex[3].answer_label == "milk,football"
    assert ex[3].supporting == (0, 2) and ex[3].source == "t.txt:11"


def test_memory_keeps_the_most_recent_sentences():
    lines = [f"{i} Mary went to room{i}." for i in range(1, 61)]
    lines.append("61 Where is Mary?\troom60\t60 5")
    (ex,) = parse_lines(lines, memory_size=50)
    assert len(ex.story) == 50
    assert ex.story[0][-1] == "room11" and ex.story[-1][-1] == "room60"
    assert ex.supporting == (49,)  # sentence 5 fell out of the window


@pytest.mark.parametrize("line, message", [
    ("Mary moved to the bathroom.", r"bad\.txt:2: expected 'ID text' with a numeric ID"),
    ("5 Mary moved.", r"bad\.txt:2: expected line ID 1 or 2, got 5"),
    ("2 Where is Mary?\tbathroom", r"bad\.txt:2: expected 'ID question<TAB>answer<TAB>"),
    ("2 Where is Mary?\tbathroom\tone", r"bad\.txt:2: expected supporting fact IDs as int"),
    ("2 Where is Mary?\tbathroom\t7", r"bad\.txt:2: supporting fact IDs \[7\] are not"),
])
def test_malformed_line_names_file_and_line(line, message):
    with pytest.raises(BabiFormatError, match=message):
        parse_lines(["1 John went home.", line], name="bad.txt")


def test_tokenize_drops_punctuation_and_lowercases():
    assert tokenize("Where is Mary?") == ["where", "is", "mary"]
    assert tokenize("John went to the hallway.") == ["john", "went", "to", "the", "hallway"]


def test_encode_pads_and_encoded_set_trims_to_the_batch():
    ex = parse_lines(STORY.splitlines(), task=8)
    vocab = build_vocab(ex)
    b = encode(ex, vocab)
    assert b.story.shape == (4, 4, 6) and b.story_lengths.tolist() == [2, 4, 1, 3]
    assert vocab.decode(b.story[0, 1].tolist()) == ["john", "went", "to", "the", "hallway", PAD]
    assert vocab.itos[int(b.answer[3])] == "milk,football"
    assert int(b.story[0, 2:].abs().sum()) == 0  # padding memories are all zero
    enc = EncodedSet(ex, vocab)
    sub = enc.batch(torch.tensor([2]))
    assert sub.story.shape == (1, 1, 5) and sub.question.shape == (1, 4)


def test_missing_10k_task3_gets_a_clear_message(tmp_path):
    (tmp_path / "en-10k").mkdir()
    with pytest.raises(FileNotFoundError, match="lacks this 5.3 MB file.*missing='skip'"):
        task_file(tmp_path, 3, "train", "en-10k")
    with pytest.raises(ValueError, match="expected a bAbI task in 1..20, got 21"):
        task_file(tmp_path, 21, "train")


@needs_data
def test_real_files_split_and_joint_counts():
    s = load_babi(BABI, [1, 8], "en")
    assert (len(s.train), len(s.valid), len(s.test)) == (1800, 200, 2000)
    assert s.tasks == [1, 8] and s.missing == []
    train_q = {(e.task, e.source) for e in s.train}
    assert not train_q & {(e.task, e.source) for e in s.valid}  # held out, not copied
    s10 = load_babi(BABI, [2, 3], "en-10k", missing="skip")
    assert s10.tasks == [2] and s10.missing == [3] and len(s10.train) == 9000
    with pytest.raises(FileNotFoundError, match="task 3 train"):
        load_babi(BABI, [3], "en-10k")


@needs_data
def test_every_1k_file_parses_with_answers_in_the_vocabulary():
    s = load_babi(BABI, None, "en")
    vocab = build_vocab(s.train)
    unseen = {(ex.task, ex.answer_label) for ex in s.test if ex.answer_label not in vocab}
    assert unseen == {(8, "football,apple,milk")}  # one test answer never seen in training
    assert max(len(ex.story) for ex in s.train) == 50


def test_metrics_per_task_mean_and_failed():
    task = BabiTask(BabiDataConfig())
    stats = {"loss": 10.0, "count": 300.0, "correct": 280.0,
             "count_t1": 100.0, "correct_t1": 100.0, "count_t2": 100.0, "correct_t2": 90.0,
             "count_t3": 100.0, "correct_t3": 90.0}
    m = task.metrics(stats)
    assert m["error_task1"] == 0.0 and m["error_task2"] == pytest.approx(10.0)
    assert m["mean_task_error"] == pytest.approx(20 / 3)
    assert m["failed_tasks"] == 2.0
    assert m["error"] == pytest.approx(100 * 20 / 300)


def test_step_stats_count_each_task_and_sum_loss():
    ex = parse_lines(STORY.splitlines(), task=8)
    ex = ex[:2] + [type(e)(task=1, story=e.story, question=e.question, answer=e.answer,
                           supporting=e.supporting) for e in ex[2:]]
    task = BabiTask(BabiDataConfig())
    task.vocab = build_vocab(ex)
    model = task.build_model(BabiModelConfig(embed_dim=4, linear_start=False))
    model.eval()
    out = task.step(model, encode(ex, task.vocab))
    assert out.stats["count"] == 4 and int(out.stats["count_t8"]) == 2
    assert int(out.stats["count_t1"]) == 2
    assert float(out.loss.detach()) == pytest.approx(float(out.stats["loss"]))  # summed


def test_linear_start_ends_when_dev_loss_stops_falling(capsys):
    task = BabiTask(BabiDataConfig())
    task.vocab = build_vocab(parse_lines(STORY.splitlines()))
    model = task.build_model(BabiModelConfig(embed_dim=4, linear_start=True, ls_patience=2))
    assert model.linear
    assert not task.update_linear_start(model, 2.0)
    assert not task.update_linear_start(model, 1.5)
    assert not task.update_linear_start(model, 1.6) and model.linear  # patience 2
    assert task.update_linear_start(model, 1.7) and not model.linear
    assert "linear start ends" in capsys.readouterr().out
    assert "linear_mode" in model.state_dict()  # saved with the weights
    model = task.build_model(BabiModelConfig(embed_dim=4, ls_epochs=3))
    assert not task.update_linear_start(model, 1.0)
    assert not task.update_linear_start(model, 2.0) and model.linear  # loss ignored
    assert task.update_linear_start(model, 3.0) and not model.linear
    assert "after 3 epochs" in capsys.readouterr().out


def test_attention_table_and_heatmap(tmp_path):
    story = [["mary", "went", "home"], ["john", "left"]]
    att = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    text = attention_table(story, att, question="where is mary", supporting=(0,))
    lines = text.splitlines()
    assert lines[0] == "question: where is mary"
    assert "hop 1" in lines[1] and "hop 3" in lines[1]
    assert lines[3].startswith("* mary went home") and "0.90<" in lines[3]
    assert "0.80<" in lines[4]
    png = attention_heatmap(story, att, tmp_path / "a.png", title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_story_file_accepts_numbers_and_skips_questions(tmp_path):
    f = tmp_path / "s.txt"
    f.write_text("1 Mary went home.\nJohn left.\n\n3 Where is Mary?\thome\t1\n")
    assert read_story_file(f) == ["Mary went home.", "John left."]


def test_story_file_splits_sentences_on_a_line(tmp_path):
    f = tmp_path / "s.txt"
    f.write_text("Lily is a swan. Lily is white.  Greg is a swan\n2 Brian is a frog!\n")
    assert read_story_file(f) == ["Lily is a swan.", "Lily is white.", "Greg is a swan",
                                  "Brian is a frog!"]


# ---------------------------------------------------------------------- download


@pytest.fixture()
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _archive(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"tasks_1-20_v1-2/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@needs_data
def test_download_unpacks_and_checks_every_file(server, tmp_path):
    root, url = server
    names = ["en/qa1_single-supporting-fact_train.txt", "en/qa1_single-supporting-fact_test.txt"]
    _archive(root / "babi.tar.gz", {n: (BABI / n).read_bytes() for n in names})
    out = ensure_babi(tmp_path, url=f"{url}/babi.tar.gz", quiet=True)
    assert out == tmp_path / "babi" / "tasks_1-20_v1-2"
    assert (out / names[0]).read_bytes() == (BABI / names[0]).read_bytes()
    assert len(load_babi(out, [1], "en").test) == 1000


def test_download_with_a_changed_file_raises(server, tmp_path):
    root, url = server
    name = "en/qa1_single-supporting-fact_test.txt"
    assert name in BABI_SHA256
    _archive(root / "babi.tar.gz", {name: b"1 Mary went home.\n"})
    with pytest.raises(DataError, match=r"checksum mismatch for .*qa1_single-supporting-fact_test"):
        ensure_babi(tmp_path, url=f"{url}/babi.tar.gz", quiet=True)


def test_download_failure_is_a_data_error(server, tmp_path):
    _, url = server
    with pytest.raises(DataError, match="download of .* failed"):
        ensure_babi(tmp_path, url=f"{url}/nothing.tar.gz", quiet=True)


@needs_data
def test_predict_explains_a_test_question_with_supporting_facts(tmp_path, capsys):
    """``memnets predict RUN --test-task T`` (what scripts/babi_explain.py did)."""
    from memnets.cli import main
    from memnets.tasks.recipes import load_config
    from memnets.train import train

    run = tmp_path / "run"
    train(load_config("babi-task1", [f"data.dir={DATA}", "model.embed_dim=4",
                                     "trainer.max_steps=3", "trainer.progress=false",
                                     "trainer.tensorboard=false"]), run, quiet=True)
    png = tmp_path / "att.png"
    capsys.readouterr()
    assert main(["predict", str(run), "--test-task", "1", "--index", "2", "--png",
                 str(png)]) == 0
    out = capsys.readouterr().out
    assert "task 1 (qa1_single-supporting-fact_test.txt:" in out and "test question 2:" in out
    assert "*" in out and png.stat().st_size > 1000
    assert main(["predict", str(run), "--test-task", "2"]) == 2  # not trained on task 2
    assert main(["predict", str(run), "--test-task", "1", "--index", "99999"]) == 2
    assert main(["predict", str(run), "--question", "Where is Mary?"]) == 2  # no story
