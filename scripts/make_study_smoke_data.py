"""Tiny stand-ins for every input of the study, for ``SMOKE=1 bash scripts/run_study.sh`` and tests.

    python scripts/make_study_smoke_data.py --out_path ./study_smoke/data

Nothing is downloaded: crops of scikit-image's photos for ImageNet (scripts/make_sample_dataset.py,
plus imagenet/val_classes/ for the probes), three style images, RANDOM weights in the format of the
AdaIN files (fake_adain_state_dicts), a fake COCO 2017 tree (FAKE_COCO), and for the shape-bias
stage a fake ILSVRC2012 tree of the 16 categories' classes and stimuli named as the cue-conflict set. smoke_data.txt,
written last, lists what is there; a rerun rewrites the same content. The study: docs/study.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataset_builders.geirhos16 import CATEGORIES, load_category_wnids  # noqa: E402
from models.adain import AdaIN, build_decoder, build_vgg_normalised  # noqa: E402
from scripts import make_sample_dataset  # noqa: E402

FAKE_IMAGE_SIZE = 64  # the fake COCO images are 64 x 64 JPEGs

#: Categories of the fake COCO files: real ids, names and supercategories; 84 (book) wins no image,
#: so its class folder stays empty.
FAKE_CATEGORIES = [(1, "person", "person"), (3, "car", "vehicle"), (10, "traffic light", "outdoor"),
                   (18, "dog", "animal"), (84, "book", "indoor")]

#: The fake COCO tree: split -> image id -> (source photo, annotations). An annotation is
#: (category id, iscrowd, (x, y, w, h) rectangle; its mask area is w * h). Each image tests a rule:
#:   1  person 1000 + dog 400                    -> 001_person
#:   2  dog 2000 vs 3 books of 100 each          -> 018_dog (largest area; "most instances" would say book)
#:   3  car 900 + a crowd person region of 3000  -> 003_car (crowd excluded); 001_person with --include_crowd
#:   4  dog 200 + 300 vs car 500 (a tie)         -> 003_car (the lower category id)
#:   5  no annotation                            -> 000_background (rule no_annotation)
#:   6  only a crowd person region               -> 000_background (crowd_only); 001_person with --include_crowd
#:   7  traffic light 600                        -> 010_traffic_light (a name with a space)
#:   val 101 dog 800 -> 018_dog; 102 none -> 000_background; 103 person 300 + car 1200 -> 003_car
#: train2017/000000000099.jpg is on disk but not in the JSON: it must be ignored.
FAKE_COCO: Dict[str, Dict[int, tuple]] = {
    "train2017": {
        1: ("astronaut", [(1, 0, (2, 2, 40, 25)), (18, 0, (40, 40, 20, 20))]),
        2: ("chelsea", [(18, 0, (5, 5, 50, 40)), (84, 0, (0, 50, 10, 10)), (84, 0, (20, 50, 10, 10)),
                        (84, 0, (40, 50, 10, 10))]),
        3: ("motorcycle_left", [(3, 0, (0, 0, 30, 30)), (1, 1, (2, 10, 60, 50))]),
        4: ("coffee", [(18, 0, (0, 0, 20, 10)), (18, 0, (0, 20, 20, 15)), (3, 0, (30, 30, 25, 20))]),
        5: ("rocket", []),
        6: ("retina", [(1, 1, (4, 4, 50, 30))]),
        7: ("immunohistochemistry", [(10, 0, (10, 10, 20, 30))]),
    },
    "val2017": {
        101: ("hubble_deep_field", [(18, 0, (0, 0, 40, 20))]),
        102: ("astronaut", []),
        103: ("coffee", [(1, 0, (0, 0, 15, 20)), (3, 0, (20, 20, 40, 30))]),
    },
}
FAKE_COCO_UNLISTED = ("train2017", 99, "rocket")


def coco_file_name(image_id: int) -> str:
    return f"{image_id:012d}.jpg"


def rle_of_rectangle(x: int, y: int, w: int, h: int, height: int, width: int) -> dict:
    """COCO's uncompressed RLE of a rectangle: run lengths of the column-major mask, starting with
    a run of zeros ({"counts": [...], "size": [height, width]})."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y:y + h, x:x + w] = 1
    flat = mask.flatten(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return {"counts": counts, "size": [height, width]}


def photo_crop(name: str, size: int, seed: int) -> Image.Image:
    return make_sample_dataset.random_crops(make_sample_dataset.load_photo(name), 1, size,
                                            np.random.default_rng(seed))[0]


def write_fake_coco(root: str, images: Optional[Dict[str, Dict[int, tuple]]] = None) -> None:
    """The fake COCO 2017 tree of FAKE_COCO (or ``images`` in the same form) under ``root``."""
    images = FAKE_COCO if images is None else images
    size = FAKE_IMAGE_SIZE
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    ann_id = 1
    for folder, entries in images.items():
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        records: List[dict] = []
        annotations: List[dict] = []
        # The real files are not sorted by id; neither are these.
        for image_id, (photo, anns) in sorted(entries.items(), reverse=True):
            name = coco_file_name(image_id)
            photo_crop(photo, size, image_id).save(os.path.join(root, folder, name), quality=90)
            records.append({"license": 1 + image_id % 8, "file_name": name,
                            "coco_url": f"http://images.cocodataset.org/{folder}/{name}", "height": size,
                            "width": size, "date_captured": "2013-11-14 16:28:13",
                            "flickr_url": f"http://farm1.staticflickr.com/1/{image_id}_0.jpg", "id": image_id})
            for category_id, iscrowd, (x, y, w, h) in anns:
                segmentation = (rle_of_rectangle(x, y, w, h, size, size) if iscrowd else
                                [[float(v) for v in (x, y, x + w, y, x + w, y + h, x, y + h)]])
                annotations.append({"segmentation": segmentation, "area": float(w * h), "iscrowd": iscrowd,
                                    "image_id": image_id, "bbox": [float(x), float(y), float(w), float(h)],
                                    "category_id": category_id, "id": ann_id})
                ann_id += 1
        instances = {
            "info": {"description": "COCO 2017 Dataset", "url": "http://cocodataset.org", "version": "1.0",
                     "year": 2017, "contributor": "COCO Consortium", "date_created": "2017/09/01"},
            "licenses": [{"url": f"http://creativecommons.org/licenses/{i}/2.0/", "id": i, "name": f"License {i}"}
                         for i in range(1, 9)],
            "images": records,
            "annotations": annotations,
            "categories": [{"supercategory": s, "id": i, "name": n} for i, n, s in FAKE_CATEGORIES],
        }
        with open(os.path.join(root, "annotations", f"instances_{folder}.json"), "w") as f:
            json.dump(instances, f, separators=(",", ":"))  # compact, as the real files
    folder, image_id, photo = FAKE_COCO_UNLISTED
    photo_crop(photo, size, image_id).save(os.path.join(root, folder, coco_file_name(image_id)))


def fake_adain_state_dicts(seed: int = 0):
    """(encoder, decoder) state_dicts of random weights in the layout of the pretrained files:
    He-normal convolutions and zero biases (the 1x1 input conv near the identity), then the last
    decoder conv rescaled so that photos stylized with photos come out with each channel at mean
    0.5 and standard deviation 0.2: stylized images are colourful, neither black nor saturated,
    so that the training on them does not drop them as grayscale."""
    torch.manual_seed(seed)
    vgg, decoder = build_vgg_normalised(), build_decoder()
    for net in (vgg, decoder):
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                torch.nn.init.zeros_(module.bias)
    last = decoder[-1]
    with torch.no_grad():
        vgg[0].weight.copy_(torch.eye(3).reshape(3, 3, 1, 1) + 0.1 * torch.randn(3, 3, 1, 1))
        photos = [torch.from_numpy(np.array(photo_crop(name, 48, i))).permute(2, 0, 1).float().div(255)
                  for i, name in enumerate(("rocket", "coffee", "chelsea", "astronaut"))]
        content, style = torch.stack(photos[:2]).repeat(2, 1, 1, 1), torch.stack(photos[2:] + photos[:2])
        out = AdaIN(vgg, decoder)(content, style)
        mean, std = out.mean(dim=(0, 2, 3)), out.std(dim=(0, 2, 3))
        last.weight.mul_((0.2 / std).reshape(3, 1, 1, 1))
        last.bias.copy_(0.5 - mean * 0.2 / std)
    return vgg.state_dict(), decoder.state_dict()


def write_fake_adain_weights(folder: str, seed: int = 0) -> None:
    vgg, decoder = fake_adain_state_dicts(seed)
    os.makedirs(folder, exist_ok=True)
    torch.save(vgg, os.path.join(folder, "vgg_normalised.pth"))
    torch.save(decoder, os.path.join(folder, "decoder.pth"))


def write_styles(folder: str) -> List[str]:
    import skimage.data

    os.makedirs(folder, exist_ok=True)
    Image.fromarray(skimage.data.logo()).save(os.path.join(folder, "logo.png"))  # RGBA
    Image.fromarray(skimage.data.colorwheel()).save(os.path.join(folder, "colorwheel.jpg"), quality=90)
    Image.fromarray(skimage.data.astronaut()[100:300, 150:350]).save(os.path.join(folder, "astronaut.jpg"), quality=90)
    return sorted(os.listdir(folder))


def write_val_classes(folder: str, size: int, per_class: int, seed: int = 1) -> int:
    """Crops of every training photo (other positions than the training crops) in class folders."""
    rng = np.random.default_rng(seed)
    for name in make_sample_dataset.TRAIN_PHOTOS:
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        for i, crop in enumerate(make_sample_dataset.random_crops(make_sample_dataset.load_photo(name), per_class,
                                                                  size, rng)):
            crop.save(os.path.join(folder, name, f"{name}_val_{i:03d}.png"))
    return per_class * len(make_sample_dataset.TRAIN_PHOTOS)


def noise_png(path: str, size: int, rng: np.random.Generator) -> None:
    """A size x size PNG of colourful uniform noise (it passes the probes' grayscale filter)."""
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def write_cue_conflict_stimuli(folder: str, per_category: int = 80, same_per_category: int = 5, size: int = 8,
                               seed: int = 0) -> int:
    """A stand-in for rgeirhos/texture-vs-shape's stimuli/style-transfer-preprocessed-512: the same
    tree and names (<shape>/<shape><n>-<texture><m>.png), noise images. Per shape category: the
    first ``same_per_category`` files with its own texture, then the other categories' textures in
    turn. The defaults give the published counts: 16 folders of 80, 1,280 files, 80 same-category."""
    rng = np.random.default_rng(seed)
    for shape in CATEGORIES:
        os.makedirs(os.path.join(folder, shape), exist_ok=True)
        others = [c for c in CATEGORIES if c != shape]
        for i in range(per_category):
            same = i < same_per_category
            j = i if same else i - same_per_category
            texture = shape if same else others[j % len(others)]
            n = j + 1 if same else j // len(others) + 1
            noise_png(os.path.join(folder, shape, f"{shape}{n}-{texture}{2 if same else 1}.png"), size, rng)
    return per_category * len(CATEGORIES)


def write_fake_ilsvrc16(root: str, wnids_per_category: int = 1, train_per_wnid: int = 2, val_per_wnid: int = 1,
                        size: int = 8, seed: int = 0):
    """A fake ILSVRC2012 tree for make_geirhos16_dataset.py: <root>/train/<wnid>/<wnid>_<k>.JPEG and
    <root>/val_by_class/<wnid>/ILSVRC2012_val_<n>.JPEG for the first ``wnids_per_category`` WordNet
    IDs of every category of resources/geirhos_16class_wnids.json (noise PNGs under JPEG names).
    Returns (in_path, val_by_class)."""
    rng = np.random.default_rng(seed)
    val_index = 0
    for wnids in load_category_wnids().values():
        for wnid in wnids[:wnids_per_category]:
            for split, count in (("train", train_per_wnid), ("val_by_class", val_per_wnid)):
                os.makedirs(os.path.join(root, split, wnid), exist_ok=True)
                for k in range(count):
                    val_index += split != "train"
                    name = f"{wnid}_{k}.JPEG" if split == "train" else f"ILSVRC2012_val_{val_index:08d}.JPEG"
                    noise_png(os.path.join(root, split, wnid, name), size, rng)
    return os.path.join(root), os.path.join(root, "val_by_class")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_path", default="./study_smoke/data", help="output folder")
    parser.add_argument("--size", type=int, default=40, help="side of the ImageNet stand-in crops (px)")
    parser.add_argument("--per_image", type=int, default=4, help="training crops per photo")
    args = parser.parse_args(argv)
    out = args.out_path
    imagenet = os.path.join(out, "imagenet")
    make_sample_dataset.main(["--out_path", imagenet, "--size", str(args.size), "--per_image", str(args.per_image),
                              "--val_per_image", "2"])
    n_val_classes = write_val_classes(os.path.join(imagenet, "val_classes"), args.size, per_class=2)
    styles = write_styles(os.path.join(out, "styles"))
    write_fake_adain_weights(os.path.join(out, "adain"))
    write_fake_coco(os.path.join(out, "coco"))
    write_fake_ilsvrc16(os.path.join(out, "ilsvrc16"))
    n_stimuli = write_cue_conflict_stimuli(os.path.join(out, "cue_conflict", "style-transfer-preprocessed-512"),
                                           per_category=2, same_per_category=1)
    listing = (f"imagenet/: scripts/make_sample_dataset.py output; val_classes/: {n_val_classes} crops\n"
               f"styles/: {', '.join(styles)}\n"
               "adain/: RANDOM weights in the format of vgg_normalised.pth and decoder.pth (not a trained model)\n"
               f"coco/: fake COCO 2017 tree, {sum(len(v) for v in FAKE_COCO.values())} images\n"
               "ilsvrc16/: fake ILSVRC2012 train/ and val_by_class/, one class per Geirhos category\n"
               f"cue_conflict/: {n_stimuli} noise images named as the cue-conflict stimuli\n")
    with open(os.path.join(out, "smoke_data.txt"), "w") as f:
        f.write(listing)
    print(f"smoke data in {out}:\n{listing}", end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
