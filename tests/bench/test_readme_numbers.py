"""README.md quotes bench/results/*.json as they are, and each of those JSON names its machine.

No benchmark runs here (timings are not unit tests): this reads JSON and text only.
"""

import json
import re

from tests.harness import bench_module
from tests.paths import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
RECORD_KEYS = {"cpu", "cores", "flags", "summary", "tensorflow", "started", "finished",
               "load_start", "load_end"}


def machine_records(value):
    """Every dict stored under a "machine" key anywhere in a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "machine":
                yield item
            else:
                yield from machine_records(item)
    elif isinstance(value, list):
        for item in value:
            yield from machine_records(item)


def test_readme_benchmark_blocks_equal_their_json():
    numbers = bench_module("readme_numbers")
    assert set(re.findall(r"<!-- bench:(\w+) -->", README)) == set(numbers.BLOCKS)
    diff = numbers.differences(README)
    assert not diff, "README blocks that differ from bench/results (python " \
        "bench/readme_numbers.py --write):\n" + "\n".join(
            f"{name}:\n  README: {old!r}\n  JSON:   {new!r}" for name, (old, new) in diff.items())


def test_every_quoted_json_names_its_machine():
    numbers = bench_module("readme_numbers")
    numbers.differences(README)  # renders every block, which loads the JSON they quote
    assert len(numbers.QUOTED) >= 6
    for name in sorted(numbers.QUOTED):
        records = list(machine_records(json.loads((numbers.RESULTS / name).read_text())))
        assert records, f"{name} has no machine record"
        for record in records:
            assert isinstance(record, dict) and RECORD_KEYS <= set(record), (name, record)
            assert record["cpu"] and record["cores"] >= 1, (name, record)
            # the README names the machine of every figure it quotes
            assert record["summary"] in " ".join(README.split()), (name, record["summary"])


def test_the_check_sees_a_changed_figure_and_write_restores_it(tmp_path):
    numbers = bench_module("readme_numbers")
    block = re.search(r"<!-- bench:model_cost -->\n(.*?)<!-- /bench:model_cost -->",
                      README, re.S).group(1)
    changed = README.replace(block, re.sub(r"\d", lambda m: str((int(m[0]) + 1) % 10),
                                           block, count=1))
    assert list(numbers.differences(changed)) == ["model_cost"]
    readme = tmp_path / "README.md"
    readme.write_text(changed, encoding="utf-8")
    assert numbers.main(["--readme", str(readme)]) == 1
    assert numbers.main(["--readme", str(readme), "--write"]) == 0
    assert readme.read_text(encoding="utf-8") == README


def test_glat_tag_timing_is_that_of_its_json():
    """The glat-tag line (bench/clients.py, glat_tag in its JSON) as its JSON says."""
    tag = json.loads((ROOT / "bench" / "results" / "clients.json").read_text())
    text = " ".join(README.split())
    line = (f"{tag['glat_tag']['wall_seconds']:.1f} s wall "
            f"({tag['glat_tag']['seconds_per_clip']:.2f} s per clip) on {tag['machine']}")
    assert line in text
    assert f"at load {tag['load_1min']:.1f}" in text


def test_demo_minutes_are_those_of_the_seeds():
    seeds = json.loads((ROOT / "results" / "demo_seeds.json").read_text())
    minutes = [run["minutes"] for run in seeds["seeds"].values()]
    assert f"{min(minutes):.1f}-{max(minutes):.1f} min of training per seed" in \
        " ".join(README.split())
