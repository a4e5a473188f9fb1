"""make_stylized_dataset.py end to end on a tiny tree with random AdaIN weights (CPU)."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import make_stylized_dataset as mk
from models.adain import AdaIN, build_decoder, build_vgg_normalised, to_uint8_rounded
from scripts.make_study_smoke_data import write_fake_adain_weights
from dataset_builders.stylize import assign_styles, choose_styles, find_files, output_name


def photo(w, h, seed, mode="RGB"):
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    arr[: h // 2] //= 3  # some structure, not only noise
    img = Image.fromarray(arr)
    return img.convert(mode) if mode != "RGB" else img


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("adain")
    write_fake_adain_weights(str(root), seed=0)
    return root


@pytest.fixture
def tree(tmp_path):
    """content/: nested folders, mixed suffixes, an upper-case .JPG (ignored by default), a
    grayscale image, a corrupt file and an 8-px-wide image; styles/: three styles, one nested."""
    c = tmp_path / "content"
    (c / "cls_a" / "deep").mkdir(parents=True)
    (c / "cls_b").mkdir()
    photo(40, 30, 0).save(c / "cls_a" / "x.png")
    photo(33, 45, 1).save(c / "cls_a" / "deep" / "y.jpg")
    photo(24, 24, 2).save(c / "cls_b" / "w.jpeg")
    photo(24, 24, 3).save(c / "cls_b" / "upper.JPG")
    photo(30, 20, 4, mode="L").save(c / "cls_b" / "gray.png")
    (c / "cls_b" / "corrupt.jpg").write_bytes(b"this is not a jpeg")
    photo(8, 30, 5).save(c / "cls_b" / "thin.png")
    s = tmp_path / "styles"
    (s / "sub").mkdir(parents=True)
    photo(50, 40, 10).save(s / "s1.png")
    photo(30, 60, 11).save(s / "s2.jpg")
    photo(45, 45, 12).save(s / "sub" / "s3.png")
    return tmp_path


def run(tree, weights, *extra, out="out"):
    args = ["--content_dir", str(tree / "content"), "--style_dir", str(tree / "styles"), "--output_dir",
            str(tree / out), "--vgg", str(weights / "vgg_normalised.pth"), "--decoder", str(weights / "decoder.pth"),
            "--gpu_ids", "-1", "--num_threads", "0", "--style_size", "32"]
    return mk.main(args + [str(a) for a in extra])


def outputs(root):
    return sorted(os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/")
                  for d, _, files in os.walk(root) for f in files if not f.endswith((".json", ".txt")))


def mtimes(root):
    return {p: os.stat(os.path.join(root, p)).st_mtime_ns for p in outputs(root)}


def test_names_tree_sizes_skips_and_rerun(tree, weights, capsys):
    assert run(tree, weights, "--num_styles", 2) == 0
    printed = capsys.readouterr()
    out = tree / "out"
    manifest = json.loads((out / "content_style_map.json").read_text())
    assert manifest["finished"] is True and manifest["settings"]["num_styles"] == 2
    assignment = manifest["assignment"]
    # upper-case .JPG is not found with the default extensions (case-sensitive, as the reference)
    assert sorted(assignment) == ["cls_a/deep/y.jpg", "cls_a/x.png", "cls_b/corrupt.jpg", "cls_b/gray.png",
                                  "cls_b/thin.png", "cls_b/w.jpeg"]
    for content, styles in assignment.items():
        assert len(set(styles)) == 2 and set(styles) <= {"s1.png", "s2.jpg", "sub/s3.png"}
    expected = sorted(output_name(c, s) for c, styles in assignment.items() for s in styles
                      if c not in ("cls_b/corrupt.jpg", "cls_b/thin.png"))
    assert outputs(out) == expected and len(expected) == 8
    # names: <content stem>-stylized-<style stem><content suffix>, in the content's folder
    x_styles = [os.path.splitext(os.path.basename(s))[0] for s in assignment["cls_a/x.png"]]
    assert all(f"cls_a/x-stylized-{s}.png" in expected for s in x_styles)
    # sizes: 8 * ceil(H / 8) x 8 * ceil(W / 8) of the unresized content; RGB even for the grayscale one
    for name, size in (("cls_a/x", (40, 32)), ("cls_a/deep/y", (40, 48)), ("cls_b/gray", (32, 24)),
                       ("cls_b/w", (24, 24))):
        files = [f for f in expected if f.startswith(name + "-stylized-")]
        assert len(files) == 2
        for f in files:
            img = Image.open(out / f)
            assert img.size == size and img.mode == "RGB"
            assert img.format == {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}[os.path.splitext(f)[1]]
    # the corrupt and the too small content images are skipped, listed with absolute paths
    skipped = (out / "skipped_imgs.txt").read_text().splitlines()
    assert skipped == [str(tree / "content" / "cls_b" / "corrupt.jpg"), str(tree / "content" / "cls_b" / "thin.png")]
    assert "8 stylized, 0 already done, 2 content and 0 style image(s) skipped" in printed.out
    assert "corrupt.jpg: unreadable" in printed.err and "thin.png: too small (8 x 30 px" in printed.err
    assert not any(f.startswith(".") for f in os.listdir(out / "cls_a"))  # no temporary files left

    # rerun: nothing is recomputed, the files are untouched, the count is reported
    before = mtimes(out)
    assert run(tree, weights, "--num_styles", 2) == 0
    assert "0 stylized, 8 already done, 2 content" in capsys.readouterr().out
    assert mtimes(out) == before
    # an interrupted run: one output missing, one empty (a crash before any byte), a stale temp file
    os.unlink(out / expected[0])
    open(out / expected[1], "wb").close()
    stale = out / os.path.dirname(expected[0]) / ("." + os.path.basename(expected[0]) + ".123.tmp")
    stale.write_bytes(b"partial")
    assert run(tree, weights, "--num_styles", 2) == 0
    assert "2 stylized, 6 already done" in capsys.readouterr().out
    assert outputs(out) == expected and (out / expected[1]).stat().st_size > 0 and not stale.exists()
    # other settings in the same output folder are refused (one line)
    assert run(tree, weights, "--num_styles", 2, "--alpha", "0.5") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings (alpha 1.0 -> 0.5)" in err[0]


def test_upper_case_extension_and_dashed_flags(tree, weights, capsys):
    """--extensions JPG finds only the upper-case file; stylize-datasets' dashed spellings work."""
    args = ["--content-dir", str(tree / "content"), "--style-dir", str(tree / "styles"), "--output-dir",
            str(tree / "out"), "--vgg", str(weights / "vgg_normalised.pth"), "--decoder", str(weights / "decoder.pth"),
            "--gpu-ids", "-1", "--num-threads", "0", "--style-size", "32", "--extensions", "JPG", "png", "jpg",
            "--num-styles", "1", "--content-size", "16", "--crop", "12", "--batch-size", "3", "--seed", "7"]
    assert mk.main(args) == 0
    manifest = json.loads((tree / "out" / "content_style_map.json").read_text())
    assert "cls_b/upper.JPG" in manifest["assignment"] and "cls_b/w.jpeg" not in manifest["assignment"]
    assert manifest["settings"] == {"alpha": 1.0, "content_size": 16, "style_size": 32, "crop": 12, "seed": 7,
                                    "num_styles": 1}
    upper = [f for f in outputs(tree / "out") if f.startswith("cls_b/upper-stylized-")]
    assert len(upper) == 1 and upper[0].endswith(".JPG")
    # content resized to a shorter side of 16 then cropped to 12 x 12 -> 16 x 16 outputs; the
    # 8 x 30 image becomes 16 x 60 and is cropped to 12 x 12, so it is no longer too small
    for f in outputs(tree / "out"):
        assert Image.open(tree / "out" / f).size == (16, 16)
    assert "cls_b/thin-stylized-" in " ".join(outputs(tree / "out"))


def test_style_choice_seeded_per_image_and_independent_of_other_images():
    styles = [f"s{i:02d}.jpg" for i in range(30)]
    contents = [f"c/{i}.jpg" for i in range(20)]
    a = assign_styles(contents, styles, 3, seed=0)
    assert a == assign_styles(contents, styles, 3, seed=0)
    assert a != assign_styles(contents, styles, 3, seed=1)
    assert assign_styles(contents[5:6], styles, 3, seed=0) == {contents[5]: a[contents[5]]}
    assert all(len(set(v)) == 3 for v in a.values())
    picks = choose_styles("c/0.jpg", 30, 30, seed=0)
    assert sorted(picks) == list(range(30))  # all of them, each once
    # fixed values, so that a change of the draw is noticed (it would change published datasets)
    assert choose_styles("a/b.jpg", 2, 10, seed=0) == choose_styles("a/b.jpg", 2, 10, seed=0)
    assert choose_styles("a/b.jpg", 2, 10, seed=0) == [6, 5]


def test_same_seed_same_outputs_in_two_folders(tree, weights):
    assert run(tree, weights, "--seed", 3, out="o1") == 0
    assert run(tree, weights, "--seed", 3, "--batch_size", 1, "--num_threads", 1, out="o2") == 0
    m1, m2 = (json.loads((tree / o / "content_style_map.json").read_text()) for o in ("o1", "o2"))
    assert m1["assignment"] == m2["assignment"]
    assert outputs(tree / "o1") == outputs(tree / "o2")
    for f in outputs(tree / "o1"):
        if f.endswith(".png"):  # lossless: batched (8 pairs) and one pair at a time agree to 1 level
            a = np.asarray(Image.open(tree / "o1" / f), dtype=int)
            b = np.asarray(Image.open(tree / "o2" / f), dtype=int)
            assert np.abs(a - b).max() <= 1 and (a != b).mean() < 0.01


def test_alpha_zero_output_is_the_decoded_content_features(tree, weights):
    """What is checked: with --alpha 0 the saved PNG is the rounding of decoder(encoder(content))
    computed here directly (no style involved), and it differs from the --alpha 1 output. The
    script decodes in batches, so the convolutions sum in another order: a rounding may flip by
    one level (as between the two runs above); the --alpha 1 output is > 2 levels off on average."""
    assert run(tree, weights, "--alpha", "0", "--extensions", "png", out="a0") == 0
    assert run(tree, weights, "--alpha", "1", "--extensions", "png", out="a1") == 0
    vgg, decoder = build_vgg_normalised(), build_decoder()
    vgg.load_state_dict(torch.load(weights / "vgg_normalised.pth", weights_only=True))
    decoder.load_state_dict(torch.load(weights / "decoder.pth", weights_only=True))
    model = AdaIN(vgg, decoder)
    x = torch.from_numpy(np.array(Image.open(tree / "content" / "cls_a" / "x.png"))).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        expected = to_uint8_rounded(model.decoder(model.encode(x)))[0].permute(1, 2, 0).numpy()
    [name] = [f for f in outputs(tree / "a0") if f.startswith("cls_a/x-stylized-")]
    got = np.asarray(Image.open(tree / "a0" / name), dtype=int)
    assert np.abs(got - expected).max() <= 1 and (got != expected).mean() < 0.01
    assert np.abs(np.asarray(Image.open(tree / "a1" / name), dtype=int) - expected).mean() > 2


def test_bad_style_loses_only_its_pairs(tree, weights, capsys):
    (tree / "styles" / "sub" / "s3.png").write_bytes(b"broken")
    assert run(tree, weights, "--num_styles", 3, "--extensions", "png", "jpg") == 0
    printed = capsys.readouterr()
    out = tree / "out"
    # 3 readable contents (png, jpg) x 2 readable styles; the broken style is listed after the contents
    assert len(outputs(out)) == 3 * 2
    assert (out / "skipped_imgs.txt").read_text().splitlines()[-1] == str(tree / "styles" / "sub" / "s3.png")
    assert "6 stylized, 0 already done, 2 content and 1 style image(s) skipped (3 output(s) lost" in printed.out
    assert "skipping style image" in printed.err and "s3.png: unreadable" in printed.err


def test_one_line_errors(tree, weights, tmp_path, capsys):
    # missing weights: say where to get them
    assert mk.main(["--content_dir", str(tree / "content"), "--style_dir", str(tree / "styles"),
                    "--vgg", str(tmp_path / "nowhere" / "vgg_normalised.pth"), "--gpu_ids", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "AdaIN weights not found" in err[0] and "download_adain_models.sh" in err[0]
    # the z spelling is accepted when the s spelling is missing
    z = tmp_path / "z"
    z.mkdir()
    os.symlink(weights / "vgg_normalised.pth", z / "vgg_normalized.pth")
    assert mk.main(["--content_dir", str(tree / "content"), "--style_dir", str(tree / "styles"),
                    "--output_dir", str(tree / "zout"), "--vgg", str(z / "vgg_normalised.pth"),
                    "--decoder", str(weights / "decoder.pth"), "--gpu_ids", "-1", "--num_threads", "0",
                    "--extensions", "jpeg", "png"]) == 0
    assert "vgg_normalized.pth" in capsys.readouterr().out
    # argparse errors: alpha outside [0, 1], more styles than there are
    for extra, message in ((["--alpha", "1.5"], "--alpha must be between 0 and 1"),
                           (["--num_styles", "4"], "--num_styles 4 is more than the 3 style image(s)"),
                           (["--batch_size", "0"], "--batch_size must be at least 1")):
        with pytest.raises(SystemExit) as e:
            run(tree, weights, *extra)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1] and not any("Traceback" in line for line in err)
    # output inside the content folder, missing content folder
    assert run(tree, weights, out="content/inside") == 2
    assert "must not be inside --content_dir" in capsys.readouterr().err
    assert mk.main(["--content_dir", str(tmp_path / "none"), "--style_dir", str(tree / "styles"),
                    "--vgg", str(weights / "vgg_normalised.pth"), "--decoder", str(weights / "decoder.pth"),
                    "--gpu_ids", "-1"]) == 2
    assert "content folder not found" in capsys.readouterr().err


def test_find_files_is_sorted_part_by_part_and_case_sensitive(tmp_path):
    for rel in ("b.jpg", "a/z.jpg", "a b/c.jpg", "a/B.JPG", "a/.hidden.jpg", "a-c.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert find_files(str(tmp_path), ["jpg", "png"]) == ["a/z.jpg", "a b/c.jpg", "a-c.png", "b.jpg"]
    assert find_files(str(tmp_path), ["JPG"]) == ["a/B.JPG"]
