"""README.md's commands run as printed: every flag of every command is checked against the real parser.

Fenced bash blocks and inline `python ...` / `glat-...` spans are split into commands; each of
ours is handed to its CLI with argparse stopped right after parsing (nothing runs). An unknown
flag, a bad value, a missing required flag, an unknown program or a line ending in `\\` fails.
"""

import argparse
import contextlib
import importlib
import io
import json
import re
import shlex

import pytest

from tests.harness import bench_module
from tests.paths import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
NOT_OURS = ("pip", "docker", "curl", "arecord", "saved_model_cli", "tensorboard",
            "python -m pytest", "python -c")
ELIDED = "..."  # "python -m edge_runtime.stream ... --streaming": arguments left out on purpose


class Parsed(BaseException):
    """Raised instead of returning from parse_args, so that no CLI runs its job (a
    BaseException: the CLIs' one-line error wrapper catches only Exception)."""


def _module_main(name):
    return lambda argv: importlib.import_module(name).main(argv)


def _bench_main(name):
    return lambda argv: bench_module(name).main(argv)


def _fit(argv):
    if argv == ["--demo"]:
        raise Parsed(None)  # the demo
    from train.fit import parse_args
    raise Parsed(parse_args(argv))  # its own checks (--train and --out) come after argparse's


def _fit_script(argv):
    """`python train/fit.py` with no flags is the demo (glat-fit with none is an error)."""
    return _fit(argv or ["--demo"])


_fit.parses_itself = _fit_script.parses_itself = True  # nothing to run: no need to stop argparse


PROGRAMS = {
    "glat-ingest": _module_main("glat_tf.data.ingest"),
    "glat-fit": _fit,
    "glat-eval": _module_main("train.evaluate"),
    "glat-export": _module_main("export.cli"),
    "glat-tag": _module_main("glat_core.tag"),
    "python -m export.serving_answer": _module_main("export.serving_answer"),
    "python train/fit.py": _fit_script,
    "python -m train.fit": _fit_script,
    "python train/experiments.py": _module_main("train.experiments"),
    "python -m train.realset_experiments": _module_main("train.realset_experiments"),
    "python -m train.inference_cost": _module_main("train.inference_cost"),
    "python -m edge_runtime.stream": _module_main("edge_runtime.stream"),
    "python -m glat_tf.data.synthetic": _module_main("glat_tf.data.synthetic"),
    "python -m glat_tf.convert.panns": _module_main("glat_tf.convert.panns"),
    **{f"python bench/{p.name}": _bench_main(p.stem)
       for p in (ROOT / "bench").glob("*.py")},
}


def _join_lines(text: str) -> list[str]:
    """Shell lines, continuations joined: an odd number of trailing backslashes continues."""
    lines, current = [], ""
    for line in text.splitlines():
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2:
            current += line[:-1] + " "
        else:
            lines.append(current + line)
            current = ""
    return lines + ([current] if current else [])


def _split(tokens: list[str]) -> list[list[str]]:
    """One token list per command of a line: split at && ; | and cut redirections."""
    commands, current = [], []
    for token in tokens:
        if token in ("&&", "||", ";", "|"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    out = []
    for command in commands:
        while command and re.fullmatch(r"[A-Z_]+=.*", command[0]):  # TF_CONFIG=... glat-fit
            command = command[1:]
        if ">" in command:
            command = command[:command.index(">")]
        if command:
            out.append(command)
    return out


def readme_commands(text: str = README) -> list[tuple[str, list[str]]]:
    """(line as printed, tokens) for every command in the Markdown's bash blocks and inline spans."""
    found = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        for line in _join_lines(block):
            if line.strip():
                found += [(line.strip(), c) for c in _split(shlex.split(line, comments=True))]
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    for span in re.findall(r"`([^`]+)`", prose):
        span = " ".join(span.split())
        if span.startswith(("python ", "glat-")):
            for tokens in _split(shlex.split(span)):
                # `glat-export report` without a flag names a tool; `python x.py` runs one.
                if tokens[0] == "python" or any(t.startswith("-") for t in tokens):
                    found.append((span, tokens))
    return found


def _program(tokens: list[str]) -> tuple[str, list[str]]:
    """("python -m edge_runtime.stream", the arguments) for a command's tokens."""
    if tokens[0] != "python":
        return tokens[0], tokens[1:]
    if tokens[1] == "-m":
        return " ".join(tokens[:3]), tokens[3:]
    return " ".join(tokens[:2]), tokens[2:]


def check(tokens: list[str]) -> str | None:
    """None if the command's flags parse, else what the parser said."""
    name, argv = _program(tokens)
    if name in PROGRAMS:
        pass
    elif tokens[0] in NOT_OURS or name in NOT_OURS or " ".join(tokens[:2]) in NOT_OURS:
        return None
    else:
        return f"unknown program {name!r} (neither one of our CLIs nor listed in NOT_OURS)"
    argv = [t.strip("[]") for t in argv]  # [--gzip]: an optional flag, still checked
    elided = ELIDED in argv
    # An elision standing for arguments goes; one standing for a flag's value stays a value.
    argv = [t for i, t in enumerate(argv)
            if t != ELIDED or (i > 0 and argv[i - 1].startswith("--"))]
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise Parsed(original(self, args, namespace))

    stderr = io.StringIO()
    try:
        if not getattr(PROGRAMS[name], "parses_itself", False):
            argparse.ArgumentParser.parse_args = parse_then_stop
        with contextlib.redirect_stderr(stderr):
            PROGRAMS[name](argv)
    except Parsed:
        return None
    except SystemExit:
        message = stderr.getvalue().strip().splitlines()[-1]
        if elided and "arguments are required" in message:
            return None
        return message
    finally:
        argparse.ArgumentParser.parse_args = original
    return "did not parse its arguments"


def test_every_readme_command_parses():
    commands = readme_commands()
    programs = {_program(tokens)[0] for _, tokens in commands}
    # The extraction itself: these must be found, or the test checks nothing.
    assert {"glat-ingest", "glat-fit", "glat-eval", "glat-export", "python -m edge_runtime.stream",
            "python -m glat_tf.data.synthetic", "python train/fit.py",
            "python bench/edge_latency.py"} <= programs, programs
    failures = [f"{line}\n    -> {error}" for line, tokens in commands
                if (error := check(tokens)) is not None]
    assert not failures, "README commands that do not parse:\n" + "\n".join(failures)


@pytest.mark.parametrize("line, reason", [
    ("glat-fit --train a --out b --no-such-flag 1", "unrecognized arguments"),
    ("glat-fit --train a --steps 5", "--out are required"),
    ("glat-fit", "--out are required"),
    ("glat-fit --demo --steps 5", "--demo takes no other flags"),
    ("glat-eval --model m.keras --out x", "required: --eval"),
    ("glat-export tflite --model m.keras --out d --streams", "unrecognized arguments"),
    ("python -m edge_runtime.stream --input clip.wav --export lite/ --fast", "unrecognized arguments"),
    ("python -m glat_tf.data.synthetic --out a --seed x", "invalid int value"),
    ("grep x README.md", "unknown program"),
])
def test_a_wrong_command_is_caught(line, reason):
    assert reason in (check(shlex.split(line)) or ""), line


def test_a_doubled_line_continuation_is_caught():
    # "\\\\" ending a line is a literal backslash to the shell, and the next line a new command.
    commands = readme_commands("```bash\nglat-fit --train a \\\\\n    --out b\n```\n")
    assert len(commands) == 2
    assert all(check(tokens) is not None for _, tokens in commands)


def test_ci_runs_the_readme_test_command_verbatim():
    setup = README[README.index("Run the tests"):]
    command = re.search(r"```bash\n(.*?)\n```", setup, re.S).group(1).strip()
    assert command in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()


def test_the_demo_figures_quoted_are_the_scripts():
    """README.md and train/configs/demo.py quote results/demo_seeds.json (`python
    bench/demo_numbers.py --seeds 0,1,2`: mean +- std over seeds, and the machine) and
    results/demo_numbers.json (the export figures)."""
    seeds = json.loads((ROOT / "results" / "demo_seeds.json").read_text(encoding="utf-8"))
    config_doc = " ".join((ROOT / "train" / "configs" / "demo.py").read_text("utf-8").split())
    for row, cells in seeds["demo_spread"].items():
        text = " | ".join(f"{cells[k][0]:.3f} +- {cells[k][1]:.3f}" for k in ("mAP", "mAUC",
                                                                           "d_prime"))
        assert f"| {row} | {text} |" in README, row
        assert f"{cells['mAP'][0]:.3f} +- {cells['mAP'][1]:.3f}" in config_doc, row
    assert seeds["machine"] in " ".join(README.split())
    numbers = json.loads((ROOT / "results" / "demo_numbers.json").read_text(encoding="utf-8"))
    variants = numbers["export"]["variants"]
    for name, r in variants.items():
        assert re.search(rf"^\| {name} \| {r['global_kb']} \| {r['local_kb']} \| "
                         rf"{r['fused_mAP']:.4f} \| {r['fused_mAUC']:.4f} \|", README, re.M), name
    sentence = " ".join(README[README.index("The demo model of `python train/fit.py`"):].split())
    assert sentence.startswith(
        f"The demo model of `python train/fit.py` (`runs/demo/glat/best.keras`), exported f32 and "
        f"int8: exact {variants['f32']['fused_mAP']:.4f} / {variants['int8']['fused_mAP']:.4f}, "
        f"streaming with budget 2 {variants['f32']['streaming_fused_mAP']['crop_budget_2']:.4f} / "
        f"{variants['int8']['streaming_fused_mAP']['crop_budget_2']:.4f}")
