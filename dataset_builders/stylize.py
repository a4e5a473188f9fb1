"""Stylizing a whole image folder with AdaIN, as bethgelab/stylize-datasets' stylize.py, batched.

:func:`stylize_folder` is the engine of make_stylized_dataset.py: each content and style image is
encoded once, (content, style) pairs are decoded in batches, the styles of an image are drawn from
the seed and its path (:func:`choose_styles`), and a rerun resumes where the last one stopped. What
is the same as stylize-datasets and every difference: docs/datasets.md.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T
from tqdm import tqdm

from data.datasets import UnreadableImageError, load_rgb
from models.adain import MIN_SIDE, AdaIN, to_uint8_rounded
from util.fileio import atomic_write_text, remove_stale_temporaries
from util.image import save_pil_atomic

DEFAULT_EXTENSIONS = ("png", "jpeg", "jpg")
MANIFEST_NAME = "content_style_map.json"
SKIPPED_NAME = "skipped_imgs.txt"
#: Settings that change the pixels or the names of the outputs; a resume must use the same ones.
SETTING_KEYS = ("alpha", "content_size", "style_size", "crop", "seed", "num_styles")


class StylizeError(Exception):
    """A problem reported as one line (bad folders, a resume with other settings, a failed write)."""


def find_files(root: str, extensions: Sequence[str]) -> List[str]:
    """Relative POSIX paths of the files below ``root`` (recursively, following symlinked folders)
    whose names end in ``.<ext>`` for an ext in ``extensions``, case-sensitively, sorted part by
    part (pathlib's order, so ``a/b.jpg`` sorts by folder first). Hidden files are left out (this
    module's own temporary files are hidden)."""
    suffixes = tuple("." + e.lstrip(".") for e in extensions)
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs.sort()
        rel_folder = os.path.relpath(folder, root)
        for name in files:
            if name.endswith(suffixes) and not name.startswith("."):
                rel = name if rel_folder == "." else os.path.join(rel_folder, name)
                found.append(rel.replace(os.sep, "/"))
    return sorted(found, key=lambda p: p.split("/"))


def output_name(content: str, style: str) -> str:
    """``a/b/x.jpg`` + ``s/y.png`` -> ``a/b/x-stylized-y.jpg`` (relative POSIX paths)."""
    c, s = PurePosixPath(content), PurePosixPath(style)
    return str(c.with_name(f"{c.stem}-stylized-{s.stem}{c.suffix}"))


def choose_styles(content: str, num_styles: int, num_available: int, seed: int) -> List[int]:
    """``num_styles`` distinct indices into the sorted style list for one content image.

    The generator is seeded from (seed, content's relative path) through SHA-256, and the draw is a
    partial Fisher-Yates shuffle on ``random.Random.random()``, whose stream Python guarantees
    across versions, so the choice is the same on every machine and in every run.
    """
    digest = hashlib.sha256(f"{seed}\0{content}".encode("utf-8")).digest()
    rng = random.Random(int.from_bytes(digest[:16], "big"))
    pool = list(range(num_available))
    for i in range(num_styles):
        j = i + int(rng.random() * (num_available - i))
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:num_styles]


def assign_styles(contents: Sequence[str], styles: Sequence[str], num_styles: int, seed: int) -> Dict[str, List[str]]:
    """content relative path -> the relative paths of its styles (see choose_styles)."""
    return {c: [styles[i] for i in choose_styles(c, num_styles, len(styles), seed)] for c in contents}


def resize_transform(size: int, crop: int = 0) -> T.Compose:
    """PIL RGB -> uint8 3 x H x W: shorter side to ``size`` (0: unchanged), then a centre crop of
    ``crop`` x ``crop`` (0: none; an image smaller than the crop is padded with black)."""
    steps = [T.Resize(size)] if size else []
    steps += [T.CenterCrop(crop)] if crop else []
    return T.Compose(steps + [T.PILToTensor()])


class _Images(Dataset):
    """(index, uint8 3 x H x W tensor or a one-line error message) for each path."""

    def __init__(self, paths: Sequence[str], transform: Callable):
        self.paths, self.transform = list(paths), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            image = self.transform(load_rgb(self.paths[i]))
        except UnreadableImageError as e:
            return i, f"unreadable ({e})"
        if min(image.shape[1:]) < MIN_SIDE:
            return i, f"too small ({image.shape[2]} x {image.shape[1]} px after resizing; sides must be >= {MIN_SIDE} px)"
        return i, image


def _loader(paths: Sequence[str], transform: Callable, num_workers: int) -> DataLoader:
    return DataLoader(_Images(paths, transform), batch_size=None, shuffle=False, num_workers=num_workers)


def is_done(path: str) -> bool:
    """An output counts as done when it exists and is not empty."""
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False


def save_atomic(image: torch.Tensor, path: str) -> None:
    """Save a uint8 3 x H x W CPU tensor with PIL (format from the suffix, PIL's defaults) through
    a hidden temporary file renamed into place: a killed run leaves either no file or a whole one.
    (No fsync: a dataset of 100k images would wait on the disk for each; a power cut can still
    leave an empty file, which counts as not done.)"""
    save_pil_atomic(Image.fromarray(image.permute(1, 2, 0).numpy()), path, durable=False)


@contextlib.contextmanager
def no_decompression_bomb_limit() -> Iterator[None]:
    """Lift PIL's pixel limit (as stylize-datasets does) and restore it afterwards."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


@dataclass
class Settings:
    """The options of a run. Those in SETTING_KEYS decide which files are written and what is in
    them (recorded in the manifest); batch_size (pairs per decoder call) and num_workers (loader
    processes) only change the speed."""
    alpha: float = 1.0
    content_size: int = 0
    style_size: int = 512
    crop: int = 0
    seed: int = 0
    num_styles: int = 1
    batch_size: int = 8
    num_workers: int = 2

    def recorded(self) -> dict:
        return {k: getattr(self, k) for k in SETTING_KEYS}


@dataclass
class Report:
    """What a run did. Paths are absolute."""
    stylized: int = 0
    already_done: int = 0
    skipped_contents: List[Tuple[str, str]] = field(default_factory=list)  # (path, reason)
    skipped_styles: List[Tuple[str, str]] = field(default_factory=list)
    lost_pairs: int = 0  # outputs not written because their style image was skipped
    seconds: float = 0.0

    def summary(self) -> str:
        rate = f", {self.stylized / self.seconds:.1f} images/s" if self.seconds > 0 and self.stylized else ""
        text = (f"{self.stylized} stylized, {self.already_done} already done, {len(self.skipped_contents)} content "
                f"and {len(self.skipped_styles)} style image(s) skipped")
        if self.lost_pairs:
            text += f" ({self.lost_pairs} output(s) lost to skipped styles)"
        return text + f" in {self.seconds:.1f} s{rate}"


def read_manifest(path: str) -> Optional[dict]:
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        if not isinstance(manifest, dict) or not isinstance(manifest.get("assignment"), dict):
            raise ValueError("no 'assignment' object")
    except (OSError, ValueError) as e:
        raise StylizeError(f"{path}: not a manifest written by this tool ({e}); move it away or use another --output_dir") from None
    return manifest


def check_resume(manifest: Optional[dict], settings: Settings, assignment: Dict[str, List[str]], path: str) -> dict:
    """The assignment to record: the earlier run's merged with this one's. Raises StylizeError if
    the earlier run used other settings or chose other styles for the same image."""
    if manifest is None:
        return dict(assignment)
    old = manifest.get("settings", {})
    changed = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in settings.recorded().items() if old.get(k) != v]
    if changed:
        raise StylizeError(f"{path} was made with other settings ({'; '.join(changed)}); rerun with the same ones "
                           "or use another --output_dir")
    differ = [c for c, s in assignment.items() if c in manifest["assignment"] and manifest["assignment"][c] != s]
    if differ:
        raise StylizeError(f"{path}: the style list has changed since the earlier run ({len(differ)} content "
                           f"image(s) now draw other styles, e.g. {differ[0]}); use the same --style_dir and "
                           "--extensions, or another --output_dir")
    merged = dict(manifest["assignment"])
    merged.update(assignment)
    return dict(sorted(merged.items(), key=lambda kv: kv[0].split("/")))


def write_manifest(path: str, settings: Settings, content_dir: str, style_dir: str, assignment: dict,
                   finished: bool, report: Optional[Report] = None) -> None:
    manifest = {"content_dir": content_dir, "style_dir": style_dir, "settings": settings.recorded(),
                "finished": finished}
    if report is not None:
        manifest["last_run"] = {"stylized": report.stylized, "already_done": report.already_done,
                                "skipped_contents": len(report.skipped_contents),
                                "skipped_styles": len(report.skipped_styles)}
    manifest["assignment"] = assignment
    atomic_write_text(path, json.dumps(manifest, indent=1) + "\n")


class _Saver:
    """Writes images on a few threads (PIL's encoders release the GIL) with a bounded queue."""

    def __init__(self, threads: int = 4, max_pending: int = 64):
        self.pool = ThreadPoolExecutor(max_workers=threads)
        self.pending: List[Future] = []
        self.max_pending = max_pending

    def submit(self, image: torch.Tensor, path: str) -> None:
        self.pending.append(self.pool.submit(save_atomic, image, path))
        if len(self.pending) >= self.max_pending:
            self.drain(keep=self.max_pending // 2)

    def drain(self, keep: int = 0) -> None:
        while len(self.pending) > keep:
            self.pending.pop(0).result()  # re-raises a failed write

    def close(self) -> None:
        try:
            self.drain()
        finally:
            self.pool.shutdown(wait=True)


def stylize_folder(model: AdaIN, device: torch.device, content_dir: str, style_dir: str, output_dir: str,
                   settings: Settings, extensions: Sequence[str] = DEFAULT_EXTENSIONS,
                   progress: bool = True, warn: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> Report:
    """Stylize every content image under ``content_dir`` with ``settings.num_styles`` styles from
    ``style_dir`` into ``output_dir`` (docs/datasets.md says how). Returns what was done.

    Raises StylizeError (one line) for bad folders, too few styles, or a resume with other
    settings; a failed write (disk full) raises OSError.
    """
    start = time.time()
    content_dir, style_dir, output_dir = (os.path.abspath(p) for p in (content_dir, style_dir, output_dir))
    contents, styles = _find_inputs(content_dir, style_dir, output_dir, settings.num_styles, extensions, warn)
    manifest_path = os.path.join(output_dir, MANIFEST_NAME)
    assignment = assign_styles(contents, styles, settings.num_styles, settings.seed)
    recorded = check_resume(read_manifest(manifest_path), settings, assignment, manifest_path)
    write_manifest(manifest_path, settings, content_dir, style_dir, recorded, finished=False)

    report = Report()
    todo = _outputs_to_write(assignment, output_dir, report)
    # the output folders hold only this tool's files: every temporary in them is a killed run's
    remove_stale_temporaries({os.path.dirname(path) for pairs in todo.values() for _, path in pairs})
    with torch.inference_mode(), no_decompression_bomb_limit():
        stats = _style_statistics(model, device, style_dir, sorted({s for pairs in todo.values() for s, _ in pairs},
                                                                  key=lambda p: p.split("/")),
                                  settings, report, progress, warn)
        saver = _Saver()
        try:
            _stylize_contents(model, device, content_dir, todo, stats, settings, report, saver, progress, warn)
        finally:
            saver.close()

    _write_skipped(os.path.join(output_dir, SKIPPED_NAME), report)
    report.seconds = time.time() - start
    write_manifest(manifest_path, settings, content_dir, style_dir, recorded, finished=True, report=report)
    return report


def _find_inputs(content_dir: str, style_dir: str, output_dir: str, num_styles: int, extensions: Sequence[str],
                 warn: Callable[[str], None]) -> Tuple[List[str], List[str]]:
    """(content files, style files), relative to their folders (find_files). Raises StylizeError
    for a missing folder, an output folder inside the contents, no content, fewer than
    ``num_styles`` styles, or a content suffix PIL cannot write; warns once about two styles with
    one stem (they would give one output name)."""
    for what, folder in (("content", content_dir), ("style", style_dir)):
        if not os.path.isdir(folder):
            raise StylizeError(f"{what} folder not found: {folder}")
    real_out, real_content = os.path.realpath(output_dir), os.path.realpath(content_dir)
    if real_out == real_content or real_out.startswith(real_content + os.sep):
        raise StylizeError(f"--output_dir {output_dir} must not be inside --content_dir {content_dir} "
                           "(a rerun would stylize the outputs)")
    shown = " ".join(extensions)
    contents = find_files(content_dir, extensions)
    styles = find_files(style_dir, extensions)
    if not contents:
        raise StylizeError(f"no content images in {content_dir} (extensions, case-sensitive: {shown})")
    if len(styles) < num_styles:
        raise StylizeError(f"--num_styles {num_styles} but {style_dir} holds {len(styles)} style image(s) "
                           f"(extensions, case-sensitive: {shown})")
    unsaveable = sorted({PurePosixPath(c).suffix for c in contents
                         if Image.registered_extensions().get(PurePosixPath(c).suffix.lower()) not in Image.SAVE})
    if unsaveable:
        raise StylizeError(f"PIL cannot write {', '.join(unsaveable)} files (outputs keep the content's suffix); "
                           "leave that extension out of --extensions")
    _warn_shared_stem(styles, warn)
    return contents, styles


def _warn_shared_stem(styles: Sequence[str], warn: Callable[[str], None]) -> None:
    """Warn about the first two style files with one stem: a content image drawing both gets one output."""
    stems: Dict[str, str] = {}
    for s in styles:
        stem = PurePosixPath(s).stem
        if stem in stems:
            warn(f"warning: style images {stems[stem]} and {s} share the stem '{stem}': a content image that "
                 "draws both gets one output for them")
            return
        stems[stem] = s


def _outputs_to_write(assignment: Dict[str, List[str]], output_dir: str,
                      report: Report) -> Dict[str, List[Tuple[str, str]]]:
    """content -> [(style, output path)] still to write; the outputs already done are counted in ``report``."""
    todo: Dict[str, List[Tuple[str, str]]] = {}
    for content, chosen in assignment.items():
        outputs = {output_name(content, s): s for s in chosen}  # a shared style stem gives one output
        for out_rel, style in outputs.items():
            path = os.path.join(output_dir, *out_rel.split("/"))
            if is_done(path):
                report.already_done += 1
            else:
                todo.setdefault(content, []).append((style, path))
    return todo


def _write_skipped(path: str, report: Report) -> None:
    """The skipped content and style files, one absolute path a line; none: remove an earlier list."""
    skipped = [p for p, _ in report.skipped_contents] + [p for p, _ in report.skipped_styles]
    if skipped:
        atomic_write_text(path, "".join(p + "\n" for p in skipped))
    elif os.path.exists(path):
        os.unlink(path)  # everything listed there has been done since


def _style_statistics(model, device, style_dir, needed, settings, report, progress, warn):
    """style relative path -> (mean, std) of its relu4_1 features (each 1 x 512 x 1 x 1, on device)."""
    stats = {}
    paths = [os.path.join(style_dir, *s.split("/")) for s in needed]
    loader = _loader(paths, resize_transform(settings.style_size), settings.num_workers)
    for i, image in tqdm(loader, total=len(paths), desc="styles", unit="img", disable=not progress or not paths,
                         dynamic_ncols=True, file=sys.stdout):
        if isinstance(image, str):
            warn(f"warning: skipping style image {paths[i]}: {image}")
            report.skipped_styles.append((paths[i], image))
            continue
        stats[needed[i]] = model.style_statistics(image.to(device).unsqueeze(0).float().div_(255))
    return stats


def _stylize_contents(model, device, content_dir, todo, stats, settings, report, saver, progress, warn):
    """Encode the contents in same-size groups and decode their pairs in batches."""
    names = list(todo)
    paths = [os.path.join(content_dir, *c.split("/")) for c in names]
    loader = _loader(paths, resize_transform(settings.content_size, settings.crop), settings.num_workers)
    buckets: Dict[Tuple[int, int], List[Tuple[torch.Tensor, List[Tuple[str, str]]]]] = {}
    bar = tqdm(total=len(paths), desc="stylize", unit="img", disable=not progress or not paths,
               dynamic_ncols=True, file=sys.stdout)

    def flush(shape):
        group = buckets.pop(shape)
        images = torch.stack([image for image, _ in group]).to(device).float().div_(255)
        features = model.encode(images)
        pairs = [(k, style, path) for k, (_, todo_k) in enumerate(group) for style, path in todo_k]
        for start in range(0, len(pairs), settings.batch_size):
            chunk = pairs[start:start + settings.batch_size]
            index = torch.tensor([k for k, _, _ in chunk], device=device)
            mean = torch.cat([stats[s][0] for _, s, _ in chunk])
            std = torch.cat([stats[s][1] for _, s, _ in chunk])
            out = to_uint8_rounded(model.decode(features.index_select(0, index), mean, std, settings.alpha)).cpu()
            for j, (_, _, path) in enumerate(chunk):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                saver.submit(out[j], path)
            report.stylized += len(chunk)
        bar.update(len(group))

    for i, image in loader:
        pairs = todo[names[i]]
        if isinstance(image, str):
            warn(f"warning: skipping content image {paths[i]}: {image}")
            report.skipped_contents.append((paths[i], image))
            bar.update(1)
            continue
        usable = [(s, p) for s, p in pairs if s in stats]
        report.lost_pairs += len(pairs) - len(usable)
        if not usable:
            bar.update(1)
            continue
        shape = tuple(image.shape[1:])
        group = buckets.setdefault(shape, [])
        group.append((image, usable))
        if sum(len(u) for _, u in group) >= settings.batch_size:
            flush(shape)
        elif sum(len(g) for g in buckets.values()) > 4 * settings.batch_size:
            flush(max(buckets, key=lambda k: len(buckets[k])))  # many sizes: bound the memory held
    for shape in list(buckets):
        flush(shape)
    bar.close()
