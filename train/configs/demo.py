"""The no-argument demo of `python train/fit.py`: a CPU-sized CNN10 on the synthetic set.

Command: python train/fit.py          (or: glat-fit --config train/configs/demo.py --train ... --out ...)
Expect (2 shared CPU cores, one seed): under 5 minutes (4.7 measured with another job running);
mAP baseline about 0.3, GL-AT fused about 0.5 (seed 0 gave baseline 0.26, GL-AT global 0.40,
local 0.58, fused 0.59; chance is about 0.19). One seed is noisy: train/experiments.py gives
the spread.
The frontend is cut for CPU: 32 mel bins, 20 ms hop, no SpecAugment (4x fewer conv MACs;
the full PANNs frontend barely moves from the label prior in 200 steps).
"""

CONFIG = {
    "backbone": "cnn10_tiny",
    "backbone_kwargs": {"n_mels": 32, "hop_length": 640, "spec_augment": False},
    "n_clips": 3,
    "tau": 2.0,
    "batch_size": 8,
    "steps": 200,
    "eval_every": 200,
    "lr": 3e-3,
    "seed": 0,
}
