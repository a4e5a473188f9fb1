"""make_coco_dataset.py on the fake COCO 2017 tree of scripts/make_study_smoke_data.py.

That tree (FAKE_COCO) has real field names, images in non-sorted order, one image without
annotations, one with only a crowd region, a crowd region that flips the winner when counted, an
image where the largest area and the most instances disagree, an area tie, and a category name
with a space. The expected class of every image is written out below by hand.
"""
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

import make_coco_dataset as mk
from dataset_builders.coco import class_folder, label_images, load_instances
from data.datasets import ImageFolderDataset
from data.transforms import eval_transform
from scripts.make_study_smoke_data import write_fake_coco
from evaluation.probes import check_classes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["000_background", "001_person", "003_car", "010_traffic_light", "018_dog", "084_book"]
EXPECTED_TRAIN = {1: "001_person", 2: "018_dog", 3: "003_car", 4: "003_car", 5: "000_background",
                  6: "000_background", 7: "010_traffic_light"}
EXPECTED_VAL = {101: "018_dog", 102: "000_background", 103: "003_car"}


def name(image_id):
    return f"{image_id:012d}.jpg"


@pytest.fixture(scope="module")
def coco_src(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco") / "COCO 2017"  # a space in the path
    write_fake_coco(str(root))
    return root


@pytest.fixture
def coco(coco_src, tmp_path):
    """A private copy, for tests that damage it."""
    root = tmp_path / "src"
    shutil.copytree(coco_src, root)
    return root


def snapshot(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames + ["."]:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out.append((os.path.relpath(p, root), os.readlink(p) if os.path.islink(p) else None, st.st_size,
                        st.st_mtime_ns))
    return sorted(out)


def layout(out):
    """{folder: sorted entries} for train/<class>, val, val_cls/<class>."""
    result = {"val": sorted(os.listdir(out / "val"))}
    for top in ("train", "val_cls"):
        for cls in sorted(os.listdir(out / top)):
            result[f"{top}/{cls}"] = sorted(os.listdir(out / top / cls))
    return result


def expected_layout(train, val, classes=CLASSES):
    result = {"val": sorted(name(i) for i in val)}
    for top, labels in (("train", train), ("val_cls", val)):
        for cls in classes:
            result[f"{top}/{cls}"] = sorted(name(i) for i, c in labels.items() if c == cls)
    return result


def one_line_error(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("make_coco_dataset.py: error: "), err
    return lines[0]


def test_layout_classes_manifest_and_rerun(coco_src, tmp_path, capsys):
    src_before = snapshot(coco_src)
    out = tmp_path / "out"
    assert mk.main(["--coco_root", str(coco_src), "--out_path", str(out)]) == 0
    printed = capsys.readouterr().out
    assert layout(out) == expected_layout(EXPECTED_TRAIN, EXPECTED_VAL)
    assert sorted(os.listdir(out)) == ["manifest.csv", "train", "val", "val_cls"]
    # absolute symlinks into the source, which resolve; the unlisted file 000000000099.jpg is ignored
    link = out / "train" / "018_dog" / name(2)
    assert os.readlink(link) == os.path.join(os.path.realpath(coco_src), "train2017", name(2))
    assert os.readlink(out / "val" / name(101)) == os.readlink(out / "val_cls" / "018_dog" / name(101))
    assert (out / "val" / name(101)).read_bytes()[:2] == b"\xff\xd8"
    assert "084_book" in os.listdir(out / "train") and os.listdir(out / "train" / "084_book") == []
    with open(out / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["split", "image_id", "file_name", "category_id", "class_folder", "rule"]
    by_id = {int(r["image_id"]): r for r in rows}
    assert {i: r["class_folder"] for i, r in by_id.items()} == {**EXPECTED_TRAIN, **EXPECTED_VAL}
    assert by_id[5]["rule"] == "no_annotation" and by_id[6]["rule"] == "crowd_only" and by_id[5]["category_id"] == ""
    assert by_id[3] == {"split": "train", "image_id": "3", "file_name": name(3), "category_id": "3",
                        "class_folder": "003_car", "rule": "largest_area"}
    assert "7 images in 5 of 6 class folders, 2 in 000_background" in printed
    assert "3 images in 3 of 6 class folders, 1 in 000_background" in printed
    assert "14 created, 0 already present" in printed  # 7 + 2 x 3 links and the manifest

    # rerun: nothing changes; the source was never touched
    before = snapshot(out)
    assert mk.main(["--coco_root", str(coco_src), "--out_path", str(out)]) == 0
    assert "0 created, 14 already present" in capsys.readouterr().out
    assert snapshot(out) == before
    assert snapshot(coco_src) == src_before

    # the training layout works with this project's loaders: same classes in train and val_cls,
    # empty class folders accepted, and the probes' class check passes
    train = ImageFolderDataset(str(out / "train"), eval_transform(32))
    val_cls = ImageFolderDataset(str(out / "val_cls"), eval_transform(32))
    assert train.classes == val_cls.classes == CLASSES
    assert len(train) == 7 and len(val_cls) == 3
    assert [os.path.basename(p) for p, label in train.samples if train.classes[label] == "003_car"] == [name(3), name(4)]
    check_classes(train, val_cls)
    flat = ImageFolderDataset(str(out / "val"), eval_transform(32), require_classes=False)
    assert len(flat) == 3 and {label for _, label in flat.samples} == {-1}


def test_include_crowd_drop_unlabeled_and_copy(coco_src, tmp_path, capsys):
    out = tmp_path / "crowd"
    assert mk.main(["--coco_root", str(coco_src), "--out_path", str(out), "--include_crowd"]) == 0
    # image 3: the crowd person region (3000) now beats the car (900); image 6: its only annotation counts
    train = {**EXPECTED_TRAIN, 3: "001_person", 6: "001_person"}
    assert layout(out) == expected_layout(train, EXPECTED_VAL)
    assert "largest_area_with_crowd" in (out / "manifest.csv").read_text()
    # other options into the same folder: one line, nothing modified
    before = snapshot(out)
    capsys.readouterr()
    assert mk.main(["--coco_root", str(coco_src), "--out_path", str(out)]) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "nothing was modified" in err and "--include_crowd" in err
    assert snapshot(out) == before

    out = tmp_path / "dropped"
    assert mk.main(["--coco_root", str(coco_src), "--out_path", str(out), "--drop_unlabeled", "--copy"]) == 0
    train = {i: c for i, c in EXPECTED_TRAIN.items() if c != "000_background"}
    val = {i: c for i, c in EXPECTED_VAL.items() if c != "000_background"}
    assert layout(out) == expected_layout(train, val, CLASSES[1:])
    copied = out / "train" / "001_person" / name(1)
    assert not copied.is_symlink() and copied.read_bytes() == (coco_src / "train2017" / name(1)).read_bytes()
    assert "unlabeled images left out" in capsys.readouterr().out
    before = snapshot(out)
    assert mk.main(["--coco_root", str(coco_src), "--out_path", str(out), "--drop_unlabeled", "--copy"]) == 0
    assert snapshot(out) == before
    # links where copies are expected
    assert mk.main(["--coco_root", str(coco_src), "--out_path", str(out), "--drop_unlabeled"]) == 2
    assert "is in the way (not a symlink" in one_line_error(capsys.readouterr().err)


def test_rule_details():
    """Largest total area (not the most instances), ties to the lowest id, sums exact (math.fsum)
    so that the file order does not matter: 0.1 + 0.2 + 0.3 is 0.6000000000000001 added left to
    right but 0.6 right to left; exactly rounded it ties with 0.6."""
    class Fake:
        images = {1: "a.jpg", 2: "b.jpg", 3: "c.jpg"}
        annotations = [
            {"image_id": 1, "category_id": 84, "area": 100.0, "iscrowd": 0},
            {"image_id": 1, "category_id": 84, "area": 100.0, "iscrowd": 0},
            {"image_id": 1, "category_id": 18, "area": 150.0, "iscrowd": 0},  # fewer instances, smaller total
            {"image_id": 2, "category_id": 18, "area": 0.1, "iscrowd": 0},
            {"image_id": 2, "category_id": 18, "area": 0.2, "iscrowd": 0},
            {"image_id": 2, "category_id": 18, "area": 0.3, "iscrowd": 0},
            {"image_id": 2, "category_id": 3, "area": 0.6, "iscrowd": 0},
        ]
    assert 0.1 + 0.2 + 0.3 > 0.6 == 0.3 + 0.2 + 0.1
    assert label_images(Fake) == {1: 84, 2: 3, 3: None}
    Fake.annotations = Fake.annotations[:3] + Fake.annotations[3:][::-1]
    assert label_images(Fake) == {1: 84, 2: 3, 3: None}
    assert class_folder(10, "traffic light") == "010_traffic_light" and class_folder(1, "person") == "001_person"


def test_fake_json_has_the_real_fields(coco_src):
    data = json.loads((coco_src / "annotations" / "instances_train2017.json").read_text())
    assert list(data) == ["info", "licenses", "images", "annotations", "categories"]
    assert set(data["images"][0]) == {"id", "file_name", "width", "height", "license", "coco_url",
                                      "date_captured", "flickr_url"}
    assert set(data["annotations"][0]) == {"id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation"}
    crowd = [a for a in data["annotations"] if a["iscrowd"]]
    assert crowd and all(set(a["segmentation"]) == {"counts", "size"} for a in crowd)
    assert all(sum(a["segmentation"]["counts"][1::2]) == a["area"] for a in crowd)  # RLE ones = area
    assert all(isinstance(a["segmentation"], list) for a in data["annotations"] if not a["iscrowd"])
    assert [i["id"] for i in data["images"]] != sorted(i["id"] for i in data["images"])
    assert load_instances(str(coco_src / "annotations" / "instances_val2017.json")).images == {
        101: name(101), 102: name(102), 103: name(103)}


def test_fake_json_reads_with_torchvision_coco_detection(coco_src):
    # torchvision's CocoDetection needs pycocotools, which this project does not depend on
    pytest.importorskip("pycocotools")
    from torchvision.datasets import CocoDetection

    ds = CocoDetection(str(coco_src / "train2017"), str(coco_src / "annotations" / "instances_train2017.json"))
    assert len(ds) == 7


@pytest.mark.parametrize("damage, message", [
    (lambda d: d.pop("annotations"), "missing top-level list 'annotations'"),
    (lambda d: d["images"][0].pop("file_name"), "images[0] has no 'file_name'"),
    (lambda d: d["annotations"][0].update(image_id=999), "refers to image_id 999, which is not in images"),
    (lambda d: d["annotations"][0].update(category_id=12), "refers to category_id 12, which is not in categories"),
    (lambda d: d["annotations"][0].update(area="big"), "annotations[0].area has the wrong type ('big')"),
    (lambda d: d["images"][1].update(id=d["images"][0]["id"]), "appears twice"),
    (lambda d: d["images"][0].update(file_name="../x.jpg"), "is not a plain file name"),
])
def test_malformed_annotations_are_one_line_errors(coco, tmp_path, capsys, damage, message):
    path = coco / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    damage(data)
    path.write_text(json.dumps(data))
    assert mk.main(["--coco_root", str(coco), "--out_path", str(tmp_path / "out")]) == 2
    err = one_line_error(capsys.readouterr().err)
    assert message in err and str(path) in err
    assert not (tmp_path / "out").exists()


def test_missing_files_and_bad_json(coco, coco_src, tmp_path, capsys):
    out = tmp_path / "out"
    ann = coco / "annotations" / "instances_val2017.json"
    ann.write_text('{"images": [')
    assert mk.main(["--coco_root", str(coco), "--out_path", str(out)]) == 2
    assert "not a valid JSON file" in one_line_error(capsys.readouterr().err)
    ann.write_text('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "x", "area": NaN}]}')
    assert mk.main(["--coco_root", str(coco), "--out_path", str(out)]) == 2
    assert "NaN" in one_line_error(capsys.readouterr().err)
    ann.unlink()
    assert mk.main(["--coco_root", str(coco), "--out_path", str(out)]) == 2
    assert f"annotation file not found: {ann}" in one_line_error(capsys.readouterr().err)
    assert not out.exists()
    # an image listed in the JSON but missing on disk: one warning, left out
    shutil.copy(coco_src / "annotations" / "instances_val2017.json", ann)
    os.unlink(coco / "train2017" / name(4))
    assert mk.main(["--coco_root", str(coco), "--out_path", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: 1 of the 7 images listed in instances_train2017.json are missing from "
                   f"{os.path.realpath(coco)}/train2017 (first: {name(4)}); they are left out"]
    assert name(4) not in os.listdir(out / "train" / "003_car")
    assert f",{name(4)}," not in (out / "manifest.csv").read_text()


def test_conflicts_and_subprocess(coco_src, tmp_path):
    out = tmp_path / "out"
    script = [sys.executable, os.path.join(REPO, "make_coco_dataset.py"), "--coco_root", str(coco_src),
              "--out_path", str(out)]
    proc = subprocess.run(script, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    # a stray file in a class folder, then a wrong link: one-line errors, nothing modified
    (out / "train" / "018_dog" / "stray.jpg").write_bytes(b"")
    before = snapshot(out)
    proc = subprocess.run(script, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "stray.jpg is in the way" in one_line_error(proc.stderr)
    assert snapshot(out) == before
    os.unlink(out / "train" / "018_dog" / "stray.jpg")
    os.unlink(out / "val" / name(101))
    os.symlink("/elsewhere", out / "val" / name(101))
    proc = subprocess.run(script, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "is a symlink to /elsewhere" in one_line_error(proc.stderr)
    # an interrupted run (links missing, no manifest yet) is completed
    os.unlink(out / "val" / name(101))
    os.unlink(out / "manifest.csv")
    proc = subprocess.run(script, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "2 created, 12 already present" in proc.stdout
    # bad roots
    for args, message in ((["--coco_root", str(tmp_path / "none")], "COCO root not found"),
                          (["--coco_root", str(coco_src), "--out_path", str(coco_src / "inside")], "must not lie inside")):
        assert mk.main(args) == 2
