"""conlleval chunk F1, intent and sentence accuracy against hand-worked cases and
against a separate line-by-line transcription of the Perl script's counting loop."""

import random

import pytest

from memnets.metrics.conlleval import (
    ConllEval,
    chunks,
    conll_f1,
    slot_filling_scores,
    split_tag,
)


def test_split_tag_keeps_hyphens_in_the_type():
    assert split_tag("B-fromloc.city_name") == ("B", "fromloc.city_name")
    assert split_tag("I-a-b") == ("I", "a-b")
    assert split_tag("O") == ("O", "")


@pytest.mark.parametrize(
    "tags, expected",
    [
        (["O", "O"], []),
        (["B-a", "I-a", "O", "B-b"], [("a", 0, 1), ("b", 3, 3)]),
        # a lone I- after O starts a chunk
        (["O", "I-a", "I-a", "O"], [("a", 1, 2)]),
        # an I- of another type ends the chunk and starts a new one
        (["B-a", "I-b", "I-b"], [("a", 0, 0), ("b", 1, 2)]),
        # B- after B- of the same type: two chunks
        (["B-a", "B-a"], [("a", 0, 0), ("a", 1, 1)]),
        # sentence-initial I-
        (["I-a", "B-a", "I-a"], [("a", 0, 0), ("a", 1, 2)]),
        # chunk running to the end of the sentence
        (["O", "B-a", "I-a"], [("a", 1, 2)]),
    ],
)
def test_chunks_hand_worked(tags, expected):
    assert chunks(tags) == expected


def test_hand_worked_corpus_counts_and_f1():
    # sentence 1: gold 2 chunks, pred gets city right, date with the wrong end
    # sentence 2: gold 1 chunk; pred writes it with an ill-formed I- start: still correct
    # sentence 3: gold 1 chunk; pred splits it into two (B- B-): neither counts
    gold = [
        ["O", "B-city", "I-city", "O", "B-date", "I-date"],
        ["O", "B-time", "I-time"],
        ["B-city", "I-city", "O"],
    ]
    pred = [
        ["O", "B-city", "I-city", "O", "B-date", "O"],
        ["O", "I-time", "I-time"],
        ["B-city", "B-city", "O"],
    ]
    ev = ConllEval()
    for g, p in zip(gold, pred):
        ev.add(g, p)
    tot = ev.total()
    assert (tot.correct, tot.found_gold, tot.found_pred) == (2, 4, 5)
    assert ev.precision == pytest.approx(40.0)
    assert ev.recall == pytest.approx(50.0)
    assert ev.f1 == pytest.approx(2 * 40 * 50 / 90)
    assert conll_f1(gold, pred) == pytest.approx(ev.f1)
    # tokens: 12, wrong: s1 last, s2 second (I vs B), s3 second (B vs I) -> 9/12
    assert ev.accuracy == pytest.approx(75.0)
    by = ev.by_type()
    assert (by["city"].correct, by["city"].found_gold, by["city"].found_pred) == (1, 2, 3)
    assert "FB1" in ev.report()


def test_chunks_do_not_cross_sentences():
    # sentence 1 ends inside a chunk; sentence 2 starts with I- of the same type
    gold = [["B-a", "I-a"], ["I-a", "O"]]
    pred = [["B-a", "I-a"], ["I-a", "O"]]
    ev = ConllEval()
    for g, p in zip(gold, pred):
        ev.add(g, p)
    assert ev.total().found_gold == 2 and ev.total().correct == 2


def test_empty_prediction_gives_zero_not_error():
    ev = ConllEval()
    ev.add(["B-a"], ["O"])
    assert ev.precision == 0.0 and ev.recall == 0.0 and ev.f1 == 0.0


def test_slot_filling_scores_hand_worked():
    gold_tags = [["B-a", "O"], ["O", "B-b"], ["O"]]
    pred_tags = [["B-a", "O"], ["O", "O"], ["O"]]
    gold_int = ["x", "y", "x#y"]
    pred_int = ["x", "y", "x"]
    s = slot_filling_scores(gold_tags, pred_tags, gold_int, pred_int)
    assert s["intent_accuracy"] == pytest.approx(200 / 3)
    assert s["sentence_accuracy"] == pytest.approx(100 / 3)  # only the first
    assert s["slot_precision"] == pytest.approx(100.0)
    assert s["slot_recall"] == pytest.approx(50.0)
    assert s["slot_f1"] == pytest.approx(200 / 3)
    no_intent = slot_filling_scores(gold_tags, pred_tags)
    assert "intent_accuracy" not in no_intent
    assert no_intent["sentence_accuracy"] == pytest.approx(200 / 3)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="expected as many predicted tags"):
        ConllEval().add(["O", "O"], ["O"])
    with pytest.raises(ValueError, match="expected 2 predicted tag sequences"):
        slot_filling_scores([["O"], ["O"]], [["O"]])


# ---------------------------------------------------------------------------
# A direct transcription of conlleval.pl's per-line loop (blank line between
# sentences processed as the tag pair O/O), written separately from the module.


def _perl_end(prev, tag, prev_type, type_):
    end = False
    if prev == "B" and tag == "B":
        end = True
    if prev == "B" and tag == "O":
        end = True
    if prev == "I" and tag == "B":
        end = True
    if prev == "I" and tag == "O":
        end = True
    if prev == "E" and tag == "E":
        end = True
    if prev == "E" and tag == "I":
        end = True
    if prev == "E" and tag == "O":
        end = True
    if prev != "O" and prev != "." and prev_type != type_:
        end = True
    if prev in ("]", "["):
        end = True
    return end


def _perl_start(prev, tag, prev_type, type_):
    start = False
    if prev == "B" and tag == "B":
        start = True
    if prev == "I" and tag == "B":
        start = True
    if prev == "O" and tag == "B":
        start = True
    if prev == "O" and tag == "I":
        start = True
    if prev == "E" and tag == "E":
        start = True
    if prev == "E" and tag == "I":
        start = True
    if prev == "O" and tag == "E":
        start = True
    if tag != "O" and tag != "." and prev_type != type_:
        start = True
    if tag in ("[", "]"):
        start = True
    return start


def _perl_split(t):
    if "-" in t:
        i = t.index("-")
        return t[:i], t[i + 1:]
    return t, ""


def _perl_conlleval(gold_sents, pred_sents):
    lines = []
    for g, p in zip(gold_sents, pred_sents):
        lines += list(zip(g, p)) + [("O", "O")]  # the blank line
    correct_chunk = found_correct = found_guessed = 0
    in_correct = False
    last_c, last_ct, last_g, last_gt = "O", "", "O", ""
    for c_tag, g_tag in lines:
        c, ct = _perl_split(c_tag)
        g, gt = _perl_split(g_tag)
        if in_correct:
            end_c = _perl_end(last_c, c, last_ct, ct)
            end_g = _perl_end(last_g, g, last_gt, gt)
            if end_c and end_g and last_gt == last_ct:
                in_correct = False
                correct_chunk += 1
            elif end_c != end_g or gt != ct:
                in_correct = False
        start_c = _perl_start(last_c, c, last_ct, ct)
        start_g = _perl_start(last_g, g, last_gt, gt)
        if start_c and start_g and gt == ct:
            in_correct = True
        found_correct += start_c
        found_guessed += start_g
        last_c, last_ct, last_g, last_gt = c, ct, g, gt
    if in_correct:
        correct_chunk += 1
    return correct_chunk, found_correct, found_guessed


def test_agrees_with_perl_loop_on_random_ill_formed_sequences():
    rng = random.Random(0)
    tagset = ["O", "B-a", "I-a", "B-b", "I-b", "B-a.b", "I-a.b"]
    for _ in range(300):
        n_sent = rng.randint(1, 4)
        gold, pred = [], []
        for _ in range(n_sent):
            n = rng.randint(1, 7)
            gold.append([rng.choice(tagset) for _ in range(n)])
            # predictions near the gold make correct chunks likely
            pred.append([t if rng.random() < 0.7 else rng.choice(tagset) for t in gold[-1]])
        ev = ConllEval()
        for g, p in zip(gold, pred):
            ev.add(g, p)
        tot = ev.total()
        assert (tot.correct, tot.found_gold, tot.found_pred) == _perl_conlleval(gold, pred)
