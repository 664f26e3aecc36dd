r"""Generated scenes of coloured shapes: the scene model, rendering, Sort-of-CLEVR
(questions and answers) and shape scenes with captions; and the folders every
generated image dataset is kept in (:func:`ensure_generated`).

**The scene model.**  A :class:`Scene` is a width, a height and its
:class:`~memnets.data.images.SceneObject`\ s (colour, shape, size, centre, box);
:func:`render` draws it, every object filling the pixels of its shape inside
its box on a black background.  A square fills its box; a circle is the disc
(an ellipse in a box that is not square) inscribed in it, a pixel drawn when
its centre lies inside; a triangle points up, its apex at the middle of the
box's top edge and its base the bottom edge, and row ``r`` of an ``h``-row box
holds the pixels whose centre is within :math:`\tfrac{w}{2}\,\tfrac{r+1}{h}`
of the middle, so that every shape touches all four sides of its box (the box
is tight).

**Sort-of-CLEVR** (Santoro et al., "A simple neural network module for
relational reasoning", 2017): 75x75 images of 6 objects, one of each colour of
:data:`SORT_OF_CLEVR_COLOURS`, each a square or a circle (even odds) of 11x11
pixels (half-size 5 around a centre pixel), placed uniformly at random without
overlap.  Each image has 10 non-relational and 10 relational questions, each
about the object of a colour chosen uniformly (the *subject* :math:`s`, centre
:math:`c_s = (x_s, y_s)`) and of a kind chosen uniformly in its group:

.. math::
    \begin{aligned}
    \text{shape} &: \text{shape}_s \\
    \text{horizontal} &: \text{yes if } x_s < W / 2 \text{ (on the left) else no} \\
    \text{vertical} &: \text{yes if } y_s < H / 2 \text{ (on the top) else no} \\
    \text{closest} &: \text{shape}_j,\ j = \arg\min_{j \ne s} \lVert c_j - c_s \rVert \\
    \text{furthest} &: \text{shape}_j,\ j = \arg\max_{j \ne s} \lVert c_j - c_s \rVert \\
    \text{count} &: \lvert \{ j : \text{shape}_j = \text{shape}_s \} \rvert
        \in \{1, \dots, 6\} \ (s \text{ counted})
    \end{aligned}

with answers among :data:`SORT_OF_CLEVR_ANSWERS`.  The questions are words, so
that a recurrent encoder reads them: ``what is the shape of the red object ?``,
``is the red object on the left ?``, ``is the red object on the top ?``, ``what
is the shape of the object closest to the red object ?``, ``... furthest from
the red object ?``, ``how many objects have the same shape as the red object ?``.
Splits: train 9800 and test 200 images, as in the paper's generator, and dev 200.

Departures from the paper's generator: the background is black, not white;
objects' boxes never share a pixel (the original only keeps centres 10 pixels
apart, so that two 11-pixel squares may share an edge); a scene in which an
object's closest or furthest neighbour is tied, or an object is centred on the
image's middle column or row (its left/top answer a tie), is drawn again, so
that every answer and every answer's object is unique; the questions are
words, not one-hot codes; and there is a dev split.

**Shape captions**: 64x64 images of 1-4 objects of distinct colours (the six
above), each a square, circle or triangle, small (9x9 pixels) or large (15x15),
placed uniformly at random with at least a pixel between boxes and at least
:data:`MIN_X_GAP` pixels between any two centres' ``x``, so that the
left-to-right order is clear.  The caption names the objects left to right
from a fixed grammar::

    caption := phrase ("left" "of" phrase)*      phrase := "a" SIZE COLOUR SHAPE

("a small red circle left of a large blue square left of a small green
triangle"; one object: "a large red circle").  The captions are written for
models that attend over the image as they describe it (Xu et al., "Show,
attend and tell: neural image caption generation with visual attention",
2015); since every word of a phrase names one object with a known box, where
the attention looks can be scored.  The **compositional split** keeps the
colour-shape pairs of :data:`HELD_OUT_PAIRS` out of every train, dev and test
image (a held-out colour takes one of the other two shapes) and puts at least
one in every ``test_compositional`` image, in the manner of CLEVR's CoGenT
conditions (Johnson et al., "CLEVR: A diagnostic dataset for compositional
language and elementary visual reasoning", 2017).  Splits: train 8000, dev 500,
test 1000, test_compositional 1000.

**Seeds.**  Image ``k`` of a split is drawn from ``random.Random`` seeded with
``"<name>/<seed>/<split>/<k>"`` (``name`` ``sort-of-clevr`` or
``shape-captions``), so that a split's images do not depend on the other
splits' sizes, and the same seed gives the same bytes on every machine.

**Storage** (:func:`ensure_generated`): ``<folder>/<split>.jsonl`` holds one
scene per line (its objects and questions, or caption), ``MANIFEST.json`` the
generator, version, seed, counts and each file's sha256 (see
:mod:`memnets.data.images`).  Images are rendered from the descriptions when
read (:func:`read_sort_of_clevr`, :func:`read_shape_captions`), which is cheap;
:func:`write_images` writes them as PNG for looking at (``memnets data NAME
--out DIR --images``).

This module is a leaf: it imports the standard library, numpy and
:mod:`memnets.data` (images, digit strings, paths).
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memnets.data import digit_strings
from memnets.data.images import (
    Box,
    CaptionExample,
    RowReader,
    SceneObject,
    box_centre,
    boxes_overlap,
    folder_writable,
    manifest_matches,
    read_manifest,
    write_generated,
    write_png,
)
from memnets.data.paths import user_cache_dir
from memnets.data.text import read_json_lines
from memnets.errors import ConfigError, DataError

#: The six colours (RGB) of Sort-of-CLEVR, in its order; the shape captions use them too.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255),
    "orange": (255, 156, 0), "gray": (128, 128, 128), "yellow": (255, 255, 0)}
#: The shapes of the shape captions.
SHAPES = ("square", "circle", "triangle")
#: The sizes of the shape captions: a box's side in pixels.
SIZES: dict[str, int] = {"small": 9, "large": 15}

#: Sort-of-CLEVR's colours: object ``i`` of a scene has colour ``i``.
SORT_OF_CLEVR_COLOURS = ("red", "green", "blue", "orange", "gray", "yellow")
#: Sort-of-CLEVR's shapes.
SORT_OF_CLEVR_SHAPES = ("square", "circle")
#: Every answer of Sort-of-CLEVR, in the order of the paper's generator.
SORT_OF_CLEVR_ANSWERS = ("yes", "no", "square", "circle", "1", "2", "3", "4", "5", "6")
SORT_OF_CLEVR_SIZE = 75
SORT_OF_CLEVR_HALF_SIZE = 5  # an object covers 2 * 5 + 1 = 11 pixels each way
NON_RELATIONAL_KINDS = ("shape", "horizontal", "vertical")
RELATIONAL_KINDS = ("closest", "furthest", "count")
QUESTIONS_PER_GROUP = 10  # non-relational, then relational, per image

SHAPE_CAPTION_SIZE = 64
MIN_OBJECTS, MAX_OBJECTS = 1, 4
#: Pixels at least between any two centres' ``x`` in a shape-caption scene.
MIN_X_GAP = 4
#: The colour-shape pairs of the compositional split: in ``test_compositional`` only.
HELD_OUT_PAIRS = (("red", "square"), ("green", "circle"), ("blue", "triangle"))

_PLACEMENT_TRIES = 200  # positions tried for one object before the scene starts again


# ---------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class Scene:
    """A generated image's content.

    Attributes:
        width, height: the image's size in pixels.
        objects: its :class:`~memnets.data.images.SceneObject`\\ s.
    """

    width: int
    height: int
    objects: tuple[SceneObject, ...]


@functools.lru_cache(maxsize=4096)
def _mask(shape: str, width: int, height: int) -> np.ndarray:
    x = np.arange(width) + 0.5 - width / 2  # pixel centres relative to the box's middle
    y = np.arange(height) + 0.5 - height / 2
    if shape == "square":
        mask = np.ones((height, width), dtype=bool)
    elif shape == "circle":
        mask = ((x[None, :] / (width / 2)) ** 2 + (y[:, None] / (height / 2)) ** 2) <= 1.0
    elif shape == "triangle":
        half = (width / 2) * (np.arange(1, height + 1) / height)  # (h,) half-width per row
        mask = np.abs(x[None, :]) <= half[:, None]
    else:
        raise ValueError(f"expected a shape among {', '.join(SHAPES)}, got {shape!r}")
    mask.setflags(write=False)
    return mask


def object_mask(shape: str, box: Box) -> np.ndarray:
    """``(y1 - y0, x1 - x0)`` bool: the pixels of the box that ``shape`` covers
    (the module docstring says how each shape is drawn)."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"expected a non-empty box (x0, y0, x1, y1), got {box!r}")
    return _mask(shape, x1 - x0, y1 - y0)


def render(scene: Scene) -> np.ndarray:
    """The scene as ``(H, W, 3)`` uint8 RGB: black, each object's shape in its colour
    inside its box (later objects over earlier ones where boxes overlap).

    Raises:
        ValueError: a colour outside :data:`COLOURS`, a shape outside
            :data:`SHAPES`, or a box not inside the image.
    """
    image = np.zeros((scene.height, scene.width, 3), dtype=np.uint8)
    for obj in scene.objects:
        x0, y0, x1, y1 = obj.box
        if not (0 <= x0 < x1 <= scene.width and 0 <= y0 < y1 <= scene.height):
            raise ValueError(f"expected boxes inside the {scene.width}x{scene.height} image, "
                             f"got {obj.box!r}")
        if obj.colour not in COLOURS:
            raise ValueError(f"expected a colour among {', '.join(COLOURS)}, got {obj.colour!r}")
        image[y0:y1, x0:x1][object_mask(obj.shape, obj.box)] = COLOURS[obj.colour]
    return image


def _place(rng: random.Random, sides: Sequence[int], width: int, height: int, *,
           gap: int = 0, min_dx: float = 0.0, forbid_middle: bool = False) -> list[Box] | None:
    """Square boxes of the given sides placed uniformly one after another, each
    apart from those before (``gap`` pixels between boxes, ``min_dx`` between
    centres' x); ``None`` if one found no place in :data:`_PLACEMENT_TRIES` tries."""
    boxes: list[Box] = []
    for side in sides:
        for _ in range(_PLACEMENT_TRIES):
            x0, y0 = rng.randint(0, width - side), rng.randint(0, height - side)
            box = (x0, y0, x0 + side, y0 + side)
            cx, cy = box_centre(box)
            if forbid_middle and (cx == width / 2 or cy == height / 2):
                continue
            if all(not boxes_overlap(box, b, gap) and abs(cx - box_centre(b)[0]) >= min_dx
                   for b in boxes):
                boxes.append(box)
                break
        else:
            return None
    return boxes


# ---------------------------------------------------------------------- Sort-of-CLEVR


@dataclass(frozen=True)
class Question:
    """A Sort-of-CLEVR question about a scene.

    Attributes:
        words: ``("what", "is", "the", "shape", "of", "the", "red", "object", "?")``.
        answer: one of :data:`SORT_OF_CLEVR_ANSWERS`.
        relational: whether the answer depends on other objects than the subject.
        kind: ``shape``, ``horizontal``, ``vertical`` (non-relational), ``closest``,
            ``furthest`` or ``count`` (relational).
        subject: the index of the object whose colour the question names.
        target: the index of the object where the answer is: the subject for
            shape, horizontal and vertical, the closest or furthest object for
            those, ``None`` for count.
    """

    words: tuple[str, ...]
    answer: str
    relational: bool
    kind: str
    subject: int
    target: int | None


@dataclass(frozen=True)
class QAExample:
    """A question about image ``image_id`` of its split, with its answer.

    Attributes:
        image_id: the index of the image in its split (an image's 20 questions
            share it).
        words, answer, relational, kind: as in :class:`Question`.
        target_box: the box of the :attr:`Question.target` object, ``None`` for count.
    """

    image_id: int
    words: tuple[str, ...]
    answer: str
    relational: bool
    kind: str
    target_box: Box | None


_QUESTION_WORDS = {
    "shape": "what is the shape of the {} object ?",
    "horizontal": "is the {} object on the left ?",
    "vertical": "is the {} object on the top ?",
    "closest": "what is the shape of the object closest to the {} object ?",
    "furthest": "what is the shape of the object furthest from the {} object ?",
    "count": "how many objects have the same shape as the {} object ?",
}


def _squared_distances(scene: Scene, subject: int) -> list[tuple[float, int]]:
    sx, sy = scene.objects[subject].centre
    return [((o.centre[0] - sx) ** 2 + (o.centre[1] - sy) ** 2, j)
            for j, o in enumerate(scene.objects) if j != subject]


def sort_of_clevr_question(scene: Scene, subject: int, kind: str) -> Question:
    """The question of ``kind`` about object ``subject`` of ``scene``, with its answer
    (the rules are in the module docstring).  A tie for the closest or furthest
    object (which generated scenes never have) goes to the lower index.

    Raises:
        ValueError: an unknown kind, a subject out of range or whose colour another
            object shares, a shape outside :data:`SORT_OF_CLEVR_SHAPES`, or a
            closest or furthest question about a scene of one object.
    """
    if kind not in _QUESTION_WORDS:
        raise ValueError(f"expected a kind among {', '.join(_QUESTION_WORDS)}, got {kind!r}")
    if not 0 <= subject < len(scene.objects):
        raise ValueError(f"expected a subject in 0..{len(scene.objects) - 1}, got {subject}")
    bad = [o.shape for o in scene.objects if o.shape not in SORT_OF_CLEVR_SHAPES]
    if bad:
        raise ValueError(f"expected shapes among {', '.join(SORT_OF_CLEVR_SHAPES)}, got "
                         f"{bad[0]!r}")
    colour = scene.objects[subject].colour
    same = sum(o.colour == colour for o in scene.objects)
    if same != 1:
        raise ValueError(f"expected one {colour} object, the subject, got {same}")
    if kind in ("closest", "furthest") and len(scene.objects) < 2:
        raise ValueError(f"expected at least two objects for a {kind} question, got one")
    return _question(scene, subject, kind)


def _question(scene: Scene, subject: int, kind: str) -> Question:
    """:func:`sort_of_clevr_question` without its checks."""
    me = scene.objects[subject]
    target: int | None = subject
    if kind == "shape":
        answer = me.shape
    elif kind == "horizontal":
        answer = "yes" if me.centre[0] < scene.width / 2 else "no"
    elif kind == "vertical":
        answer = "yes" if me.centre[1] < scene.height / 2 else "no"
    elif kind in ("closest", "furthest"):
        distances = _squared_distances(scene, subject)
        pick = min if kind == "closest" else max
        best = pick(d for d, _ in distances)
        target = next(j for d, j in distances if d == best)
        answer = scene.objects[target].shape
    else:  # count
        target = None
        answer = str(sum(o.shape == me.shape for o in scene.objects))
    return Question(_words(kind, me.colour), answer, kind in RELATIONAL_KINDS, kind, subject,
                    target)


@functools.lru_cache(maxsize=1024)
def _words(kind: str, colour: str) -> tuple[str, ...]:
    return tuple(_QUESTION_WORDS[kind].format(colour).split())


def _has_distance_ties(scene: Scene) -> bool:
    for s in range(len(scene.objects)):
        d = sorted(x for x, _ in _squared_distances(scene, s))
        if len(d) > 1 and (d[0] == d[1] or d[-1] == d[-2]):
            return True
    return False


def sort_of_clevr_scene(rng: random.Random, size: int = SORT_OF_CLEVR_SIZE
                        ) -> tuple[Scene, list[Question]]:
    """One Sort-of-CLEVR image and its 20 questions (10 non-relational, then 10
    relational), drawn from ``rng``; object ``i`` has colour
    ``SORT_OF_CLEVR_COLOURS[i]``.

    Args:
        rng: the generator to draw from (``random.Random(seed_string)``).
        size: the image's width and height in pixels.
    """
    side = 2 * SORT_OF_CLEVR_HALF_SIZE + 1
    if size < 2 * side:
        raise ValueError(f"expected size >= {2 * side}, got {size}")
    while True:
        shapes = [rng.choice(SORT_OF_CLEVR_SHAPES) for _ in SORT_OF_CLEVR_COLOURS]
        boxes = _place(rng, [side] * len(shapes), size, size, forbid_middle=True)
        if boxes is None:
            continue
        scene = Scene(size, size, tuple(
            SceneObject(c, s, None, box_centre(b), b)
            for c, s, b in zip(SORT_OF_CLEVR_COLOURS, shapes, boxes)))
        if not _has_distance_ties(scene):
            break
    questions = []
    for kinds in (NON_RELATIONAL_KINDS, RELATIONAL_KINDS):
        for _ in range(QUESTIONS_PER_GROUP):
            subject = rng.randrange(len(scene.objects))
            questions.append(_question(scene, subject, rng.choice(kinds)))
    return scene, questions


# ---------------------------------------------------------------------- shape captions


def shape_caption_scene(rng: random.Random, *, compositional: bool = False,
                        size: int = SHAPE_CAPTION_SIZE) -> Scene:
    """One shape-caption scene, its objects sorted left to right.

    Args:
        rng: the generator to draw from.
        compositional: hold at least one pair of :data:`HELD_OUT_PAIRS` (the first
            object drawn takes one, uniformly; the others any colour left and any
            shape); otherwise none (a held-out colour takes one of its other shapes).
        size: the image's width and height in pixels.
    """
    while True:
        n = rng.randint(MIN_OBJECTS, MAX_OBJECTS)
        if compositional:
            colour, shape = rng.choice(HELD_OUT_PAIRS)
            colours = [colour] + rng.sample([c for c in COLOURS if c != colour], n - 1)
            shapes = [shape] + [rng.choice(SHAPES) for _ in range(n - 1)]
        else:
            colours = rng.sample(list(COLOURS), n)
            shapes = [rng.choice([s for s in SHAPES if (c, s) not in HELD_OUT_PAIRS])
                      for c in colours]
        sizes = [rng.choice(tuple(SIZES)) for _ in range(n)]
        boxes = _place(rng, [SIZES[s] for s in sizes], size, size, gap=1, min_dx=MIN_X_GAP)
        if boxes is not None:
            break
    objects = [SceneObject(c, s, z, box_centre(b), b)
               for c, s, z, b in zip(colours, shapes, sizes, boxes)]
    objects.sort(key=lambda o: o.centre[0])
    return Scene(size, size, tuple(objects))


def shape_caption(objects: Sequence[SceneObject]) -> tuple[tuple[str, ...], tuple[int | None, ...]]:
    """The gold caption of ``objects`` (named left to right by their centres' ``x``)
    and, per word, the index in ``objects`` of the object it names.

    Example::

        >>> from memnets.data.scenes import SceneObject, shape_caption
        >>> objects = (SceneObject("blue", "square", "large", (40.5, 9.5), (33, 2, 48, 17)),
        ...            SceneObject("red", "circle", "small", (10.5, 30.5), (6, 26, 15, 35)))
        >>> words, named = shape_caption(objects)
        >>> " ".join(words)
        'a small red circle left of a large blue square'
        >>> named
        (None, 1, 1, 1, None, None, None, 0, 0, 0)
    """
    if not objects:
        raise ValueError("expected at least one object to caption, got none")
    words: list[str] = []
    named: list[int | None] = []
    order = sorted(range(len(objects)), key=lambda i: objects[i].centre[0])
    for k, i in enumerate(order):
        o = objects[i]
        if o.size is None:
            raise ValueError(f"expected objects with a size (small/large), got {o!r}")
        if k:
            words += ["left", "of"]
            named += [None, None]
        words += ["a", o.size, o.colour, o.shape]
        named += [None, i, i, i]
    return tuple(words), tuple(named)


_RANK = {**{w: 0 for w in SIZES}, **{w: 1 for w in COLOURS}, **{w: 2 for w in SHAPES}}


def name_objects_shapes(words: Sequence[str], objects: Sequence[SceneObject]
                        ) -> list[int | None]:
    """For a generated caption, the object each word names (``None`` for words that
    name none): what attention localisation is scored against.

    The words are cut into phrases: a phrase is a run of size, colour and shape
    words in the grammar's order (a word that cannot follow the one before, e.g.
    a second colour, starts a new phrase; any other word ends one).  A phrase
    names the object of its colour word; its size, colour and shape words name
    that object, whether or not they describe it right.  A phrase without a
    colour word, or whose colour no object has, names nothing.

    Example::

        >>> from memnets.data.scenes import SceneObject, name_objects_shapes
        >>> objects = (SceneObject("red", "circle", "small", (10.5, 30.5), (6, 26, 15, 35)),
        ...            SceneObject("blue", "square", "large", (40.5, 9.5), (33, 2, 48, 17)))
        >>> name_objects_shapes("a large red square left of a green circle".split(), objects)
        [None, 0, 0, 0, None, None, None, None, None]
    """
    by_colour: dict[str, int] = {}
    for i, o in enumerate(objects):
        by_colour.setdefault(o.colour, i)
    out: list[int | None] = [None] * len(words)
    phrase: list[int] = []  # positions of the current phrase's words

    def close() -> None:
        colour = next((words[p] for p in phrase if _RANK[words[p]] == 1), None)
        if colour in by_colour:
            for p in phrase:
                out[p] = by_colour[colour]
        phrase.clear()

    for p, w in enumerate(words):
        rank = _RANK.get(w)
        if rank is None:
            close()
            continue
        if phrase and rank <= _RANK[words[phrase[-1]]]:
            close()
        phrase.append(p)
    close()
    return out


# ---------------------------------------------------------------------- rows (JSONL)


def _object_row(o: SceneObject) -> dict:
    return {"box": list(o.box), "centre": [round(float(o.centre[0]), 3),
                                           round(float(o.centre[1]), 3)],
            "colour": o.colour, "shape": o.shape, "size": o.size}


def _scene_row(scene: Scene) -> dict:
    return {"height": scene.height, "objects": [_object_row(o) for o in scene.objects],
            "width": scene.width}


def _read_scene(field: RowReader, row: dict, shapes: Sequence[str],
                sizes: Sequence[str | None]) -> Scene:
    width = field(row, "width", int, lambda v: 1 <= v <= 4096, "an integer in 1..4096")
    height = field(row, "height", int, lambda v: 1 <= v <= 4096, "an integer in 1..4096")
    objects = []
    for item in field(row, "objects", list, lambda v: len(v) >= 1, "a non-empty list"):
        try:  # the common case, checked quickly; the slow path below says what is wrong
            colour, shape, size = item["colour"], item["shape"], item["size"]
            x0, y0, x1, y1 = box = item["box"]
            cx, cy = centre = item["centre"]
            if (colour in COLOURS and shape in shapes and size in sizes
                    and type(x0) is int and type(y0) is int and type(x1) is int
                    and type(y1) is int and 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
                    and type(cx) in (int, float) and type(cy) in (int, float)
                    and x0 <= cx <= x1 and y0 <= cy <= y1 and len(box) == 4
                    and len(centre) == 2 and len(item) == 5):
                objects.append(SceneObject(colour, shape, size, (float(cx), float(cy)),
                                           (x0, y0, x1, y1)))
                continue
        except (KeyError, TypeError, ValueError):
            pass
        colour = field(item, "colour", str, lambda v: v in COLOURS,
                       f"a colour among {', '.join(COLOURS)}")
        shape = field(item, "shape", str, lambda v: v in shapes,
                      f"a shape among {', '.join(shapes)}")
        size = field(item, "size", (str, type(None)), lambda v: v in sizes,
                     f"a size among {', '.join(map(str, sizes))}")
        box = field.box(item, "box", width, height)
        centre = field(item, "centre", list,
                       lambda v: len(v) == 2 and all(type(c) in (int, float) for c in v),
                       "a centre [x, y] of 2 numbers")
        if not (box[0] <= centre[0] <= box[2] and box[1] <= centre[1] <= box[3]):
            raise field.fail(f"the centre inside the box {list(box)}", centre)
        objects.append(SceneObject(colour, shape, size, (float(centre[0]), float(centre[1])),
                                   box))
    return Scene(width, height, tuple(objects))


def _sort_of_clevr_row(scene: Scene, questions: Sequence[Question]) -> dict:
    row = _scene_row(scene)
    row["questions"] = [{"answer": q.answer, "kind": q.kind, "relational": q.relational,
                         "subject": q.subject, "target": q.target, "words": " ".join(q.words)}
                        for q in questions]
    return row


def _sort_of_clevr_rows(seed: int, counts: dict[str, int]) -> dict[str, list[dict]]:
    return {split: [_sort_of_clevr_row(*sort_of_clevr_scene(
                random.Random(f"sort-of-clevr/{seed}/{split}/{k}"))) for k in range(n)]
            for split, n in counts.items()}


def _shape_caption_rows(seed: int, counts: dict[str, int]) -> dict[str, list[dict]]:
    out = {}
    for split, n in counts.items():
        rows = []
        for k in range(n):
            scene = shape_caption_scene(random.Random(f"shape-captions/{seed}/{split}/{k}"),
                                        compositional=split == "test_compositional")
            row = _scene_row(scene)
            row["caption"] = " ".join(shape_caption(scene.objects)[0])
            rows.append(row)
        out[split] = rows
    return out


# ---------------------------------------------------------------------- generation


@dataclass(frozen=True)
class _Generator:
    version: int
    counts: dict[str, int]
    rows: Callable[[int, dict[str, int]], dict[str, list[dict]]]  # (seed, counts) -> rows
    source: Callable[[], dict] | None = None  # extra manifest fields


#: The generated datasets by name (:func:`ensure_generated`): version, default counts, rows.
GENERATORS: dict[str, _Generator] = {
    "sort-of-clevr": _Generator(1, {"train": 9800, "dev": 200, "test": 200},
                                _sort_of_clevr_rows),
    "shape-captions": _Generator(1, {"train": 8000, "dev": 500, "test": 1000,
                                     "test_compositional": 1000}, _shape_caption_rows),
    "digit-strings": _Generator(digit_strings.GENERATOR_VERSION,
                                dict(digit_strings.DIGIT_STRING_COUNTS),
                                digit_strings.generate_rows, digit_strings.source_header),
}


def _generator(name: str) -> _Generator:
    if name not in GENERATORS:
        raise ConfigError(f"expected a generated dataset among {', '.join(GENERATORS)}, "
                          f"got {name!r}")
    return GENERATORS[name]


def dataset_counts(name: str, counts: dict[str, int] | None = None) -> dict[str, int]:
    """The images per split of generated dataset ``name``: its defaults, with
    ``counts`` replacing some (``{"train": 100}``).

    Raises:
        ConfigError: an unknown dataset or split, or a count that is not an integer >= 0.
    """
    gen = _generator(name)
    out = dict(gen.counts)
    for split, n in (counts or {}).items():
        if split not in out:
            raise ConfigError(f"{name}: expected splits among {', '.join(gen.counts)}, "
                              f"got {split!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"{name}: expected the {split} count to be an integer >= 0, "
                              f"got {n!r}")
        out[split] = n
    return out


def _header(name: str, seed: int, counts: dict[str, int]) -> dict:
    gen = _generator(name)
    header = {"generator": name, "version": gen.version, "seed": seed, "counts": counts}
    if gen.source is not None:
        header.update(gen.source())
    return header


def _forget_images(folder: Path) -> None:
    """Remove the PNGs that :func:`write_images` wrote for an earlier generation in
    ``folder`` (``images/<split>/<k>.png``, only in a folder whose manifest names a
    generator of :data:`GENERATORS`), since they no longer show its data."""
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("generator") not in GENERATORS:
        return
    for split in GENERATORS[manifest["generator"]].counts:
        sub = folder / "images" / split
        if not sub.is_dir():
            continue
        for png in sub.glob("*.png"):
            if png.stem.isdigit():
                png.unlink()
        with contextlib.suppress(OSError):
            sub.rmdir()  # when empty
    with contextlib.suppress(OSError):
        (folder / "images").rmdir()


def ensure_generated(name: str, folder: str | os.PathLike, *, seed: int = 0,
                     counts: dict[str, int] | None = None) -> Path:
    """The folder holding generated dataset ``name`` with this seed and these counts,
    generating it first unless its ``MANIFEST.json`` already says so (and every
    file has the sha256 it lists).

    If ``folder`` cannot be written (:func:`~memnets.data.images.folder_writable`),
    the data go to ``user_cache_dir() / name`` instead, and a note on standard
    error says so.  Generating again over an earlier generation removes the PNGs
    :func:`write_images` wrote for it.

    Args:
        name: ``"sort-of-clevr"``, ``"shape-captions"`` or ``"digit-strings"``.
        folder: where the dataset should be (e.g. ``data_root() / name``).
        seed: the generation's seed (an integer).
        counts: images per split, replacing the defaults (:func:`dataset_counts`).

    Returns:
        The folder used: ``folder``, or the fallback.

    Raises:
        ConfigError: an unknown name or split, a bad count or seed.
        DataError: neither folder can be written.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"expected an integer seed, got {seed!r}")
    counts = dataset_counts(name, counts)
    header = _header(name, seed, counts)
    folder = Path(folder).expanduser()
    if manifest_matches(folder, header):
        return folder
    if folder_writable(folder):
        _forget_images(folder)
        write_generated(folder, header, _generator(name).rows(seed, counts))
        return folder
    fallback = user_cache_dir() / name
    if manifest_matches(fallback, header):
        print(f"note: {folder} cannot be written; using the {name} data generated in "
              f"{fallback}", file=sys.stderr)
        return fallback
    if not folder_writable(fallback):
        raise DataError(f"expected a folder to generate {name} into, got neither {folder} "
                        f"nor {fallback} writable")
    print(f"note: {folder} cannot be written; generating {name} into {fallback}",
          file=sys.stderr)
    _forget_images(fallback)
    write_generated(fallback, header, _generator(name).rows(seed, counts))
    return fallback


# ---------------------------------------------------------------------- readers


def _split_file(name: str, folder: str | os.PathLike, split: str) -> Path:
    gen = _generator(name)
    if split not in gen.counts:
        raise ConfigError(f"{name}: expected a split among {', '.join(gen.counts)}, "
                          f"got {split!r}")
    return Path(folder) / f"{split}.jsonl"


def read_scenes(folder: str | os.PathLike, split: str, name: str = "sort-of-clevr"
                ) -> list[tuple[Scene, dict, RowReader]]:
    """The scenes of ``<folder>/<split>.jsonl`` of ``name`` (``sort-of-clevr`` or
    ``shape-captions``), each with its row and a field reader naming its line."""
    path = _split_file(name, folder, split)
    shapes = SORT_OF_CLEVR_SHAPES if name == "sort-of-clevr" else SHAPES
    sizes = (None,) if name == "sort-of-clevr" else tuple(SIZES)
    out = []
    for i, row in read_json_lines(path, f"a {name} file (one scene per line)"):
        field = RowReader(path, i)
        out.append((_read_scene(field, row, shapes, sizes), row, field))
    return out


def read_sort_of_clevr(folder: str | os.PathLike, split: str
                       ) -> tuple[list[np.ndarray], list[QAExample]]:
    """The images of a Sort-of-CLEVR split (rendered) and their questions.

    Args:
        folder: the dataset's folder (see :func:`ensure_generated`).
        split: ``train``, ``dev`` or ``test``.

    Returns:
        ``(images, examples)``: ``images[k]`` is image ``k`` as ``(75, 75, 3)``
        uint8; each :class:`QAExample` names its image by ``image_id``.

    Raises:
        DataError: a missing file, or a line that is not a scene with questions
            (``<file>:<line>: expected ..., got ...``).
    """
    images, examples = [], []
    for k, (scene, row, field) in enumerate(read_scenes(folder, split, "sort-of-clevr")):
        for q in field(row, "questions", list):
            examples.append(_qa_example(field, q, k, scene))
        images.append(render(scene))
    return images, examples


_ANSWER_SET = frozenset(SORT_OF_CLEVR_ANSWERS)


@functools.lru_cache(maxsize=4096)
def _split_words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _qa_example(field: RowReader, q, k: int, scene: Scene) -> QAExample:
    """The question row ``q`` of image ``k``; a row that is not a question raises."""
    n = len(scene.objects)
    try:  # the common case, checked quickly; the slow path below says what is wrong
        words, answer, kind = q["words"], q["answer"], q["kind"]
        relational, subject, target = q["relational"], q["subject"], q["target"]
        ok = (type(words) is str and bool(_split_words(words)) and answer in _ANSWER_SET
              and kind in _QUESTION_WORDS and relational is (kind in RELATIONAL_KINDS)
              and type(subject) is int and 0 <= subject < n
              and (target is None if kind == "count"
                   else type(target) is int and 0 <= target < n))
    except (KeyError, TypeError):
        ok = False
    if not ok:
        words = field(q, "words", str, lambda v: bool(v.split()), "a non-empty string")
        answer = field(q, "answer", str, lambda v: v in SORT_OF_CLEVR_ANSWERS,
                       f"an answer among {', '.join(SORT_OF_CLEVR_ANSWERS)}")
        kind = field(q, "kind", str, lambda v: v in _QUESTION_WORDS,
                     f"a kind among {', '.join(_QUESTION_WORDS)}")
        relational = field(q, "relational", bool, lambda v: v == (kind in RELATIONAL_KINDS),
                           f"{str(kind in RELATIONAL_KINDS).lower()} for a {kind} question")
        field(q, "subject", int, lambda v: 0 <= v < n, f"an object index in 0..{n - 1}")
        target = field(q, "target", (int, type(None)),
                       lambda v: (v is None) == (kind == "count") and (v is None or 0 <= v < n),
                       "null for a count question" if kind == "count"
                       else f"an object index in 0..{n - 1}")
    return QAExample(k, _split_words(words), answer, relational, kind,
                     None if target is None else scene.objects[target].box)


def read_shape_captions(folder: str | os.PathLike, split: str) -> list[CaptionExample]:
    """The examples of a shape-caption split: image, caption, objects (left to right)
    and the object each caption word names.

    Args:
        folder: the dataset's folder (see :func:`ensure_generated`).
        split: ``train``, ``dev``, ``test`` or ``test_compositional``.

    Raises:
        DataError: a missing file, or a line that is not a scene whose caption is
            the grammar's caption of its objects.
    """
    out = []
    for scene, row, field in read_scenes(folder, split, "shape-captions"):
        objects = tuple(sorted(scene.objects, key=lambda o: o.centre[0]))
        words, named = shape_caption(objects)
        caption = field(row, "caption", str)
        if caption.split() != list(words):
            raise field.fail(f"the caption of its objects, {' '.join(words)!r}", caption)
        out.append(CaptionExample(render(Scene(scene.width, scene.height, objects)), words,
                                  objects, named))
    return out


def write_images(name: str, folder: str | os.PathLike) -> int:
    """Write every image of generated dataset ``name`` in ``folder`` as
    ``<folder>/images/<split>/<k>.png``; return how many were written."""
    folder = Path(folder)
    written = 0
    for split in _generator(name).counts:
        if not (folder / f"{split}.jsonl").is_file():
            continue
        if name == "sort-of-clevr":
            images = read_sort_of_clevr(folder, split)[0]
        elif name == "shape-captions":
            images = [e.image for e in read_shape_captions(folder, split)]
        else:
            images = [e.image for e in digit_strings.read_digit_strings(folder, split)]
        for k, image in enumerate(images):
            write_png(folder / "images" / split / f"{k}.png", image)
        written += len(images)
    return written
