"""The README's benchmark figures, rendered from bench/results/*.json (with the machine each ran on).

    python bench/readme_numbers.py            # check: exit 1 and show the blocks that differ
    python bench/readme_numbers.py --write    # rewrite those blocks of README.md

Each figure sits in README.md between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`, and
that text is exactly what BLOCKS[NAME] renders from its JSON: a re-run benchmark changes the
README through this script only, so no figure is typed by hand. JSON and text only (no
TensorFlow): tests/bench/test_readme_numbers.py runs the check in well under a second.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import statistics
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BLOCK = re.compile(r"<!-- bench:(\w+) -->\n(.*?)<!-- /bench:\1 -->", re.S)
QUOTED: set = set()  # the JSON files the blocks rendered so far read


def load(name: str) -> dict:
    QUOTED.add(name)
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def measured_on(*records: dict) -> str:
    """'measured 2026-12-05 on AMD EPYC, 2 cores, AVX-512 at load 4.1-6.3': one machine, the
    dates and the range of the 1-minute load averages at the runs' starts and ends."""
    machines = sorted({r["summary"] for r in records})
    dates = sorted({d[:10] for r in records for d in (r["started"], r["finished"])})
    loads = [r[key][0] for r in records for key in ("load_start", "load_end")]
    low, high = f"{min(loads):.1f}", f"{max(loads):.1f}"
    load = low if low == high else f"{low}-{high}"
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    return (f"measured {when} on {'; '.join(machines)} "
            f"at load {load} (1-minute average at start and end)")


def spread(runs: list[float]) -> float:
    """(max - min) / median of repeated timings, in %: how far one run can be from another."""
    return 100 * (max(runs) - min(runs)) / statistics.median(runs)


def pair(values: dict, fmt: str) -> str:
    return " / ".join(fmt.format(values[b]) for b in sorted(values, key=int))


def model_cost() -> str:
    result = load("model_cost.json")
    rows = result["presets"]
    lines = ["| preset | params | backbone CPU ms/clip b1 / b8 | GL-AT CPU ms/clip b1 / b8 "
             "| GL-AT / backbone, CPU b1 / b8 | GL-AT / backbone, wall b1 / b8 |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['params']:,} | {pair(r['backbone_cpu_ms_per_clip'], '{:.0f}')} "
                     f"| {pair(r['glat_cpu_ms_per_clip'], '{:.0f}')} "
                     f"| {pair(r['glat_cpu_ratio'], '{:.2f}')} | {pair(r['glat_ratio'], '{:.2f}')} |")
    return ("\n".join(lines) + "\n\n" + medians_of(result, rows)
            + f"; {measured_on(*(r['machine'] for r in rows.values()))}.\n")


def medians_of(result: dict, rows: dict) -> str:
    """'CPU ms are medians of 7 rounds, which spread by up to 4 % (cnn10), 18 % (mobilenetv2)
    (...; wall ms: up to 30 %, 52 %)': per preset, the worst model (backbone, GL-AT,
    variants) and batch size."""
    def worst(row, kind):  # kind: "ms_runs" (wall) or "cpu_ms_runs"
        cells = (row, *row.get("variants", {}).values())
        return max(spread(runs) for cell in cells for key in (kind, f"backbone_{kind}",
                                                              f"glat_{kind}")
                   for runs in cell.get(key, {}).values())
    names = f" ({', '.join(rows)})" if len(rows) > 1 else ""
    return (f"CPU ms are medians of {result['repeats']} rounds, which spread by up to "
            + ", ".join(f"{worst(r, 'cpu_ms_runs'):.0f} %" for r in rows.values()) + names
            + " (max - min over the median; wall ms: up to "
            + ", ".join(f"{worst(r, 'ms_runs'):.0f} %" for r in rows.values()) + ")")


VARIANT_NAMES = {"glat_shared": "shared weights", "glat_cheap_local": "half-width local stream"}


def model_cost_variants() -> str:
    result = load("model_cost_variants.json")
    (preset, r), = result["presets"].items()
    parts = [f"backbone {r['backbone_cpu_ms_per_clip']['1']:.0f} CPU ms per 10 s clip, GL-AT "
             f"{r['glat_cpu_ms_per_clip']['1']:.0f} ({r['glat_cpu_ratio']['1']:.2f}x; wall "
             f"{r['glat_ratio']['1']:.2f}x; {r['glat_params'] / 1e6:.1f} M parameters)"]
    for name, v in r.get("variants", {}).items():
        parts.append(f"{VARIANT_NAMES.get(name, name)} {v['cpu_ms_per_clip']['1']:.0f} "
                     f"({v['cpu_ratio']['1']:.2f}x; wall {v['ratio']['1']:.2f}x; "
                     f"{v['params'] / 1e6:.1f} M parameters)")
    return (f"{preset}, batch 1: " + ", ".join(parts) + ". " + medians_of(result, {preset: r}) + f"; {measured_on(r['machine'])}.\n")


def train_throughput() -> str:
    demo, panns = load("train_throughput_demo.json"), load("train_throughput_panns_frontend.json")
    lines = ["| model | clips per CPU-second | cost vs backbone, CPU / wall | clips/s |",
             "|---|---|---|---|"]
    names = [k for k, v in demo.items() if isinstance(v, dict) and "clips_per_second" in v]
    for name in names:
        ratio = ("1" if name == "backbone" else
                 f"{demo[f'{name}_cpu_cost_ratio']:.2f} / {demo[f'{name}_cost_ratio']:.2f}")
        lines.append(f"| {name} | {demo[name]['clips_per_cpu_second']:.1f} | {ratio} "
                     f"| {demo[name]['clips_per_second']:.1f} |")
    worst = {kind: max(spread(demo[n][kind]) for n in names) for kind in ("cpu_runs", "runs")}
    return ("\n".join(lines) + "\n\n"
            f"Best of {len(demo['backbone']['runs'])} rounds; the rounds of one model spread by "
            f"up to {worst['cpu_runs']:.0f} % in clips per CPU-second, {worst['runs']:.0f} % in "
            f"clips/s (max - min over the median); "
            f"{measured_on(demo['machine'])}. With the full PANNs frontend (`python "
            f"bench/train_throughput.py --variants glat --out "
            f"bench/results/train_throughput_panns_frontend.json`): backbone "
            f"{panns['backbone']['clips_per_cpu_second']:.1f} vs GL-AT "
            f"{panns['glat']['clips_per_cpu_second']:.1f} clips per CPU-second "
            f"({panns['glat_cpu_cost_ratio']:.2f}x; wall {panns['backbone']['clips_per_second']:.1f} "
            f"vs {panns['glat']['clips_per_second']:.1f} clips/s, {panns['glat_cost_ratio']:.2f}x), "
            f"{measured_on(panns['machine'])}.\n")


def input_pipeline() -> str:
    result = load("input_pipeline.json")
    ingest = [r for r in result["rows"] if "allocator" not in r]
    by_stage: dict = {}
    for r in result["rows"]:
        if "allocator" in r:
            by_stage.setdefault(r["stage"], {})[r["allocator"]] = r
    lines = ["| stage | clips per CPU-second, default / BFC allocator | clips/s, default / BFC |",
             "|---|---|---|",
             f"| ingest (decode, resample, write), 1 / 2 workers | | "
             f"{' / '.join(format(r['clips_per_s'], '.0f') for r in ingest)} |"]
    for stage, rows in by_stage.items():
        lines.append(f"| {stage} | {rows['default']['clips_per_cpu_s']:.0f} / "
                     f"{rows['bfc']['clips_per_cpu_s']:.0f} | {rows['default']['clips_per_s']:.0f} / "
                     f"{rows['bfc']['clips_per_s']:.0f} |")
    index, stream = by_stage["train, balanced"], by_stage["train, balanced, streaming sampler"]
    cost = " / ".join(f"{stream[a]['clips_per_cpu_s'] / index[a]['clips_per_cpu_s']:.1f}x"
                      for a in ("default", "bfc"))
    return ("\n".join(lines) + f"\n\nA balanced clip costs {cost} (default / BFC allocator) the "
            f"CPU time through the record index as through the streaming sampler; "
            f"{measured_on(result['machine'])}.\n")


def ingest_runners() -> str:
    result = load("ingest_runners.json")
    lines = ["| runner | to the first shard, s | clips/s after it | whole run, s | clips/s, whole run |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['runner']}, {r['workers']} worker{'s' if r['workers'] > 1 else ''} "
                     f"| {r['first_shard_s']:.1f} | {r['clips_per_s_after_first_shard']:.0f} "
                     f"| {r['seconds']:.1f} | {r['clips_per_s']:.0f} |")
    return ("\n".join(lines) + f"\n\n{result['rows'][0]['clips']} clips in "
            f"{result['rows'][0]['shards']} shards; "
            f"{measured_on(result['machine'])}.\n")


def sampler_scale() -> str:
    r = load("sampler_scale_index.json")
    return (f"The record index sampler: start-up {r['startup_s']:.1f} s to the first batch "
            f"({r['startup_cpu_s']:.1f} CPU-s), peak RSS "
            f"{r['peak_rss_mb'] / 1024:.2f} GB ({r['rss_after_tf_import_mb'] / 1024:.2f} GB of it "
            f"TensorFlow's import), {r['draws_per_s']:,.0f} draws/s ({r['draws_per_cpu_s']:,.0f} per "
            f"CPU-second); over {r['draws']:,} draws "
            f"every class's share (each draw credited to its labels by 1/n_c, the "
            f"BalancedTrainSampler's choice) is within {100 * r['max_rel_deviation']:.1f} % of "
            f"uniform (aim: 20 %); "
            f"{measured_on(r['machine'])}.\n")


BLOCKS = {"model_cost": model_cost, "model_cost_variants": model_cost_variants,
          "train_throughput": train_throughput, "input_pipeline": input_pipeline,
          "ingest_runners": ingest_runners, "sampler_scale": sampler_scale}


def differences(readme: str) -> dict:
    """{block name: (README text, rendered text)} for every block that differs (or is
    missing from the README, with README text None)."""
    found = {m.group(1): m.group(2) for m in BLOCK.finditer(readme)}
    out = {}
    for name, render in BLOCKS.items():
        text = render()
        if found.get(name) != text:
            out[name] = (found.get(name), text)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite README.md's blocks")
    parser.add_argument("--readme", default=str(ROOT / "README.md"))
    args = parser.parse_args(argv)
    path = pathlib.Path(args.readme)
    readme = path.read_text(encoding="utf-8")
    diff = differences(readme)
    missing = [name for name, (old, _) in diff.items() if old is None]
    if missing:
        parser.error(f"{path} has no block {missing[0]!r} (<!-- bench:{missing[0]} --> ... "
                     f"<!-- /bench:{missing[0]} -->)")
    if args.write:
        path.write_text(BLOCK.sub(lambda m: f"<!-- bench:{m.group(1)} -->\n"
                                  f"{BLOCKS[m.group(1)]() if m.group(1) in BLOCKS else m.group(2)}"
                                  f"<!-- /bench:{m.group(1)} -->", readme), encoding="utf-8")
        print(f"{len(diff)} block(s) rewritten in {path}")
        return 0
    for name, (old, new) in diff.items():
        print(f"--- README {name}\n{old}+++ from bench/results\n{new}")
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
