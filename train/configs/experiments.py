"""The result table of issue 5 (items 6 and 7): the demo preset, every control, three seeds.

Command: nohup python train/experiments.py > results/experiments.log 2>&1 &
Expect: about 35 minutes on 2 shared cores (one run at a time, 15 runs + the cost bench);
writes results/demo_results.{json,md} and runs/experiments/<row>/seed<k>/. Measured (seeds 0-2,
mAP): baseline 0.288 +- 0.054, GL-AT global 0.285 +- 0.056 (the same training: no gradient from
L_l reaches the global stream), local 0.466 +- 0.026, fused 0.475 +- 0.011, random windows fused
0.410 +- 0.025, compute-matched baseline (316 steps = 200 x 1.58) 0.428 +- 0.077, random 2 s
crops 0.374 +- 0.106.
"""

from train.demo import load_config

CONFIG = {
    **load_config("demo"),
    "eval_every": 200,
    "seeds": [0, 1, 2],
    "out": "runs/experiments",
}
CONFIG.pop("seed")
