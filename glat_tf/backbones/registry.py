"""Backbones by name: a dict and a decorator that refuses duplicates (never `eval`)."""

from __future__ import annotations

import dataclasses

from glat_tf.config import FrontendConfig

_PRESETS: dict[str, tuple[type, dict]] = {}


def register(name: str, **arch_fields):
    """Class decorator: registers `cls` under `name`, its `Arch` record set to `arch_fields`.

    Stack several decorators to register presets (`cnn10`, `cnn10_tiny`) of one class.
    """
    def decorator(cls):
        add_preset(name, cls, **arch_fields)
        return cls
    return decorator


def add_preset(name: str, cls: type, **arch_fields) -> None:
    if name in _PRESETS:
        raise ValueError(f"backbone name {name!r} is already registered "
                         f"(to {_PRESETS[name][0].__name__})")
    _PRESETS[name] = (cls, dict(arch_fields))


def names() -> list[str]:
    return sorted(_PRESETS)


def get(name: str) -> tuple[type, dict]:
    """(class, preset arch fields) of a registered backbone."""
    if name not in _PRESETS:
        raise ValueError(f"unknown backbone={name!r}; registered: {', '.join(names())}")
    cls, fields = _PRESETS[name]
    return cls, dict(fields)


def split_overrides(cls: type, overrides: dict) -> tuple[dict, dict, dict]:
    """Loose overrides (a config file's `backbone_kwargs`) -> (frontend, arch, layer kwargs).

    Frontend fields (n_mels, hop_length, spec_augment, ...) go to the FrontendConfig and the
    family's `Arch` fields to its record; `name`, `dtype` and `trainable` stay keyword
    arguments of the layer. Anything else is an error naming it.
    """
    arch_fields = {f.name for f in dataclasses.fields(cls.Arch)}
    frontend, arch, layer = {}, {}, {}
    for key, value in overrides.items():
        if key in FrontendConfig.field_names():
            frontend[key] = value
        elif key in arch_fields:
            arch[key] = value
        elif key in ("name", "dtype", "trainable"):
            layer[key] = value
        else:
            raise ValueError(f"{cls.__name__} has no setting {key!r}; frontend: "
                             f"{sorted(FrontendConfig.field_names())}, arch: {sorted(arch_fields)}")
    return frontend, arch, layer


def build(name: str, /, num_classes: int = 527, frontend=None, **overrides):
    """A fresh backbone of preset `name`.

    `frontend` is a FrontendConfig or a dict of overrides of the family's default;
    `overrides` replace preset settings (frontend or architecture fields, see split_overrides).
    """
    cls, arch = get(name)
    loose_frontend, arch_overrides, layer = split_overrides(cls, overrides)
    if isinstance(frontend, dict):  # one replace: sample_rate=16000 needs fmax<=8000 with it
        config = FrontendConfig.of({**frontend, **loose_frontend}, cls.default_frontend)
    else:
        config = FrontendConfig.of(loose_frontend, FrontendConfig.of(frontend, cls.default_frontend))
    return cls(num_classes=num_classes, frontend=config, arch={**arch, **arch_overrides},
               preset=name, **layer)
