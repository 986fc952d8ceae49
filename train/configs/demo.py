"""The no-argument demo of `python train/fit.py`: a CPU-sized CNN10 on the synthetic set.

Command: python train/fit.py          (or: glat-fit --config train/configs/demo.py --train ... --out ...)
Expect (2 shared CPU cores, one seed): about 5 minutes; baseline and GL-AT-global mAP near 0.4,
GL-AT fused a little above them (see the README's demo table; chance is about 0.19).
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
