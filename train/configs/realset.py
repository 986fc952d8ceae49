"""The real-recordings comparison (issue 23): a CPU-sized CNN10 at 16 kHz on bench/realset.py's set.

Command: python bench/realset.py --out realset && \
    nice -n 10 python -m train.realset_experiments --data realset --seeds 0,1,2
Rows: train/variants.py REALSET_ROWS. Frontend cut for CPU as the demo's: 32 mel bins, 20 ms
hop (320 samples at 16 kHz), no SpecAugment; N=3 windows of tau=2 s (0.6 of the clip).
Expect (seeds 0-2, results/realset_results.md, README "The result: GL-AT on real
recordings"): baseline 0.232 +- 0.036 mAP at 55 training CPU-s; reused features fused
0.260 +- 0.040 at 54 CPU-s and 57.0 M multiply-adds (baseline 56.8 M), random windows 0.249;
zoom-in 0.215; at 600 steps (best on val) baseline 0.268, reused features 0.272.
"""

FRONTEND = {"n_mels": 32, "hop_length": 320, "n_fft": 512, "fmax": 8000.0,
            "spec_augment": False}

CONFIG = {
    "backbone": "cnn10_tiny",
    "backbone_kwargs": FRONTEND,
    "n_clips": 3,
    "tau": 2.0,
    "batch_size": 16,
    "steps": 300,
    "eval_every": 50,
    "lr": 3e-3,
}
