"""GL-AT with one network for both streams: the demo's best configuration (issue 14).

Command: glat-fit --config train/configs/glat_shared.py --train "demo_data/*/shards/train-*.tfrecord" \
    --eval "demo_data/*/shards/eval-*.tfrecord" --out runs/glat_shared
Expect (the demo set, 200 steps, seeds 0-2, results/demo_results.md): fused mAP 0.504 +- 0.057
and global-only 0.487 +- 0.065, against 0.310 +- 0.081 for the backbone given GL-AT's training
compute (353 steps) and 0.245 +- 0.023 for the backbone at equal steps. Sharing the weights
lets L_l train the global features on the chosen windows; the model is half the parameters
of two-stream GL-AT and its global stream alone is the strong tagger when compute is short.
"""

from train.demo import load_config

CONFIG = {**load_config("demo"), "share_weights": True}
