"""memnets.data.scenes: Sort-of-CLEVR and shape captions.

Answers are checked on a scene built by hand (every answer worked out on paper, in
the comments) and, on generated scenes, against a brute-force reference written here;
rendering against hand-drawn masks; generation for determinism (same bytes per seed),
splits (the compositional pairs), storage errors (file:line), the read-only fallback
and the ``memnets data`` command.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from pathlib import Path

import numpy as np
import pytest

from memnets.cli import main
from memnets.data import scenes
from memnets.data.images import read_image
from memnets.data.scenes import (
    COLOURS,
    HELD_OUT_PAIRS,
    MIN_X_GAP,
    SIZES,
    SORT_OF_CLEVR_ANSWERS,
    SORT_OF_CLEVR_COLOURS,
    Scene,
    SceneObject,
    dataset_counts,
    ensure_generated,
    name_objects_shapes,
    object_mask,
    read_shape_captions,
    read_sort_of_clevr,
    render,
    shape_caption,
    shape_caption_scene,
    sort_of_clevr_question,
    sort_of_clevr_scene,
)
from memnets.errors import ConfigError, DataError

SMALL_SOC = {"train": 12, "dev": 3, "test": 4}
SMALL_CAPS = {"train": 40, "dev": 5, "test": 8, "test_compositional": 10}


def _obj(colour, shape, box, size=None):
    return SceneObject(colour, shape, size, ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), box)


def _sha(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file()}


# ---------------------------------------------------------------------- a scene by hand

# 75x75; centres (x, y) and shapes.  Middle lines at 37.5.
#   0 red square    (7.5, 8.5)     left, top
#   1 green circle  (55.5, 10.5)   right, top
#   2 blue circle   (15.5, 60.5)   left, bottom
#   3 orange square (65.5, 65.5)   right, bottom
#   4 gray circle   (36.5, 35.5)   left, top
#   5 yellow circle (45.5, 55.5)   right, bottom
# squared distances:
#   red:    green 2308, blue 2768, orange 6613, gray 1570, yellow 3653
#   green:  red 2308, blue 4100, orange 3125, gray 986, yellow 2125
#   blue:   red 2768, green 4100, orange 2525, gray 1066, yellow 925
#   orange: red 6613, green 3125, blue 2525, gray 1741, yellow 500
#   gray:   red 1570, green 986, blue 1066, orange 1741, yellow 481
#   yellow: red 3653, green 2125, blue 925, orange 500, gray 481
HAND = Scene(75, 75, (
    _obj("red", "square", (2, 3, 13, 14)),
    _obj("green", "circle", (50, 5, 61, 16)),
    _obj("blue", "circle", (10, 55, 21, 66)),
    _obj("orange", "square", (60, 60, 71, 71)),
    _obj("gray", "circle", (31, 30, 42, 41)),
    _obj("yellow", "circle", (40, 50, 51, 61)),
))
# (answer, target) per kind and subject
HAND_ANSWERS = {
    "shape": [("square", 0), ("circle", 1), ("circle", 2), ("square", 3), ("circle", 4),
              ("circle", 5)],
    "horizontal": [("yes", 0), ("no", 1), ("yes", 2), ("no", 3), ("yes", 4), ("no", 5)],
    "vertical": [("yes", 0), ("yes", 1), ("no", 2), ("no", 3), ("yes", 4), ("no", 5)],
    "closest": [("circle", 4), ("circle", 4), ("circle", 5), ("circle", 5), ("circle", 5),
                ("circle", 4)],
    "furthest": [("square", 3), ("circle", 2), ("circle", 1), ("square", 0), ("square", 3),
                 ("square", 0)],
    "count": [("2", None), ("4", None), ("4", None), ("2", None), ("4", None), ("4", None)],
}


@pytest.mark.parametrize("kind", sorted(HAND_ANSWERS))
def test_answers_on_a_scene_built_by_hand(kind):
    for subject, (answer, target) in enumerate(HAND_ANSWERS[kind]):
        q = sort_of_clevr_question(HAND, subject, kind)
        assert (q.answer, q.target) == (answer, target), (kind, subject)
        assert q.kind == kind and q.subject == subject
        assert q.relational == (kind in ("closest", "furthest", "count"))
        assert q.answer in SORT_OF_CLEVR_ANSWERS


def test_question_words():
    words = {k: " ".join(sort_of_clevr_question(HAND, 0, k).words) for k in HAND_ANSWERS}
    assert words == {
        "shape": "what is the shape of the red object ?",
        "horizontal": "is the red object on the left ?",
        "vertical": "is the red object on the top ?",
        "closest": "what is the shape of the object closest to the red object ?",
        "furthest": "what is the shape of the object furthest from the red object ?",
        "count": "how many objects have the same shape as the red object ?",
    }
    assert " ".join(sort_of_clevr_question(HAND, 5, "count").words).endswith(
        "the yellow object ?")


def test_question_checks_and_ties():
    with pytest.raises(ValueError, match="expected a kind among"):
        sort_of_clevr_question(HAND, 0, "colour")
    with pytest.raises(ValueError, match="expected a subject in 0..5"):
        sort_of_clevr_question(HAND, 6, "shape")
    one = Scene(75, 75, HAND.objects[:1])
    with pytest.raises(ValueError, match="at least two objects"):
        sort_of_clevr_question(one, 0, "closest")
    assert sort_of_clevr_question(one, 0, "count").answer == "1"
    twins = Scene(75, 75, (HAND.objects[0], _obj("red", "circle", (40, 40, 51, 51))))
    with pytest.raises(ValueError, match="expected one red object"):
        sort_of_clevr_question(twins, 0, "shape")
    tri = Scene(75, 75, (_obj("red", "triangle", (0, 0, 11, 11)),))
    with pytest.raises(ValueError, match="expected shapes among square, circle"):
        sort_of_clevr_question(tri, 0, "shape")
    # two objects at the same distance: the lower index
    tie = Scene(75, 75, (_obj("red", "square", (30, 30, 41, 41)),
                         _obj("green", "circle", (10, 30, 21, 41)),
                         _obj("blue", "square", (50, 30, 61, 41))))
    assert sort_of_clevr_question(tie, 0, "closest").target == 1
    assert sort_of_clevr_question(tie, 0, "furthest").target == 1
    # exactly on the middle line is not "left" (x < W / 2)
    mid = Scene(75, 75, (_obj("red", "square", (32, 0, 43, 11)),))
    assert mid.objects[0].centre[0] == 37.5
    assert sort_of_clevr_question(mid, 0, "horizontal").answer == "no"


# ---------------------------------------------------------------------- rendering


def test_masks_drawn_by_hand():
    def grid(text):
        return np.array([[c == "#" for c in row] for row in text.split()])

    assert np.array_equal(object_mask("square", (0, 0, 3, 2)), np.ones((2, 3), bool))
    assert np.array_equal(object_mask("circle", (4, 4, 9, 9)),
                          grid(".###. ##### ##### ##### .###."))
    assert np.array_equal(object_mask("triangle", (0, 0, 5, 5)),
                          grid("..#.. .###. .###. ##### #####"))
    assert np.array_equal(object_mask("triangle", (0, 0, 3, 3)), grid(".#. ### ###"))
    with pytest.raises(ValueError, match="expected a shape among"):
        object_mask("star", (0, 0, 3, 3))
    with pytest.raises(ValueError, match="non-empty box"):
        object_mask("square", (3, 0, 3, 3))


@pytest.mark.parametrize("side", [3, 4, 5, 9, 10, 11, 15])
@pytest.mark.parametrize("shape", ["square", "circle", "triangle"])
def test_every_shape_touches_all_four_sides_of_its_box(shape, side):
    mask = object_mask(shape, (0, 0, side, side))
    assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()
    assert np.array_equal(mask, mask[:, ::-1])  # symmetric left to right


def _check_rendering(scene: Scene, image: np.ndarray) -> None:
    """Inside each box: the object's colour where drawn, black elsewhere, and the drawn
    pixels' tight box is the box; outside every box: black."""
    assert image.shape == (scene.height, scene.width, 3) and image.dtype == np.uint8
    outside = np.ones((scene.height, scene.width), bool)
    for o in scene.objects:
        x0, y0, x1, y1 = o.box
        patch = image[y0:y1, x0:x1].reshape(-1, 3)
        colours = {tuple(p) for p in patch.tolist()}
        assert colours <= {COLOURS[o.colour], (0, 0, 0)}, o
        drawn = np.all(image == COLOURS[o.colour], axis=2)
        ys, xs = np.nonzero(drawn)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == o.box, o
        outside[y0:y1, x0:x1] = False
    assert not image[outside].any()


def test_rendering_of_the_hand_scene():
    image = render(HAND)
    _check_rendering(HAND, image)
    assert image[8, 7].tolist() == [255, 0, 0]  # red's centre pixel
    assert image[0, 0].tolist() == [0, 0, 0]
    assert np.array_equal(render(HAND), image)


def test_rendering_of_generated_scenes():
    for k in range(30):
        scene, _ = sort_of_clevr_scene(random.Random(f"t/{k}"))
        _check_rendering(scene, render(scene))
        scene = shape_caption_scene(random.Random(f"t/{k}"), compositional=k % 2 == 1)
        _check_rendering(scene, render(scene))


def test_render_refuses_what_it_cannot_draw():
    with pytest.raises(ValueError, match="inside the 75x75 image"):
        render(Scene(75, 75, (_obj("red", "square", (70, 70, 81, 81)),)))
    with pytest.raises(ValueError, match="expected a colour among"):
        render(Scene(75, 75, (_obj("pink", "square", (0, 0, 11, 11)),)))


# ---------------------------------------------------------------------- generated Sort-of-CLEVR


def _reference_answer(scene: Scene, subject: int, kind: str) -> tuple[str, int | None]:
    """The answer by brute force in float64 (numpy), independent of the module."""
    c = np.array([o.centre for o in scene.objects], dtype=np.float64)
    me = scene.objects[subject]
    if kind == "shape":
        return me.shape, subject
    if kind == "horizontal":
        return ("yes" if c[subject, 0] < scene.width / 2 else "no"), subject
    if kind == "vertical":
        return ("yes" if c[subject, 1] < scene.height / 2 else "no"), subject
    if kind == "count":
        return str(sum(o.shape == me.shape for o in scene.objects)), None
    d = np.sqrt(((c - c[subject]) ** 2).sum(axis=1))
    d[subject] = np.inf if kind == "closest" else -np.inf
    j = int(np.argmin(d) if kind == "closest" else np.argmax(d))
    return scene.objects[j].shape, j


def test_generated_sort_of_clevr_scenes_follow_the_rules():
    kinds = set()
    for k in range(200):
        scene, questions = sort_of_clevr_scene(random.Random(f"rules/{k}"))
        assert (scene.width, scene.height) == (75, 75)
        assert tuple(o.colour for o in scene.objects) == SORT_OF_CLEVR_COLOURS
        for o in scene.objects:
            assert o.shape in ("square", "circle") and o.size is None
            assert o.box[2] - o.box[0] == 11 and o.box[3] - o.box[1] == 11
            assert 0 <= o.box[0] and o.box[2] <= 75 and 0 <= o.box[1] and o.box[3] <= 75
            assert o.centre[0] != 37.5 and o.centre[1] != 37.5
        for a, b in itertools.combinations(scene.objects, 2):  # no shared pixel
            assert (a.box[2] <= b.box[0] or b.box[2] <= a.box[0]
                    or a.box[3] <= b.box[1] or b.box[3] <= a.box[1])
        c = np.array([o.centre for o in scene.objects])
        for s in range(6):  # unique closest and furthest
            d = np.sort(np.delete(((c - c[s]) ** 2).sum(axis=1), s))
            assert d[0] < d[1] and d[-2] < d[-1]
        assert len(questions) == 20
        assert [q.relational for q in questions] == [False] * 10 + [True] * 10
        for q in questions:
            assert (q.answer, q.target) == _reference_answer(scene, q.subject, q.kind)
            kinds.add(q.kind)
    assert kinds == set(HAND_ANSWERS)


def test_sort_of_clevr_files_are_the_same_bytes_per_seed(tmp_path):
    a = ensure_generated("sort-of-clevr", tmp_path / "a", seed=3, counts=SMALL_SOC)
    b = ensure_generated("sort-of-clevr", tmp_path / "b", seed=3, counts=SMALL_SOC)
    c = ensure_generated("sort-of-clevr", tmp_path / "c", seed=4, counts=SMALL_SOC)
    assert (a, b) == (tmp_path / "a", tmp_path / "b")
    assert sorted(_sha(a)) == ["MANIFEST.json", "dev.jsonl", "test.jsonl", "train.jsonl"]
    assert _sha(a) == _sha(b)
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl"):
        assert _sha(a)[name] != _sha(c)[name]
    manifest = json.loads((a / "MANIFEST.json").read_text())
    assert manifest["generator"] == "sort-of-clevr" and manifest["seed"] == 3
    assert manifest["counts"] == SMALL_SOC
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == _sha(a)[name]
        assert entry["lines"] == SMALL_SOC[name.removesuffix(".jsonl")]


def test_a_split_does_not_depend_on_the_other_splits_sizes(tmp_path):
    a = ensure_generated("sort-of-clevr", tmp_path / "a", counts={"train": 5, "dev": 2,
                                                                  "test": 2})
    b = ensure_generated("sort-of-clevr", tmp_path / "b", counts={"train": 8, "dev": 0,
                                                                  "test": 2})
    assert (b / "train.jsonl").read_text().splitlines()[:5] == \
        (a / "train.jsonl").read_text().splitlines()
    assert (a / "test.jsonl").read_bytes() == (b / "test.jsonl").read_bytes()
    assert (b / "dev.jsonl").read_bytes() == b""
    assert (a / "dev.jsonl").read_bytes() != (a / "test.jsonl").read_bytes()


def test_read_sort_of_clevr_gives_images_and_questions(tmp_path):
    folder = ensure_generated("sort-of-clevr", tmp_path / "d", counts=SMALL_SOC)
    images, examples = read_sort_of_clevr(folder, "train")
    assert len(images) == 12 and len(examples) == 12 * 20
    rows = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
    for k, (image, row) in enumerate(zip(images, rows)):
        objects = tuple(SceneObject(o["colour"], o["shape"], o["size"], tuple(o["centre"]),
                                    tuple(o["box"])) for o in row["objects"])
        scene = Scene(75, 75, objects)
        assert np.array_equal(image, render(scene))
        mine = [e for e in examples if e.image_id == k]
        assert len(mine) == 20
        for e, q in zip(mine, row["questions"]):
            answer, target = _reference_answer(scene, q["subject"], e.kind)
            assert e.answer == answer
            assert e.target_box == (None if target is None else objects[target].box)
            assert " ".join(e.words) == q["words"]
            assert scene.objects[q["subject"]].colour in e.words


@pytest.mark.slow
def test_default_counts_and_generation_time(tmp_path):
    assert dataset_counts("sort-of-clevr") == {"train": 9800, "dev": 200, "test": 200}
    assert dataset_counts("shape-captions") == {"train": 8000, "dev": 500, "test": 1000,
                                                "test_compositional": 1000}
    assert dataset_counts("sort-of-clevr", {"train": 5}) == {"train": 5, "dev": 200,
                                                            "test": 200}
    folder = ensure_generated("sort-of-clevr", tmp_path / "full")
    lines = {s: len((folder / f"{s}.jsonl").read_text().splitlines())
             for s in ("train", "dev", "test")}
    assert lines == {"train": 9800, "dev": 200, "test": 200}


@pytest.mark.parametrize("counts, match", [
    ({"val": 3}, "expected splits among train, dev, test, got 'val'"),
    ({"train": -1}, "expected the train count to be an integer >= 0"),
    ({"train": 2.0}, "expected the train count to be an integer >= 0"),
])
def test_bad_counts(tmp_path, counts, match):
    with pytest.raises(ConfigError, match=match):
        ensure_generated("sort-of-clevr", tmp_path, counts=counts)


def test_unknown_dataset_and_split(tmp_path):
    with pytest.raises(ConfigError, match="expected a generated dataset among sort-of-clevr, "
                                          "shape-captions, digit-strings, got 'clevr'"):
        ensure_generated("clevr", tmp_path)
    with pytest.raises(ConfigError, match="expected a split among train, dev, test"):
        read_sort_of_clevr(tmp_path, "test_compositional")
    with pytest.raises(ConfigError, match="integer seed"):
        ensure_generated("sort-of-clevr", tmp_path, seed="1")


# ---------------------------------------------------------------------- storage errors


def _rewrite_line(path: Path, line: int, change) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = change(lines[line - 1])
    path.write_text("\n".join(lines) + "\n")


def test_a_corrupt_line_is_named_by_file_and_line(tmp_path):
    folder = ensure_generated("sort-of-clevr", tmp_path / "d", counts=SMALL_SOC)
    path = folder / "dev.jsonl"
    original = path.read_text()
    _rewrite_line(path, 2, lambda s: s[: len(s) // 2])  # cut in the middle
    with pytest.raises(DataError, match=rf"^{path}:2: expected a JSON object per line"):
        read_sort_of_clevr(folder, "dev")

    def edit(fn):
        path.write_text(original)
        _rewrite_line(path, 3, lambda s: json.dumps(fn(json.loads(s))))

    def bad_colour(row):
        row["objects"][1]["colour"] = "purple"
        return row

    edit(bad_colour)
    with pytest.raises(DataError, match=rf"^{path}:3: expected 'colour' to be a colour among "
                                        r"red, .*got 'purple'$"):
        read_sort_of_clevr(folder, "dev")

    def bad_box(row):
        row["objects"][0]["box"] = [70, 70, 81, 81]
        return row

    edit(bad_box)
    with pytest.raises(DataError, match=rf"^{path}:3: expected 'box' to be a non-empty box "
                                        r"inside the 75x75 image, got \[70, 70, 81, 81\]"):
        read_sort_of_clevr(folder, "dev")

    def bad_answer(row):
        row["questions"][4]["answer"] = "maybe"
        return row

    edit(bad_answer)
    with pytest.raises(DataError, match=rf"^{path}:3: expected 'answer' to be an answer among"):
        read_sort_of_clevr(folder, "dev")

    def no_target(row):
        q = next(q for q in row["questions"] if q["kind"] != "count")
        del q["target"]
        return row

    edit(no_target)
    with pytest.raises(DataError, match=rf"^{path}:3: expected a field 'target'"):
        read_sort_of_clevr(folder, "dev")
    (folder / "dev.jsonl").unlink()
    with pytest.raises(DataError, match=f"expected a sort-of-clevr file .* at {path}"):
        read_sort_of_clevr(folder, "dev")


def test_a_caption_that_does_not_describe_its_scene_is_named(tmp_path):
    folder = ensure_generated("shape-captions", tmp_path / "d", counts=SMALL_CAPS)
    path = folder / "test.jsonl"

    def change(s):
        row = json.loads(s)
        row["caption"] = row["caption"].replace("a ", "the ", 1)
        return json.dumps(row)

    _rewrite_line(path, 5, change)
    with pytest.raises(DataError, match=rf"^{path}:5: expected the caption of its objects"):
        read_shape_captions(folder, "test")


# ---------------------------------------------------------------------- shape captions


def test_caption_grammar_on_a_scene_built_by_hand():
    objects = (_obj("green", "triangle", (40, 30, 49, 39), "small"),  # x 44.5
               _obj("red", "circle", (2, 40, 11, 49), "small"),       # x 6.5
               _obj("blue", "square", (20, 2, 35, 17), "large"))      # x 27.5
    words, named = shape_caption(objects)
    assert " ".join(words) == ("a small red circle left of a large blue square left of a "
                               "small green triangle")
    assert named == (None, 1, 1, 1, None, None, None, 2, 2, 2, None, None, None, 0, 0, 0)
    words, named = shape_caption(objects[2:])
    assert (" ".join(words), named) == ("a large blue square", (None, 0, 0, 0))
    with pytest.raises(ValueError, match="with a size"):
        shape_caption((_obj("red", "square", (0, 0, 9, 9)),))
    with pytest.raises(ValueError, match="at least one object"):
        shape_caption(())


def test_name_objects_shapes_on_right_and_wrong_captions():
    objects = (_obj("red", "circle", (2, 40, 11, 49), "small"),
               _obj("blue", "square", (20, 2, 35, 17), "large"))
    gold = "a small red circle left of a large blue square".split()
    assert name_objects_shapes(gold, objects) == list(shape_caption(objects)[1])
    # the right colour with the wrong size and shape still names that object
    assert name_objects_shapes("a large red square".split(), objects) == [None, 0, 0, 0]
    # a colour no object has names nothing; a phrase without colour names nothing
    assert name_objects_shapes("a small green circle left of a large square".split(),
                               objects) == [None] * 9
    # without "left of", a second colour starts a new phrase
    assert name_objects_shapes("a red circle blue square".split(), objects) == \
        [None, 0, 0, 1, 1]
    # a size after a shape starts a new phrase too; unknown words name nothing
    assert name_objects_shapes("small blue <unk> large red".split(), objects) == \
        [1, 1, None, 0, 0]
    assert name_objects_shapes([], objects) == []


def _pairs(examples) -> list[set]:
    return [{(o.colour, o.shape) for o in e.objects} for e in examples]


def test_generated_shape_captions_follow_the_rules(tmp_path):
    folder = ensure_generated("shape-captions", tmp_path / "d", counts=SMALL_CAPS)
    lengths = set()
    for split, n in SMALL_CAPS.items():
        examples = read_shape_captions(folder, split)
        assert len(examples) == n
        for e in examples:
            objects = e.objects
            lengths.add(len(objects))
            assert 1 <= len(objects) <= 4
            assert len({o.colour for o in objects}) == len(objects)
            xs = [o.centre[0] for o in objects]
            assert xs == sorted(xs)
            assert all(b - a >= MIN_X_GAP for a, b in zip(xs, xs[1:]))
            for o in objects:
                side = SIZES[o.size]
                assert (o.box[2] - o.box[0], o.box[3] - o.box[1]) == (side, side)
            for a, b in itertools.combinations(objects, 2):  # a pixel at least between boxes
                assert (a.box[2] < b.box[0] or b.box[2] < a.box[0]
                        or a.box[3] < b.box[1] or b.box[3] < a.box[1])
            # the caption read independently: phrases of four words joined by "left of"
            phrases = " ".join(e.words).split(" left of ")
            assert [p.split() for p in phrases] == [["a", o.size, o.colour, o.shape]
                                                    for o in objects]
            assert len(e.word_objects) == len(e.words)
            for w, i in zip(e.words, e.word_objects):
                assert (i is None) == (w in ("a", "left", "of"))
                if i is not None:
                    assert w in (objects[i].size, objects[i].colour, objects[i].shape)
            _check_rendering(Scene(64, 64, objects), e.image)
    assert lengths == {1, 2, 3, 4}


def test_the_compositional_split(tmp_path):
    counts = {"train": 400, "dev": 50, "test": 100, "test_compositional": 100}
    folder = ensure_generated("shape-captions", tmp_path / "d", counts=counts)
    held = set(HELD_OUT_PAIRS)
    seen = set()
    for split in ("train", "dev", "test"):
        for pairs in _pairs(read_shape_captions(folder, split)):
            assert not pairs & held, (split, pairs)
            seen |= pairs
    # every other pair is seen in training, held-out colours with their other shapes
    assert seen == set(itertools.product(COLOURS, ("square", "circle", "triangle"))) - held
    comp = _pairs(read_shape_captions(folder, "test_compositional"))
    assert len(comp) == 100
    assert all(pairs & held for pairs in comp)
    assert set().union(*comp) & held == held  # each held-out pair is tested


def test_shape_captions_are_the_same_bytes_per_seed(tmp_path):
    a = ensure_generated("shape-captions", tmp_path / "a", seed=1, counts=SMALL_CAPS)
    b = ensure_generated("shape-captions", tmp_path / "b", seed=1, counts=SMALL_CAPS)
    c = ensure_generated("shape-captions", tmp_path / "c", seed=2, counts=SMALL_CAPS)
    assert _sha(a) == _sha(b)
    assert all(_sha(a)[f] != _sha(c)[f] for f in _sha(a) if f.endswith(".jsonl"))


# ---------------------------------------------------------------------- ensure_generated


def test_an_existing_generation_is_reused_and_a_changed_one_redone(tmp_path, monkeypatch):
    folder = ensure_generated("sort-of-clevr", tmp_path / "d", counts=SMALL_SOC)
    before = _sha(folder)
    calls = []
    gen = scenes.GENERATORS["sort-of-clevr"]
    monkeypatch.setitem(scenes.GENERATORS, "sort-of-clevr", scenes._Generator(
        gen.version, gen.counts, lambda *a: calls.append(a) or gen.rows(*a)))
    assert ensure_generated("sort-of-clevr", folder, counts=SMALL_SOC) == folder
    assert calls == []  # the manifest matched: nothing generated
    (folder / "dev.jsonl").write_text("{}\n")  # damaged: its sha256 no longer matches
    ensure_generated("sort-of-clevr", folder, counts=SMALL_SOC)
    assert len(calls) == 1 and _sha(folder) == before
    ensure_generated("sort-of-clevr", folder, counts={**SMALL_SOC, "dev": 4})
    assert len(calls) == 2
    assert json.loads((folder / "MANIFEST.json").read_text())["counts"]["dev"] == 4


def test_an_unwritable_folder_falls_back_to_the_user_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    shared = tmp_path / "shared"
    real = scenes.folder_writable
    monkeypatch.setattr(scenes, "folder_writable", lambda f: Path(f) != shared and real(f))
    used = ensure_generated("shape-captions", shared, counts=SMALL_CAPS)
    fallback = tmp_path / "cache" / "memnets" / "data" / "shape-captions"
    assert used == fallback
    assert not (shared / "MANIFEST.json").exists()
    err = capsys.readouterr().err
    assert f"note: {shared} cannot be written; generating shape-captions into {fallback}" in err
    assert len(read_shape_captions(used, "dev")) == 5
    # the second time, the fallback's generation is used as it is
    assert ensure_generated("shape-captions", shared, counts=SMALL_CAPS) == fallback
    assert f"using the shape-captions data generated in {fallback}" in capsys.readouterr().err


def test_fallback_with_a_folder_root_cannot_write_either(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    blocker = tmp_path / "a-file"
    blocker.write_text("no folder can be made under a file, even by root")
    used = ensure_generated("sort-of-clevr", blocker / "data", counts=SMALL_SOC)
    assert used == tmp_path / "cache" / "memnets" / "data" / "sort-of-clevr"
    assert "cannot be written" in capsys.readouterr().err
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))
    with pytest.raises(DataError, match="expected a folder to generate sort-of-clevr into"):
        ensure_generated("sort-of-clevr", blocker / "data", counts={"train": 1})


# ---------------------------------------------------------------------- the command


def test_memnets_data_command(tmp_path, capsys):
    out = tmp_path / "soc"
    code = main(["data", "sort-of-clevr", "--out", str(out), "--seed", "2", "--count",
                 "train=3", "--count", "dev=1", "--count", "test=2", "--images"])
    assert code == 0
    text = capsys.readouterr().out
    assert f"sort-of-clevr (seed 2) in {out}" in text
    assert "train 3, dev 1, test 2 images" in text
    assert f"manifest: {out / 'MANIFEST.json'}" in text
    assert "6 PNG images" in text
    pngs = sorted(p.relative_to(out).as_posix() for p in (out / "images").rglob("*.png"))
    assert pngs == ["images/dev/0.png", "images/test/0.png", "images/test/1.png",
                    "images/train/0.png", "images/train/1.png", "images/train/2.png"]
    images, _ = read_sort_of_clevr(out, "train")
    for k in range(3):
        back, notes = read_image(out / "images" / "train" / f"{k}.png")
        assert notes == [] and np.array_equal(back, images[k])
    same = ensure_generated("sort-of-clevr", tmp_path / "again", seed=2,
                            counts={"train": 3, "dev": 1, "test": 2})
    assert _sha(same) == _sha(out)
    # generating other data there removes the PNGs of the old, and only those
    (out / "images" / "notes.txt").write_text("mine")
    assert main(["data", "sort-of-clevr", "--out", str(out), "--count", "train=2"]) == 0
    assert sorted(p.name for p in (out / "images").rglob("*")) == ["notes.txt"]


def test_memnets_data_bad_options(tmp_path, capsys):
    for argv in (["data", "clevr", "--out", str(tmp_path)],
                 ["data", "sort-of-clevr"],
                 ["data", "sort-of-clevr", "--out", str(tmp_path), "--seed", "x"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    assert main(["data", "sort-of-clevr", "--out", str(tmp_path), "--count", "val=3"]) == 2
    assert "expected splits among train, dev, test, got 'val'" in capsys.readouterr().err
    assert main(["data", "sort-of-clevr", "--out", str(tmp_path), "--count", "train"]) == 2
    assert "--count: expected SPLIT=N" in capsys.readouterr().err
