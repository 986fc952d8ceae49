"""One exported LiteRT model: its signature runner, input shape checked, (de)quantization handled."""

from __future__ import annotations

import os

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from glat_core.console import quiet_fd2

# A LiteRT flatbuffer carries this file identifier at bytes 4..8.
IDENTIFIER = b"TFL3"


def _read(model) -> tuple[bytes, str]:
    if isinstance(model, (bytes, bytearray)):
        return bytes(model), "<bytes>"
    path = os.fspath(model)
    try:
        with open(path, "rb") as f:
            return f.read(), path
    except OSError as err:
        raise ValueError(f"cannot read model {path}: {err.strerror or err}") from None


class LiteModel:
    """A LiteRT model's serving_default signature as a callable: array in, dict of arrays out.

    `expect_shape` is the one input's shape the metadata promises (-1: any size, resized per
    call, as the global model's samples); `outputs` the names it must give. Example:
        local = LiteModel("lite/local_f32.tflite", 1, (3, 32000), ("per_clip",), "local")
        local(crops)["per_clip"].shape  # (3, L)
    """

    def __init__(self, model, threads: int, expect_shape, outputs, what: str):
        content, where = _read(model)
        if content[4:8] != IDENTIFIER:
            raise ValueError(f"{what} model {where} is not a LiteRT model (.tflite flatbuffer)")
        try:
            with quiet_fd2():  # LiteRT's C++ writes to fd 2 (see __call__)
                interpreter = Interpreter(num_threads=threads, model_content=content)
                self.runner = interpreter.get_signature_runner("serving_default")
            self.invoked = False
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"{what} model {where}: {err}") from err
        inputs = self.runner.get_input_details()
        if len(inputs) != 1:
            raise ValueError(f"{what} model {where} must take one input, it takes {sorted(inputs)}")
        (self.input_name, self.input), = inputs.items()
        shape = tuple(int(d) for d in self.input.get("shape_signature", self.input["shape"]))
        if shape != tuple(expect_shape):
            raise ValueError(f"{what} model {where} takes input {self.input_name} of shape "
                             f"{list(shape)}, but metadata.json says {list(expect_shape)}")
        self.output = self.runner.get_output_details()
        missing = [name for name in outputs if name not in self.output]
        if missing:
            raise ValueError(f"{what} model {where} lacks outputs {missing}; it has "
                             f"{sorted(self.output)} (re-export with this version)")

    def __call__(self, x: np.ndarray) -> dict:
        scale, zero = self.input["quantization"]
        if scale:  # an integer input tensor: quantize as the converter said
            info = np.iinfo(self.input["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(self.input["dtype"])
        if self.invoked:
            out = self.runner(**{self.input_name: x})
        else:  # LiteRT applies its XNNPACK delegate, and says so on fd 2, at the first invoke
            with quiet_fd2():
                out = self.runner(**{self.input_name: x})
            self.invoked = True
        for name, value in out.items():
            scale, zero = self.output[name]["quantization"]
            if scale and np.issubdtype(value.dtype, np.integer) and value.dtype.itemsize == 1:
                out[name] = (value.astype(np.float32) - zero) * np.float32(scale)
        return out
