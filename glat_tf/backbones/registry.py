"""Backbones by name: a dict and a decorator that refuses duplicates (never `eval`)."""

from __future__ import annotations

_PRESETS: dict[str, tuple[type, dict]] = {}


def register(name: str, **preset_kwargs):
    """Class decorator: registers `cls` under `name` with constructor defaults `preset_kwargs`.

    Stack several decorators to register presets (`cnn10`, `cnn10_tiny`) of one class.
    """
    def decorator(cls):
        add_preset(name, cls, **preset_kwargs)
        return cls
    return decorator


def add_preset(name: str, cls: type, **preset_kwargs) -> None:
    if name in _PRESETS:
        raise ValueError(f"backbone name {name!r} is already registered "
                         f"(to {_PRESETS[name][0].__name__})")
    _PRESETS[name] = (cls, dict(preset_kwargs))


def names() -> list[str]:
    return sorted(_PRESETS)


def get(name: str) -> tuple[type, dict]:
    """(class, preset kwargs) of a registered backbone."""
    if name not in _PRESETS:
        raise ValueError(f"unknown backbone={name!r}; registered: {', '.join(names())}")
    cls, kwargs = _PRESETS[name]
    return cls, dict(kwargs)


def build(name: str, /, num_classes: int = 527, **overrides):
    """A fresh backbone instance of preset `name`; `overrides` replace preset arguments."""
    cls, kwargs = get(name)
    kwargs.update(overrides)
    return cls(num_classes=num_classes, **kwargs)
