"""memnets.data.images: reading any image as RGB (conversions and resizing, with notes),
writing PNG byte for byte, and the generated datasets' files (manifest, JSONL errors,
the writable-folder check)."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from memnets.data.images import (
    RowReader,
    check_image_array,
    folder_writable,
    json_line,
    manifest_matches,
    read_image,
    read_manifest,
    write_generated,
    write_png,
)
from memnets.data.text import read_json_lines
from memnets.errors import DataError


def _pattern(h: int = 6, w: int = 5) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_png_round_trip_is_exact_and_says_nothing(tmp_path):
    image = _pattern()
    path = write_png(tmp_path / "sub" / "a.png", image)
    assert path == tmp_path / "sub" / "a.png"
    back, notes = read_image(path)
    assert back.dtype == np.uint8 and back.shape == (6, 5, 3)
    assert np.array_equal(back, image) and notes == []


def test_write_png_is_byte_identical_for_identical_arrays(tmp_path):
    a, b = write_png(tmp_path / "a.png", _pattern()), write_png(tmp_path / "b.png", _pattern())
    assert a.read_bytes() == b.read_bytes()
    other = _pattern()
    other[0, 0, 0] ^= 1
    assert write_png(tmp_path / "c.png", other).read_bytes() != a.read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_write_png_of_a_gray_array(tmp_path):
    gray = _pattern()[..., 0]
    back, notes = read_image(write_png(tmp_path / "g.png", gray))
    assert np.array_equal(back, np.repeat(gray[..., None], 3, axis=2))
    assert notes == ["converted L to RGB"]


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3)), np.zeros((4, 4, 4), np.uint8),
                                 np.zeros((0, 4, 3), np.uint8), [[1, 2]]])
def test_write_png_rejects_what_is_not_an_image(tmp_path, bad):
    with pytest.raises(ValueError, match=r"expected image as a \(H, W, 3\) or \(H, W\) uint8"):
        write_png(tmp_path / "x.png", bad)
    with pytest.raises(ValueError):
        check_image_array(bad)


def test_grayscale_is_repeated_into_three_channels(tmp_path):
    gray = np.arange(30, dtype=np.uint8).reshape(5, 6) * 8
    Image.fromarray(gray).save(tmp_path / "g.png")
    image, notes = read_image(tmp_path / "g.png")
    assert notes == ["converted L to RGB"]
    for c in range(3):
        assert np.array_equal(image[..., c], gray)


def test_one_bit_image(tmp_path):
    bits = np.array([[0, 1, 1], [1, 0, 0]], dtype=bool)
    Image.fromarray(bits).save(tmp_path / "b.png")
    image, notes = read_image(tmp_path / "b.png")
    assert notes == ["converted 1 to RGB"]
    assert np.array_equal(image[..., 0], bits.astype(np.uint8) * 255)


def test_rgba_is_composited_on_black(tmp_path):
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., :3] = [[[200, 100, 50]] * 3, [[10, 250, 255]] * 3]
    rgba[..., 3] = [[255, 128, 0], [1, 254, 77]]
    Image.fromarray(rgba).save(tmp_path / "a.png")
    image, notes = read_image(tmp_path / "a.png")
    assert notes == ["converted RGBA to RGB (composited on black)"]
    # reference: each channel times alpha / 255, rounded, in float64, pixel by pixel
    for y in range(2):
        for x in range(3):
            a = float(rgba[y, x, 3]) / 255.0
            want = [int(np.floor(float(v) * a + 0.5)) for v in rgba[y, x, :3]]
            assert image[y, x].tolist() == want, (y, x)
    assert image[0, 2].tolist() == [0, 0, 0] and image[0, 0].tolist() == [200, 100, 50]


def test_gray_with_alpha(tmp_path):
    la = np.array([[[100, 255], [100, 51]]], dtype=np.uint8)  # (1, 2, 2): gray, alpha
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    image, notes = read_image(tmp_path / "la.png")
    assert notes == ["converted LA to RGB (composited on black)"]
    assert image.tolist() == [[[100] * 3, [20] * 3]]  # 100 * 51 / 255 = 20


def test_palette_images_with_and_without_transparency(tmp_path):
    index = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    palette = [255, 0, 0, 0, 255, 0, 10, 20, 30] + [0] * (256 * 3 - 9)
    img = Image.fromarray(index, "P")
    img.putpalette(palette)
    img.save(tmp_path / "p.png")
    image, notes = read_image(tmp_path / "p.png")
    assert notes == ["converted P to RGB"]
    assert image.tolist() == [[[255, 0, 0], [0, 255, 0]], [[10, 20, 30], [0, 255, 0]]]
    img.save(tmp_path / "pt.png", transparency=1)  # colour 1 fully transparent
    image, notes = read_image(tmp_path / "pt.png")
    assert notes == ["converted P to RGB (composited on black)"]
    assert image.tolist() == [[[255, 0, 0], [0, 0, 0]], [[10, 20, 30], [0, 0, 0]]]


def test_sixteen_bit_grayscale_is_scaled_to_eight(tmp_path):
    value = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(value).save(tmp_path / "16.png")
    image, notes = read_image(tmp_path / "16.png")
    assert len(notes) == 1 and notes[0].startswith("converted I") and notes[0].endswith("to RGB")
    assert image[0, :, 0].tolist() == [0, 100, 255]


def test_jpeg_is_read(tmp_path):
    image = np.full((16, 16, 3), (200, 40, 90), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "a.jpg", quality=95)
    back, notes = read_image(tmp_path / "a.jpg")
    assert back.shape == (16, 16, 3) and notes == []
    assert np.abs(back.astype(int) - image).max() <= 4


def test_another_size_is_resized_with_a_note(tmp_path):
    image = np.full((80, 100, 3), (30, 60, 90), dtype=np.uint8)  # 100 wide, 80 high
    image[:, 50:] = (230, 200, 10)
    write_png(tmp_path / "big.png", image)
    out, notes = read_image(tmp_path / "big.png", size=(75, 75))
    assert out.shape == (75, 75, 3) and out.dtype == np.uint8
    assert notes == ["resized 100x80 to 75x75 (width x height)"]
    # far from the edge between the halves, bilinear keeps each half's colour
    assert out[:, :30].reshape(-1, 3).tolist() == [[30, 60, 90]] * (75 * 30)
    assert out[:, 45:].reshape(-1, 3).tolist() == [[230, 200, 10]] * (75 * 30)
    same, notes = read_image(tmp_path / "big.png", size=(80, 100))
    assert notes == [] and np.array_equal(same, image)


def test_notes_add_up(tmp_path):
    Image.fromarray(np.zeros((10, 20), np.uint8)).save(tmp_path / "g.png")
    out, notes = read_image(tmp_path / "g.png", size=(5, 5))
    assert out.shape == (5, 5, 3)
    assert notes == ["converted L to RGB", "resized 20x10 to 5x5 (width x height)"]


def test_first_frame_of_an_animation(tmp_path):
    frames = [Image.fromarray(np.full((4, 4, 3), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    image, notes = read_image(tmp_path / "a.gif")
    assert "read the first of 2 frames" in notes
    assert image.shape == (4, 4, 3) and int(image.max()) < 100


@pytest.mark.parametrize("size", [(0, 4), (4,), (4.0, 4), (True, 4)])
def test_bad_size_is_refused(tmp_path, size):
    write_png(tmp_path / "a.png", _pattern())
    with pytest.raises(ValueError, match="expected size=\\(H, W\\)"):
        read_image(tmp_path / "a.png", size=size)


def test_a_missing_image_is_named(tmp_path):
    with pytest.raises(DataError, match=f"expected an image file at {tmp_path / 'no.png'}, "
                                        f"found none"):
        read_image(tmp_path / "no.png")
    with pytest.raises(DataError, match="found none"):
        read_image(tmp_path)  # a folder is no image file


def test_a_corrupt_image_is_named(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(DataError) as e:
        read_image(junk)
    msg = str(e.value)
    assert msg.startswith(f"{junk}: expected an image file (PNG, JPEG, ...), got unreadable "
                          f"data (")
    assert "\n" not in msg
    good = io.BytesIO()
    Image.fromarray(_pattern(40, 40)).save(good, format="PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])  # truncated
    with pytest.raises(DataError, match=f"^{cut}: expected an image file"):
        read_image(cut)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=f"^{empty}: expected an image file"):
        read_image(empty)


# ---------------------------------------------------------------------- dataset folders


def test_folder_writable_is_a_real_test(tmp_path):
    assert folder_writable(tmp_path / "new" / "deeper")
    assert (tmp_path / "new" / "deeper").is_dir()
    assert not list((tmp_path / "new" / "deeper").iterdir())  # its probe is removed
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    # no folder can be made under a file, not even by root: a folder that cannot be written
    assert not folder_writable(blocker / "data")
    assert not folder_writable(blocker)


def test_write_generated_and_the_manifest(tmp_path):
    header = {"generator": "toy", "version": 3, "seed": 7, "counts": {"a": 2, "b": 1}}
    rows = {"a": [{"z": 1, "a": [1, 2]}, {"y": "é"}], "b": [{"k": None}]}
    path = write_generated(tmp_path / "d", header, rows)
    assert path == tmp_path / "d" / "MANIFEST.json"
    a = (tmp_path / "d" / "a.jsonl").read_bytes()
    assert a == b'{"a":[1,2],"z":1}\n{"y":"\\u00e9"}\n'  # sorted keys, ASCII
    manifest = json.loads(path.read_text())
    assert manifest == {**header, "files": {
        "a.jsonl": {"lines": 2, "sha256": hashlib.sha256(a).hexdigest()},
        "b.jsonl": {"lines": 1, "sha256": hashlib.sha256(b'{"k":null}\n').hexdigest()}}}
    assert read_manifest(tmp_path / "d") == manifest
    assert manifest_matches(tmp_path / "d", header)
    assert not manifest_matches(tmp_path / "d", {**header, "seed": 8})
    (tmp_path / "d" / "b.jsonl").write_bytes(b'{"k":0}\n')  # changed after generation
    assert not manifest_matches(tmp_path / "d", header)
    (tmp_path / "d" / "b.jsonl").unlink()
    assert not manifest_matches(tmp_path / "d", header)
    path.write_text("{broken")
    assert read_manifest(tmp_path / "d") is None
    assert not manifest_matches(tmp_path / "d", header)
    assert not manifest_matches(tmp_path / "nothing", header)


def test_write_generated_names_a_folder_it_cannot_write(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(DataError, match=f"{blocker / 'd'}.*expected to write the generated"):
        write_generated(blocker / "d", {"generator": "toy"}, {"a": [{}]})


def test_json_line_is_canonical():
    assert json_line({"b": 1.5, "a": [None, True]}) == '{"a":[null,true],"b":1.5}'


def test_read_json_lines_names_file_and_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": \n')
    with pytest.raises(DataError, match=rf"^{path}:4: expected a JSON object per line"):
        read_json_lines(path, "a toy file")
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=rf"^{path}:2: expected a JSON object per line "
                                        r"\(a toy file\), got list"):
        read_json_lines(path, "a toy file")
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert read_json_lines(path, "a toy file") == [(1, {"a": 1}), (3, {"a": 2})]
    with pytest.raises(DataError, match="expected a toy file at"):
        read_json_lines(tmp_path / "none.jsonl", "a toy file")


def test_row_reader_says_what_was_expected(tmp_path):
    field = RowReader(tmp_path / "f.jsonl", 12)
    assert field({"n": 3}, "n", int) == 3
    with pytest.raises(DataError, match=r"f.jsonl:12: expected a field 'm', got"):
        field({"n": 3}, "m", int)
    with pytest.raises(DataError, match=r"f.jsonl:12: expected 'n' to be int, got True"):
        field({"n": True}, "n", int)
    with pytest.raises(DataError, match=r"f.jsonl:12: expected 'n' to be small, got 9"):
        field({"n": 9}, "n", int, lambda v: v < 5, "small")
    assert field.box({"b": [0, 1, 3, 4]}, "b", 5, 5) == (0, 1, 3, 4)
    for bad in ([0, 1, 3], [0, 1, 3, 9], [3, 1, 3, 4], [0, 1, 3.0, 4]):
        with pytest.raises(DataError, match=r"f.jsonl:12: expected 'b' to be"):
            field.box({"b": bad}, "b", 5, 5)
