"""Shared flags (options/flags.py): every script declares them with the same names, help and default;
old spellings still parse; evaluation options are complete for the model."""
import argparse
import ast
import os

import pytest

from options import flags
from options.base_options import BaseOptions
from options.test_options import TestOptions
from options.train_options import TrainOptions, model_training_defaults
from scripts.run_entry_points import REPO, load_script
from util.color import AB_MAX, AB_NORM, AB_QUANT, L_CENT, L_NORM


def _script_parser(path: str, builder: str = "build_parser") -> argparse.ArgumentParser:
    return getattr(load_script(path), builder)()


#: script -> how to build its parser without running it.
PARSERS = {
    "train.py": lambda: TrainOptions().make_parser(),
    "test.py": lambda: TestOptions().make_parser(),
    "test_sweep.py": lambda: load_script("test_sweep.py").SweepOptions().make_parser(),
    "colorize.py": lambda: _script_parser("colorize.py"),
    "app.py": lambda: _script_parser("app.py"),
    "train_linear_classifiers.py": lambda: _script_parser("train_linear_classifiers.py"),
    "test_shape_bias.py": lambda: _script_parser("test_shape_bias.py"),
    "make_stylized_dataset.py": lambda: _script_parser("make_stylized_dataset.py"),
    "compare_models.py": lambda: _script_parser("compare_models.py"),
    "scripts/saturation_ab.py": lambda: _script_parser("scripts/saturation_ab.py"),
}

_MODEL_RUNNERS = {"gpu_ids", "seed", "verbose", "norm", "mask_cent", "loadSize", "batch_size", "num_threads",
                  *flags.SPEED, *flags.CHECKPOINT}
#: the shared flags each script must have (it declares them through options.flags).
EXPECTED = {
    "train.py": _MODEL_RUNNERS | {"fineSize"},
    "test.py": _MODEL_RUNNERS,
    "test_sweep.py": _MODEL_RUNNERS,
    "colorize.py": {"gpu_ids", "mask_cent", "norm", "loadSize", *flags.SPEED, *flags.CHECKPOINT},
    "app.py": {"gpu_ids", "mask_cent", "norm", "loadSize", *flags.SPEED, *flags.CHECKPOINT},
    "train_linear_classifiers.py": {"gpu_ids", "seed", "mask_cent", "loadSize", "fineSize", "batch_size",
                                    "num_threads", *flags.SPEED, *flags.CHECKPOINT},
    "test_shape_bias.py": {"gpu_ids", "seed", "mask_cent", "loadSize", "fineSize", "batch_size", "num_threads",
                           *flags.SPEED, *flags.CHECKPOINT},
    "make_stylized_dataset.py": {"gpu_ids", "seed", "batch_size", "num_threads"},
    "compare_models.py": {"which_epoch"},
    "scripts/saturation_ab.py": {"seed"},
}

#: (script, dest) -> the script's own default, each set with parser.set_defaults and a comment saying why.
OVERRIDES = {
    ("test.py", "batch_size"): 1,
    ("test_sweep.py", "batch_size"): 1,
    ("colorize.py", "name"): None,
    ("colorize.py", "checkpoints_dir"): None,
    ("colorize.py", "which_epoch"): None,
    ("app.py", "name"): None,
    ("app.py", "checkpoints_dir"): None,
    ("app.py", "which_epoch"): None,
    ("make_stylized_dataset.py", "batch_size"): 8,
    ("make_stylized_dataset.py", "num_threads"): 2,
}

#: scripts that also accept stylize-datasets' --dashed-spellings.
DASHED = {"make_stylized_dataset.py"}

#: (file, option) add_argument calls of a shared option string outside options/flags.py, each with
#: its reason; any other is a redeclaration that may drift from the shared one.
OWN_DECLARATIONS = {
    ("scripts/crash_test.py", "--seed"): "the harness's interruption points, random (printed) by default",
    ("scripts/make_sample_dataset.py", "--seed"): "runs as a plain file without the repository on sys.path",
    ("benchmarks/bench_prep.py", "--batch_size"): "benchmark workload",
    ("benchmarks/bench_prep.py", "--seed"): "benchmark workload",
    ("benchmarks/bench_train.py", "--batch_size"): "benchmark workload",
    ("benchmarks/bench_probes.py", "--batch_size"): "benchmark workload",
    ("benchmarks/bench_probes.py", "--gpu_ids"): "benchmark workload (CPU by default)",
    ("benchmarks/bench_probes.py", "--num_threads"): "benchmark workload",
    ("benchmarks/bench_sweep.py", "--batch_size"): "benchmark workload",
}


def _option_to_dest() -> dict:
    """Every spelling of a shared flag (dashed ones included) -> its dest."""
    table = {}
    for dest, (names, _) in flags.SHARED.items():
        for name in names:
            table[name] = table[name.replace("_", "-")] = dest
    return table


@pytest.fixture(scope="module")
def parsers():
    return {script: build() for script, build in PARSERS.items()}


def _reference_actions() -> dict:
    """dest -> the argparse action of options.flags' declaration."""
    reference = argparse.ArgumentParser(add_help=False)
    flags.add_flags(reference, *flags.SHARED)
    return {action.dest: action for action in reference._actions}


@pytest.mark.parametrize("script", sorted(PARSERS))
def test_shared_flags_are_declared_as_in_options_flags(parsers, script):
    parser = parsers[script]
    spelling, reference = _option_to_dest(), _reference_actions()
    found = set()
    for action in parser._actions:
        shared = {spelling[o] for o in action.option_strings if o in spelling}
        if not shared and action.dest not in flags.SHARED:
            continue
        dest = action.dest
        assert shared == {dest}, f"{script}: {action.option_strings} -> dest {dest!r}"
        declared = reference[dest]
        dashed = [o.replace("_", "-") for o in declared.option_strings if "_" in o] if script in DASHED else []
        assert action.option_strings == declared.option_strings + dashed, f"{script} --{dest}"
        assert action.help == declared.help, f"{script} --{dest}: a different help text"
        for key in ("type", "choices", "metavar", "nargs", "const", "required"):
            assert getattr(action, key) == getattr(declared, key), f"{script} --{dest}: a different {key}"
        expected = OVERRIDES.get((script, dest), declared.default)
        assert parser.get_default(dest) == expected, f"{script} --{dest}: default {parser.get_default(dest)!r}"
        found.add(dest)
    assert found == EXPECTED[script]


def test_every_override_is_used(parsers):
    for (script, dest), value in OVERRIDES.items():
        assert value != _reference_actions()[dest].default and parsers[script].get_default(dest) == value


def _product_files():
    """Relative paths of the product's Python files: the top-level scripts and every package but tests/."""
    for entry in sorted(os.listdir(REPO)):
        if entry.endswith(".py"):
            yield entry
        elif entry != "tests" and os.path.isfile(os.path.join(REPO, entry, "__init__.py")):
            for folder, _, files in os.walk(os.path.join(REPO, entry)):
                yield from (os.path.relpath(os.path.join(folder, f), REPO).replace(os.sep, "/")
                            for f in sorted(files) if f.endswith(".py"))


def test_no_other_declaration_of_a_shared_option():
    shared = set(_option_to_dest())
    found = set()
    for relative in _product_files():
        if relative == "options/flags.py":
            continue
        with open(os.path.join(REPO, relative), encoding="utf-8") as f:
            tree = ast.parse(f.read(), relative)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
                found |= {(relative, a.value) for a in node.args if isinstance(a, ast.Constant) and a.value in shared}
    assert found == set(OWN_DECLARATIONS)


def test_help_formatter_shows_defaults_once(parsers):
    for script, parser in parsers.items():
        text = parser.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text, script
        if "loadSize" in EXPECTED[script]:
            assert "--loadSize PX, --load_size PX" in text
    seed = [a for a in parsers["train.py"]._actions if a.dest == "seed"][0]
    assert flags.HelpFormatter("x")._get_help_string(seed).endswith("(default: %(default)s)")  # 0 is shown
    name = [a for a in parsers["colorize.py"]._actions if a.dest == "checkpoints_dir"][0]
    assert flags.HelpFormatter("x")._get_help_string(name) == name.help  # states its default itself


def _required(script: str) -> list:
    return {"colorize.py": ["-i", "in.png", "-o", "out.png", "--checkpoint", "w.pth"],
            "train_linear_classifiers.py": ["--linear_checkpoints", "out", "--dataroot_validation", "val"]
            }.get(script, [])


@pytest.mark.parametrize("script", ["colorize.py", "test.py", "test_sweep.py", "train.py",
                                    "train_linear_classifiers.py"])
@pytest.mark.parametrize("spelling", ["--loadSize", "--load_size"])
def test_load_size_spellings_are_one_flag(parsers, script, spelling):
    opt = parsers[script].parse_args(_required(script) + [spelling, "192"])
    assert opt.loadSize == 192 and not hasattr(opt, "load_size")


@pytest.mark.parametrize("script", ["train.py", "train_linear_classifiers.py"])
def test_fine_size_spellings_are_one_flag(parsers, script):
    for spelling in ("--fineSize", "--fine_size"):
        opt = parsers[script].parse_args(_required(script) + [spelling, "64"])
        assert opt.fineSize == 64 and not hasattr(opt, "fine_size")


def test_stylize_datasets_dashed_spellings(parsers):
    args = ["--content_dir", "c", "--style_dir", "s"]
    opt = parsers["make_stylized_dataset.py"].parse_args(args + ["--batch-size", "3", "--num-threads", "0",
                                                                 "--gpu-ids", "-1"])
    assert (opt.batch_size, opt.num_threads, opt.gpu_ids) == (3, 0, "-1")


def _probe_options(*extra: str):
    tlc = load_script("train_linear_classifiers.py")
    return tlc.parse(_required("train_linear_classifiers.py") + list(extra))[0]


def test_probe_subsets_new_and_old_names():
    """Corrected protocol: --train_subset / --val_subset, and their old names; the fork keeps
    --max_dataset_size (per epoch, as train.py's)."""
    new = _probe_options("--train_subset", "7", "--val_subset", "5")
    old = _probe_options("--max_dataset_size", "7", "--max_dataset_size_validation", "5")
    for opt in (new, old):
        assert (opt.train_subset, opt.val_subset, opt.max_dataset_size) == (7, 5, None)
    fork = _probe_options("--protocol", "fork", "--fineSize", "64", "--loadSize", "64", "--max_dataset_size", "7")
    assert (fork.max_dataset_size, fork.train_subset) == (7, None)


@pytest.mark.parametrize("flags_, message", [
    (["--protocol", "fork", "--fineSize", "64", "--train_subset", "7"], "--train_subset applies to --protocol corrected"),
    (["--train_subset", "7", "--max_dataset_size", "7"], "old name of --train_subset"),
    (["--val_subset", "0"], "--val_subset must be at least 1"),
])
def test_probe_subset_errors_are_one_line(flags_, message, capsys):
    with pytest.raises(SystemExit) as info:
        _probe_options(*flags_)
    assert info.value.code == 2 and message in capsys.readouterr().err.strip().splitlines()[-1]


def test_evaluation_options_are_complete_for_the_model():
    """The model reads the training options it needs directly: evaluation runs carry their
    training defaults, without accepting them as flags."""
    train = vars(TrainOptions().parse(["--gpu_ids", "-1"]))
    test = vars(TestOptions().parse(["--gpu_ids", "-1"]))
    training = model_training_defaults()
    assert set(training) == {"init_type", "classification", "lambda_A", "lambda_sat", "avg_loss_alpha", "sync_bn"}
    assert {k: test[k] for k in training} == {k: train[k] for k in training} == training
    assert test["isTrain"] is False and train["isTrain"] is True
    with pytest.raises(SystemExit):
        TestOptions().make_parser().parse_args(["--lambda_A", "2"])


def test_lab_defaults_are_util_color_constants():
    opt = BaseOptions().make_parser().parse_args([])
    assert (opt.l_cent, opt.l_norm, opt.ab_norm, opt.ab_max, opt.ab_quant) == (L_CENT, L_NORM, AB_NORM, AB_MAX,
                                                                               AB_QUANT)
