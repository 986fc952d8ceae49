"""The no-argument demo of `python train/fit.py`: a CPU-sized CNN10 on the synthetic set.

Command: python train/fit.py          (or: glat-fit --config train/configs/demo.py --train ... --out ...)
Expect (AMD EPYC, 2 cores, AVX-512, shared; python bench/demo_numbers.py --seeds 0,1,2 ->
results/demo_seeds.json): 3.4-4.6 min per seed; mAP over seeds 0-2, mean +- std: baseline
0.300 +- 0.081, GL-AT global 0.300 +- 0.081 (joint mode: no L_l gradient reaches the
global stream, so it trains as the baseline), local 0.515 +- 0.099, fused 0.502 +- 0.108;
chance is about 0.19. Bit-identical run to run on one machine only: another CPU's kernels
round differently, so a seed-0 run lands anywhere within about 2 std of these means.
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
