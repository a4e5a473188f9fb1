"""data/ folder layouts and transforms, and util.runtime device selection."""
import numpy as np
import pytest
import torch
from PIL import Image

from data.datasets import ImageFolderDataset, SkipLog, SkippedImage, collate_skip_bad, find_images, load_rgb
from data.transforms import eval_transform, train_transform
from util.runtime import resolve_device


def write_png(path, size=(20, 16), colour=(200, 30, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_train_layout_needs_class_folders(tmp_path):
    write_png(tmp_path / "flat" / "a.png")
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        ImageFolderDataset(str(tmp_path / "flat"), eval_transform(16), require_classes=True)
    write_png(tmp_path / "tree" / "zebra" / "z.png")
    write_png(tmp_path / "tree" / "apple" / "deep" / "a.png")  # nested below a class is still that class
    write_png(tmp_path / "tree" / "stray.png")  # not in a class folder: ignored in the training layout
    (tmp_path / "tree" / "zebra" / "readme.txt").write_text("not an image")
    data = ImageFolderDataset(str(tmp_path / "tree"), eval_transform(16), require_classes=True)
    assert data.classes == ["apple", "zebra"]
    assert [(p.split("/")[-1], label) for p, label in data.samples] == [("a.png", 0), ("z.png", 1)]


def test_eval_layout_flat_or_nested(tmp_path):
    write_png(tmp_path / "val" / "b.png")
    write_png(tmp_path / "val" / "a.jpg")
    write_png(tmp_path / "val" / "imgs" / "c.png")
    data = ImageFolderDataset(str(tmp_path / "val"), eval_transform(16), require_classes=False)
    assert [(p.split("/")[-1], label) for p, label in data.samples] == [("a.jpg", -1), ("b.png", -1), ("c.png", 0)]
    image, label = data[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 16) and label == -1
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images found"):
        ImageFolderDataset(str(tmp_path / "empty"), eval_transform(16), require_classes=False)
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        ImageFolderDataset(str(tmp_path / "missing"), eval_transform(16), require_classes=False)


def test_bad_file_gives_a_record_and_collate_sets_it_aside(tmp_path, capsys):
    write_png(tmp_path / "c" / "good.png")
    (tmp_path / "c" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    data = ImageFolderDataset(str(tmp_path), eval_transform(8))
    items = [data[i] for i in range(len(data))]
    bad = str(tmp_path / "c" / "bad.jpg")
    assert items[0] == SkippedImage(bad, "OSError: Truncated File Read")
    assert items[1][0].shape == (3, 8, 8)
    assert capsys.readouterr().err == ""  # the dataset does not warn: the script's SkipLog does, once
    images, labels, skipped = collate_skip_bad(items)
    assert images.shape == (1, 3, 8, 8) and labels.tolist() == [0] and skipped == [items[0]]
    images, labels, skipped = collate_skip_bad([items[0], SkippedImage("x.png", "empty file (0 bytes)")])
    assert images.shape == (0, 3, 0, 0) and labels.shape == (0,) and [s.path for s in skipped] == [bad, "x.png"]


def test_skip_log_warns_once_per_file_and_writes_the_sorted_list(tmp_path, capsys):
    log = SkipLog()
    records = [SkippedImage("/d/b.jpg", "empty file (0 bytes)"), SkippedImage("/d/a.png", "not an image")]
    assert log.add(records) == 2 and log.add(records[:1]) == 1  # per-batch counts count every record
    assert len(log) == 2 and log.paths == ["/d/a.png", "/d/b.jpg"]
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ["warning: skipping unreadable image /d/b.jpg: empty file (0 bytes)",
                                         "warning: skipping unreadable image /d/a.png: not an image"]
    listing = tmp_path / "out" / "skipped_images.txt"
    assert log.report(str(tmp_path / "out")) == str(listing)
    assert listing.read_text() == "/d/a.png\n/d/b.jpg\n"
    assert capsys.readouterr().out == f"skipped 2 unreadable image file(s); listed in {listing}\n"
    # A clean run prints nothing and removes the list an earlier run left in the same folder.
    assert SkipLog().report(str(tmp_path / "out")) is None
    assert not listing.exists() and capsys.readouterr() == ("", "")


def test_load_rgb_modes(tmp_path):
    Image.new("L", (5, 4), 77).save(tmp_path / "gray.png")
    Image.new("RGBA", (5, 4), (10, 20, 30, 0)).save(tmp_path / "rgba.png")
    Image.fromarray(np.full((4, 5), 65535 // 2, dtype=np.uint16)).save(tmp_path / "deep.png")
    for name in ("gray.png", "rgba.png", "deep.png"):
        img = load_rgb(str(tmp_path / name))
        assert img.mode == "RGB" and img.size == (5, 4)
    assert load_rgb(str(tmp_path / "gray.png")).getpixel((0, 0)) == (77, 77, 77)
    assert load_rgb(str(tmp_path / "deep.png")).getpixel((0, 0)) == (127, 127, 127)  # scaled, not clipped to 255
    assert find_images(str(tmp_path)) == sorted(str(tmp_path / n) for n in ("deep.png", "gray.png", "rgba.png"))


def test_train_transform_shapes_and_dtype():
    torch.manual_seed(0)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    out = train_transform(40, 32)(img)
    assert out.dtype == torch.uint8 and out.shape == (3, 32, 32)


def test_resolve_device(monkeypatch, capsys):
    assert resolve_device("-1") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    assert capsys.readouterr().err.strip().startswith("notice: no CUDA device found")
    with pytest.raises(SystemExit, match="no such CUDA device"):
        resolve_device("0")
    with pytest.raises(SystemExit, match="torchrun"):
        resolve_device("0,1")
