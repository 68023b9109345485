"""Test helper: a synthetic cvimodel (header + the flatbuffer tables tpu_driver/cvimodel_file.py
reads) with a chosen chip, tensor names, shapes and dtypes. Not runnable by any runtime: it lets
bundle tests exercise the header checks without compiling a model.

Layout written: every table is preceded by its vtable, children follow their parent, so every
uoffset points forward (as the flatbuffer reader expects) and every vtable offset is positive.
"""
from __future__ import annotations

import hashlib
import struct

from tpu_driver.cvimodel_file import DTYPE_NAMES, HEADER_FORMAT, HEADER_SIZE, MAGIC

DTYPE_CODES = {name: code for code, name in DTYPE_NAMES.items()}


class _Builder:
    def __init__(self) -> None:
        self.buf = bytearray(4)  # root uoffset, patched by finish()

    def _align(self, n: int = 4) -> None:
        while len(self.buf) % n:
            self.buf.append(0)

    def _patch_ref(self, at: int, target: int) -> None:
        struct.pack_into("<I", self.buf, at, target - at)

    def string(self, text: str) -> int:
        self._align()
        pos = len(self.buf)
        data = text.encode()
        self.buf += struct.pack("<I", len(data)) + data + b"\0"
        return pos

    def scalars(self, values, fmt: str) -> int:
        self._align(8)
        pos = len(self.buf)
        self.buf += struct.pack("<I", len(values)) + struct.pack(f"<{len(values)}{fmt}", *values)
        return pos

    def vector(self, build_items) -> int:
        """A vector of offsets; `build_items` are callables writing one child each (after the vector)."""
        self._align()
        pos = len(self.buf)
        self.buf += struct.pack("<I", len(build_items)) + bytes(4 * len(build_items))
        for i, build in enumerate(build_items):
            self._patch_ref(pos + 4 + 4 * i, build())
        return pos

    def table(self, fields: dict) -> int:
        """fields: index -> ("u8", int) | ("struct", bytes) | ("ref", callable writing the child)."""
        count = max(fields) + 1 if fields else 0
        inline, offsets, size = [], [0] * count, 4
        for index in sorted(fields):
            kind, value = fields[index]
            data = bytes([value]) if kind == "u8" else value if kind == "struct" else bytes(4)
            if kind == "ref":
                size += (-size) % 4
            offsets[index] = size
            inline.append((size, kind, value, data))
            size += len(data)
        size += (-size) % 4
        self._align(2)
        vtable = len(self.buf)
        self.buf += struct.pack(f"<HH{count}H", 4 + 2 * count, size, *offsets)
        self._align(4)
        table = len(self.buf)
        body = bytearray(size)
        struct.pack_into("<i", body, 0, table - vtable)
        for offset, _, _, data in inline:
            body[offset:offset + len(data)] = data
        self.buf += body
        for offset, kind, value, _ in inline:
            if kind == "ref":
                self._patch_ref(table + offset, value())
        return table

    def finish(self, root_build) -> bytes:
        self._patch_ref(0, root_build())
        return bytes(self.buf)


def build_cvimodel(chip: str, inputs, outputs, extra_dtypes=("bfloat16",), mlir_version="v1.30.2-test",
                   name="decode") -> bytes:
    """inputs/outputs: [(name, shape, dtype)]; extra_dtypes: dtypes of internal tensors (the quant)."""
    b = _Builder()
    tensors = list(inputs) + list(outputs) + [(f"internal_{i}", (1,), d) for i, d in enumerate(extra_dtypes)]

    def tensor(entry):
        tensor_name, shape, dtype = entry
        shape_table = lambda: b.table({0: ("ref", lambda: b.scalars(list(shape), "q"))})
        return lambda: b.table({1: ("ref", lambda: b.string(tensor_name)), 3: ("u8", DTYPE_CODES[dtype]),
                                4: ("ref", shape_table)})

    def program():
        return b.table({
            2: ("ref", lambda: b.vector([(lambda n=n: b.string(n)) for n, _, _ in inputs])),
            3: ("ref", lambda: b.vector([(lambda n=n: b.string(n)) for n, _, _ in outputs])),
            4: ("ref", lambda: b.vector([tensor(t) for t in tensors])),
        })

    body = b.finish(lambda: b.table({
        0: ("struct", bytes([1, 4, 0, 0])), 1: ("ref", lambda: b.string(name)),
        2: ("ref", lambda: b.string("2026-12-01 00:00:00")), 6: ("ref", lambda: b.vector([program])),
        8: ("ref", lambda: b.string(chip)), 9: ("ref", lambda: b.string(mlir_version)),
    }))
    header = struct.pack(HEADER_FORMAT, MAGIC, len(body), 1, 4, hashlib.md5(body).digest(),
                         chip.encode().ljust(16, b"\0"), b"\0\0")
    assert len(header) == HEADER_SIZE
    return header + body


def cvimodel_for_config(cfg, chip: str = "cv181x", quant: str = "bf16") -> bytes:
    """A synthetic cvimodel with the decode step's tensors for a ModelConfig (compiled NCHW shapes,
    named as the manifest's `compiled_name` of `manifest_tensor_specs`)."""
    inputs, outputs = manifest_tensor_specs(cfg)
    extra = ("bfloat16", "int8") if quant == "int8" else ("bfloat16",)
    return build_cvimodel(chip, [(s["compiled_name"], s["compiled_nchw"], "float32") for s in inputs],
                          [(s["compiled_name"], s["compiled_nchw"], "float32") for s in outputs], extra)


def manifest_tensor_specs(cfg):
    """The manifest's inputs/outputs for a ModelConfig, with compiled names and NCHW shapes."""
    D, H, hd, W, V = cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.window, cfg.vocab_size

    def spec(name, shape, compiled_name=None):
        nchw = list(shape) + [1] * (4 - len(shape))
        return {"name": name, "shape": list(shape), "dtype": "float32", "compiled_name": compiled_name or name,
                "compiled_nchw": nchw}

    inputs = [spec("x", [1, 1, D]), spec("mask", [1, 1, 1, W]), spec("dist", [1, 1, 1, W])]
    outputs = [spec("logits", [1, V], "logits_Reshape_f32")]
    for l in range(cfg.n_layers):
        inputs += [spec(f"k_cache_{l}", [1, H, hd, W]), spec(f"v_cache_{l}", [1, H, W, hd])]
        outputs += [spec(f"k_new_{l}", [1, H, hd, 1], f"k_new_{l}_Reshape_f32"),
                    spec(f"v_new_{l}", [1, H, 1, hd], f"v_new_{l}_Reshape_f32")]
    return inputs, outputs
