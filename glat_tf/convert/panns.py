"""PANNs .pth checkpoints -> glat_tf backbones (either or both GL-AT streams), without PyTorch.

    python -m glat_tf.convert.panns Cnn10_mAP=0.380.pth --arch cnn10 --out cnn10.keras
    python -m glat_tf.convert.panns Cnn10_mAP=0.380.pth --arch cnn10 --glat --out glat_cnn10.keras

`--glat` (or `glat_from_panns`) writes a ready GL-AT: one PANNs network as both streams
(share_weights), AudioSet's class names and MIDs inside, so it tags without training.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np

from glat_core import console
from glat_core.cli_errors import add_debug_flag, one_line_errors
from glat_tf.convert.restricted_pickle import describe
from glat_tf.convert.torch_zip import DEFAULT_MAX_BYTES, CheckpointError, load_torch_file
from glat_tf.frontend import periodic_hann

STFT_KEYS = ("spectrogram_extractor.stft.conv_real.weight",
             "spectrogram_extractor.stft.conv_imag.weight")
MEL_KEY = "logmel_extractor.melW"
# Weight layouts, PyTorch -> Keras (BACKBONES.md): conv (out, in, kh, kw) -> (kh, kw, in, out),
# depthwise (C, 1, kh, kw) -> (kh, kw, C, 1), Linear (out, in) -> (in, out).
_KERNEL_AXES = {"conv": (2, 3, 1, 0), "depthwise": (2, 3, 0, 1), "dense": (1, 0)}
_BN_FIELDS = (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
              ("running_var", "moving_variance"))


@dataclasses.dataclass
class ImportReport:
    """What an import did. `missing`: model weights no checkpoint tensor filled (PyTorch
    names, or Keras paths for weights PANNs has no counterpart of); `unexpected`: checkpoint
    keys nothing took; `ignored`: keys deliberately unused (STFT kernels, BN batch counters)."""

    arch: str
    loaded: list = dataclasses.field(default_factory=list)
    missing: list = dataclasses.field(default_factory=list)
    unexpected: list = dataclasses.field(default_factory=list)
    ignored: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        lines = [f"PANNs {self.arch}: {len(self.loaded)} tensors loaded, "
                 f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, "
                 f"{len(self.ignored)} ignored"]
        lines += [f"  missing: {k}" for k in self.missing]
        lines += [f"  unexpected: {k}" for k in self.unexpected]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def load_panns_checkpoint(path, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, np.ndarray]:
    """The `model` state dict of a PANNs checkpoint (or a bare state dict) as NumPy arrays.

    A malformed or hostile file raises CheckpointError (a ValueError), one line naming it.
    """
    obj = load_torch_file(path, max_bytes)
    state = obj.get("model", obj) if isinstance(obj, dict) else obj
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: no state dict inside (found {type(state).__name__})")
    arrays = {}
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: state dict key {describe(key)} is not a name")
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"{path}: state dict entry {describe(key)} is a "
                                  f"{type(value).__name__}, not a tensor")
        # nn.DataParallel prefixes every key with "module.".
        arrays[key[len("module."):] if key.startswith("module.") else key] = value
    return arrays


def detect_arch(state_dict) -> str | None:
    """Which PANNs architecture a state dict belongs to, from its key names (None: unknown)."""
    keys = set(state_dict)
    if "resnet.layer1.0.conv3.weight" in keys:
        return "resnet54"
    if "resnet.layer3.5.conv1.weight" in keys:
        return "resnet38"
    if "resnet.layer1.0.conv1.weight" in keys:
        return "resnet22"
    if "features.18.0.weight" in keys and "features.1.conv.0.weight" in keys:
        return "mobilenetv2"
    if "features.13.4.weight" in keys:
        return "mobilenetv1"
    if "conv_block6.conv1.weight" in keys:
        return "cnn14"
    if "conv_block4.conv2.weight" in keys:
        return "cnn10"
    if "conv_block4.conv1.weight" in keys:
        return "cnn6"
    return None


def expected_arch(backbone) -> str:
    """The PANNs architecture whose checkpoint fits `backbone` (AT-SCA: its CNN10 part)."""
    if backbone.panns_arch is None:
        raise ValueError(f"no PANNs checkpoint exists for a {type(backbone).__name__} backbone")
    return backbone.panns_arch


def _layout(backbone):
    """(PyTorch prefix, Keras layer, kind) for every weighted layer PANNs also has: bn0, the
    family's own trunk layout (beside each family in glat_tf/backbones/), the head."""
    return [("bn0", backbone.frontend.bn0, "bn"), *backbone.panns_layout(),
            ("fc1", backbone.head.fc1, "dense"), ("fc_audioset", backbone.head.fc, "dense")]


def _targets(backbone):
    """{PyTorch key: (Keras variable, axes to transpose or None)}."""
    targets = {}
    for prefix, layer, kind in _layout(backbone):
        if kind == "bn":
            for torch_name, attr in _BN_FIELDS:
                variable = getattr(layer, attr, None)
                if variable is not None:
                    targets[f"{prefix}.{torch_name}"] = (variable, None)
        else:
            targets[f"{prefix}.weight"] = (layer.kernel, _KERNEL_AXES[kind])
            if getattr(layer, "bias", None) is not None:
                targets[f"{prefix}.bias"] = (layer.bias, None)
    return targets


def _stft_deviation(state_dict, n_fft) -> float:
    """Max |difference| of the checkpoint's STFT kernels from a periodic-Hann DFT."""
    k, n = np.arange(n_fft // 2 + 1)[:, None], np.arange(n_fft)[None, :]
    window = periodic_hann(n_fft).astype(np.float64)
    angle = 2 * np.pi * k * n / n_fft
    reference = {STFT_KEYS[0]: np.cos(angle) * window, STFT_KEYS[1]: -np.sin(angle) * window}
    worst = 0.0
    for key, ref in reference.items():
        got = state_dict[key].reshape(state_dict[key].shape[0], -1)
        if got.shape != ref.shape:
            return float("inf")
        worst = max(worst, float(np.max(np.abs(got - ref))))
    return worst


def import_into_backbone(backbone, state_dict, strict=True) -> ImportReport:
    """Copies a PANNs state dict into `backbone` (built here if needed); returns the report.

    Refuses a checkpoint of another architecture; raises on any shape mismatch, and with
    `strict` also on missing or unexpected keys. The checkpoint's mel matrix replaces the
    frontend's; its STFT kernels are checked against a Hann STFT and otherwise ignored.
    """
    arch, found = expected_arch(backbone), detect_arch(state_dict)
    if found != arch:
        raise ValueError(f"checkpoint holds PANNs {found or 'weights of an unknown architecture'}"
                         f", but the model ({type(backbone).__name__}) takes PANNs {arch}")
    if not backbone.built:
        backbone.build((None, backbone.sample_rate))
    report, targets, values = ImportReport(arch), _targets(backbone), []
    for key, tensor in state_dict.items():
        if key.endswith("num_batches_tracked") or key in STFT_KEYS:
            report.ignored.append(key)
        elif key == MEL_KEY:
            values.append((key, backbone.frontend._mel, tensor))
        elif key in targets:
            variable, axes = targets[key]
            values.append((key, variable, tensor if axes is None else tensor.transpose(axes)))
        else:
            report.unexpected.append(key)
    bad = [f"{key}: checkpoint {value.shape} -> {tuple(variable.shape)} in the model"
           for key, variable, value in values if value.shape != tuple(variable.shape)]
    if bad:
        raise ValueError(f"shape mismatch importing PANNs {arch}:\n  " + "\n  ".join(bad))
    report.missing = [key for key in [*targets, MEL_KEY] if key not in state_dict]
    covered = {id(variable) for variable, _ in targets.values()} | {id(backbone.frontend._mel)}
    report.missing += [v.path for v in backbone.weights if id(v) not in covered]
    if all(key in state_dict for key in STFT_KEYS):
        deviation = _stft_deviation(state_dict, backbone.frontend.n_fft)
        if deviation > 1e-4:
            report.warnings.append(f"checkpoint STFT kernels differ from a periodic-Hann STFT "
                                   f"by up to {deviation:.3g}; the frontend's own STFT is used")
    if strict and (report.missing or report.unexpected):
        raise ValueError(report.summary() + "\n(strict import: pass strict=False to accept)")
    for key, variable, value in values:
        variable.assign(value.astype(np.float32))
        report.loaded.append(key)
    return report


def import_into_glat(glat_model, state_dict, streams=("global", "local"), strict=True):
    """Imports one PANNs state dict into the chosen GL-AT streams: {stream: ImportReport}."""
    unknown = set(streams) - {"global", "local"}
    if unknown:
        raise ValueError(f"streams must be 'global' and/or 'local', got {sorted(unknown)}")
    if not glat_model.built:
        glat_model.build((None, glat_model.crop_samples))
    return {stream: import_into_backbone(getattr(glat_model, f"{stream}_backbone"), state_dict,
                                         strict=strict) for stream in streams}


# The paper's defaults (docs/GLAT_SPEC.md section 3): N = 5 windows of tau = 3 s.
DEFAULT_N_CLIPS = 5
DEFAULT_TAU = 3.0


def backbone_from_state(state_dict, arch=None, strict=True, name=None):
    """(backbone of preset `arch` holding the PANNs weights, ImportReport); `arch` None: the
    checkpoint's own architecture (detect_arch). Classes come from fc_audioset."""
    from glat_tf import backbones
    if "fc_audioset.weight" not in state_dict:
        raise ValueError("the checkpoint has no fc_audioset.weight: not a PANNs tagger")
    arch = arch or detect_arch(state_dict)
    if arch is None:
        raise ValueError("the checkpoint's architecture is unknown: pass arch")
    num_classes = int(state_dict["fc_audioset.weight"].shape[0])
    kwargs = {"name": name} if name else {}
    backbone = backbones.build(arch, num_classes=num_classes, **kwargs)
    return backbone, import_into_backbone(backbone, state_dict, strict=strict)


def glat_from_state(state_dict, arch=None, n_clips=DEFAULT_N_CLIPS, tau=DEFAULT_TAU,
                    strict=True):
    """(GlatModel whose both streams are the one PANNs network, ImportReport).

    A 527-class checkpoint gets AudioSet's names and MIDs (the CSV shipped with glat_tf)
    as the model's class_names / class_mids, so the saved .keras carries its labels.
    """
    from glat_tf.data.labels import LabelMap
    from glat_tf.model import GlatModel
    backbone, report = backbone_from_state(state_dict, arch, strict, name="global_stream")
    labels = LabelMap.audioset() if backbone.num_classes == 527 else None
    model = GlatModel(backbone=backbone, share_weights=True, n_clips=n_clips, tau=tau,
                      class_names=labels.names if labels else (),
                      class_mids=labels.mids if labels else ())
    model.build((None, model.crop_samples))
    return model, report


def glat_from_panns(path, arch=None, n_clips=DEFAULT_N_CLIPS, tau=DEFAULT_TAU, *, strict=True,
                    max_bytes=DEFAULT_MAX_BYTES):
    """A ready GL-AT from a public PANNs checkpoint (e.g. Cnn10_mAP=0.380.pth): both streams
    are the PANNs network (GlatModel(share_weights=True)), N windows of tau seconds, AudioSet
    class names and MIDs. `arch` is a backbone preset (cnn10, cnn14, ...; None: detected).
    A malformed file raises CheckpointError, a wrong arch ValueError (both one line)."""
    return glat_from_state(load_panns_checkpoint(path, max_bytes), arch, n_clips, tau,
                           strict)[0]


PROG = "python -m glat_tf.convert.panns"


@one_line_errors(PROG)
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG,
                                     description="PANNs .pth checkpoint -> .keras backbone "
                                                 "(or, with --glat, a ready GL-AT)")
    parser.add_argument("checkpoint", help="PANNs checkpoint, e.g. Cnn10_mAP=0.380.pth")
    parser.add_argument("--arch", required=True, help="backbone preset, e.g. cnn10, resnet38")
    parser.add_argument("--out", required=True, help="where to write the .keras model")
    parser.add_argument("--glat", action="store_true",
                        help="write a GL-AT whose both streams are the PANNs network, with "
                             "AudioSet's class names: tags with windows, no training")
    parser.add_argument("--n-clips", type=int, default=DEFAULT_N_CLIPS,
                        help="with --glat: N, the windows the local stream re-tags")
    parser.add_argument("--tau", type=float, default=DEFAULT_TAU,
                        help="with --glat: window length in seconds")
    parser.add_argument("--allow-missing", action="store_true",
                        help="accept missing/unexpected keys (e.g. CNN10 weights into atsca)")
    parser.add_argument("--max-gb", type=float, default=DEFAULT_MAX_BYTES / 2**30,
                        help="refuse a checkpoint whose load needs more memory than this "
                             "(about twice the file; default %(default)g)")
    add_debug_flag(parser)
    console.add_verbose(parser)
    args = parser.parse_args(argv)
    if not args.max_gb > 0:
        parser.error(f"--max-gb must be > 0, got {args.max_gb}")
    from glat_tf import backbones
    if args.arch not in backbones.names():  # before the (possibly GBs of) file is read
        parser.error(f"--arch {args.arch!r} is not a backbone preset; one of: "
                     f"{', '.join(backbones.names())}")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        parser.error(f"--out {args.out}: folder {os.path.dirname(args.out)} does not exist")
    if args.glat and not (args.n_clips >= 1 and args.tau > 0):
        parser.error(f"--n-clips must be >= 1 and --tau > 0, got {args.n_clips}, {args.tau}")
    with console.step(f"{PROG}: read {args.checkpoint}"):  # a large checkpoint: seconds each
        state_dict = load_panns_checkpoint(args.checkpoint, int(args.max_gb * 2**30))
    if "fc_audioset.weight" not in state_dict:
        parser.error(f"{args.checkpoint} has no fc_audioset.weight: not a PANNs tagger")
    with console.step(f"{PROG}: built {args.arch} and mapped {len(state_dict)} tensors"):
        try:
            if args.glat:
                model, report = glat_from_state(state_dict, args.arch, args.n_clips, args.tau,
                                                strict=not args.allow_missing)
            else:
                model, report = backbone_from_state(state_dict, args.arch,
                                                    strict=not args.allow_missing)
        except ValueError as error:
            parser.exit(2, f"{PROG}: error: --arch {args.arch}: {error}\n")
    print(report.summary())
    with console.step(f"{PROG}: saved {args.out}"):
        model.save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
