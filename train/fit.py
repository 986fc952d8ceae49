"""Train GL-AT (or the plain backbone) from TFRecord shards; with no arguments, the CPU demo.

    glat-fit --train "shards/train-*.tfrecord" --eval "shards/eval-*.tfrecord" --out runs/cnn10
    glat-fit --config train/configs/demo.py --steps 50      # a config file, flags override it
    python train/fit.py                                      # the demo: baseline vs GL-AT table
    glat-fit --demo                                          # the same demo
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import faulthandler
import json
import os
import runpy
import sys

# Before TensorFlow loads: the BFC allocator reuses batch buffers instead of faulting in
# fresh pages per batch (balanced input pipeline: 560 -> 915 clips per CPU-second here).
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
from glat_core import console  # noqa: E402  first: TensorFlow's start-up stays quiet
console.quiet_startup()  # before anything imports TensorFlow

from glat_core.cli_errors import add_debug_flag, one_line_errors  # noqa: E402
from train.run import FitConfig, train  # noqa: E402


def json_object(text):
    if isinstance(text, dict):  # from a config file
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def add_setting(parser, field) -> None:
    """One FitConfig field as a flag: its name, default, choices and help are the field's."""
    meta, default = field.metadata, field.default
    if default is dataclasses.MISSING:
        default = field.default_factory()
    flag = meta.get("flag") or "--" + field.name.replace("_", "-")
    options = {"dest": field.name, "help": meta.get("help")}
    if default is True:
        options["help"] = f"turn off: {options['help']}"
    if isinstance(default, bool):
        options["action"] = "store_false" if default else "store_true"
    else:
        kind = (json_object if isinstance(default, dict) else
                type(default) if default is not None else TYPES.get(field.name, str))
        options.update(type=kind, default=default, choices=meta.get("choices"),
                       metavar=meta.get("metavar"))
    parser.add_argument(flag, **{k: v for k, v in options.items() if v is not None})


# Flags whose default is None take these types (the others take their default's).
TYPES = {"random_crop": float, "checkpoint_every": int, "seed": int}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="glat-fit", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", help="a Python file defining CONFIG = {flag: value}; flags "
                                    "given on the command line override it")
    for field in dataclasses.fields(FitConfig):
        add_setting(p, field)
    p.add_argument("--demo", action="store_true",
                   help="the CPU demo (what `python train/fit.py` runs): synthetic set, "
                        "baseline and GL-AT, one table; writes demo_data/ and runs/demo/ here")
    console.add_verbose(p)
    add_debug_flag(p)
    return p


def parse_args(argv=None) -> FitConfig:
    """The FitConfig of a command line: a --config file's CONFIG, then the flags over it."""
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    if first.config:
        config = runpy.run_path(first.config).get("CONFIG")
        if not isinstance(config, dict):
            parser.error(f"--config {first.config} must define a dict CONFIG")
        unknown = sorted(set(config) - set(FitConfig.field_names()))
        if unknown:
            parser.error(f"--config {first.config}: unknown keys {unknown}")
        parser.set_defaults(**config)
    args = vars(parser.parse_args(argv))
    args.pop("config")
    args.pop("verbose")
    args.pop("debug")  # listed for --help; one_line_errors reads it from argv
    if args.pop("demo"):
        parser.error("--demo takes no other flags (it runs train/configs/demo.py)")
    if not args["train"] or not args["out"]:
        parser.error("--train and --out are required (--demo: the CPU demo)")
    try:
        return FitConfig(**args)
    except ValueError as error:
        parser.error(str(error))


# How long the interpreter's exit may take before the process ends anyway (a last resort:
# the loop releases its input pipeline itself; see Trainer._release_input).
EXIT_GRACE_SECONDS = 60


def main(argv=None) -> int:
    """The glat-fit command; from the command line (argv None) the process also ends if its
    exit hangs: faulthandler's watchdog needs no GIL, prints where it hung and exits."""
    if argv is None:
        atexit.register(faulthandler.dump_traceback_later, EXIT_GRACE_SECONDS, exit=True)
    return _main(argv)


@one_line_errors("glat-fit")
def _main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # a bare glat-fit would write demo_data/ and runs/ wherever it is run
        build_parser().print_usage(sys.stderr)
        print("glat-fit: error: --train and --out are required (--demo: the CPU demo)",
              file=sys.stderr)
        return 2
    if [a for a in argv if a != "--verbose"] == ["--demo"]:  # --debug: one_line_errors took it
        from train.demo import run_demo
        return run_demo()
    config = parse_args(argv)
    result = train(config)  # a ValueError or OSError: one line from one_line_errors
    if result["interrupted"] is not None:
        return 128 + int(result["interrupted"])  # the shell's code for "ended by this signal"
    best = result["best"]
    if best and result["is_chief"]:
        print(f"best {best['stream']} mAP {best['mAP']:.4f} at step {best['step']} -> "
              f"{os.path.join(config.out, 'best.keras')}", flush=True)
    return 0


if __name__ == "__main__":  # python train/fit.py: the demo when no other flag is given
    _argv = sys.argv[1:]
    raise SystemExit(main(_argv if set(_argv) - {"--verbose", "--debug"} else _argv + ["--demo"]))
