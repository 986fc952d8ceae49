"""The no-argument demo of `python train/fit.py`: a CPU-sized CNN10 on the synthetic set.

Command: python train/fit.py          (or: glat-fit --config train/configs/demo.py --train ... --out ...)
Expect (2 shared CPU cores, one seed): about 4 minutes (4.0-4.3 measured at load ~10).
Seed 0 gives baseline mAP 0.234, GL-AT global 0.234 (joint mode: no L_l gradient reaches the
global stream, so it trains as the baseline), local 0.299, fused 0.288; chance is about 0.19.
Bit-identical run to run on one machine. One seed is noisy: train/experiments.py gives the
spread; python bench/demo_numbers.py regenerates these numbers (results/demo_numbers.json).
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
