"""The result table of issue 5 (items 6 and 7): the demo preset, every control, three seeds.

Command: nohup python train/experiments.py > results/experiments.log 2>&1 &
Expect: about 75 minutes on 2 shared cores (one run at a time); writes
results/demo_results.{json,md} and runs/experiments/<row>/seed<k>/.
"""

from train.demo import load_config

CONFIG = {
    **load_config("demo"),
    "eval_every": 200,
    "seeds": [0, 1, 2],
    "out": "runs/experiments",
}
CONFIG.pop("seed")
