"""The decode step's contract, written once: the model config with its defaults, the graph's input
and output names, shapes and dtypes, and the K/V slot layout (docs/design.md, "The model").

Read by the exporter (model_export/onnx_graph.py, export.py), every backend (tpu_driver/backends/),
the bundle check (runtime/bundle.py), kv_window, the engine, verify, the on-board decoder
(board_tests/onboard/decode.py) and the tests. Nothing else spells these names or shapes out.
stdlib only: it imports on the board, and below everything else.

One step, static shapes (W = `window`, H heads of hd = D/H, L layers, V words):

    input        shape        dtype       meaning
    x            [1,1,D]      f32         embedding row of the new token (looked up on the host)
    mask         [1,1,1,W]    f32         additive: MASK_OCCUPIED for an occupied slot, MASK_EMPTY else
    dist         [1,1,1,W]    f32         query position minus the slot's key position (>= 1 occupied, 0 empty)
    k_cache_{l}  [1,H,hd,W]   kv dtype    keys of layer l, already transposed (slot j = [..., j])
    v_cache_{l}  [1,H,W,hd]   kv dtype    values of layer l (slot j = [:, :, j, :])

    output       shape        meaning
    logits       [1,V]        next-token logits, or log-probabilities when the graph ends in
                              LogSoftmax (manifest `logits_are_log_probs`)
    k_new_{l}    [1,H,hd,1]   key of the new token, to be written into a slot (k_slot)
    v_new_{l}    [1,H,1,hd]   value of the new token (v_slot)

The kv dtype is float32 in the ONNX graph and at every backend's write()/read(); a compiled
cvimodel may hold the caches in bfloat16 (manifest `kv_cache_dtype`), converted by the driver.
To extend the step (a new tensor, another dtype), change `input_specs` / `output_specs` here and
every reader follows.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

# -- the config --------------------------------------------------------------------------------
LN_EPS = 1e-5  # LayerNorm epsilon of every LayerNorm in the step
# m of alibi_slopes: slope_h = 2^(-m(h+1)/H). 4 is what every shipped model is trained with (its
# reach matches a W=128 window, docs/kv-window.md); the ALiBi paper uses 8.
DEFAULT_ALIBI_MAX_BIAS = 4.0


@dataclass(frozen=True)
class ModelConfig:
    """config.json of a model or bundle; its defaults are the project's only defaults."""

    vocab_size: int = 8192
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 1024
    window: int = 128  # W: key/value slots of a compiled decode step
    alibi_max_bias: float = DEFAULT_ALIBI_MAX_BIAS

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @classmethod
    def load(cls, path: str | Path) -> "ModelConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


# -- the tensors ---------------------------------------------------------------------------------
class TensorSpec(NamedTuple):
    name: str
    shape: tuple
    dtype: str  # what write()/read() take and give: "float32" for every decode-step tensor


X = "x"
MASK = "mask"
DIST = "dist"
LOGITS = "logits"
MASK_EMPTY = -10000.0  # additive mask value of an empty slot (finite: bf16 and LUT-friendly)
MASK_OCCUPIED = 0.0
IO_DTYPE = "float32"  # every tensor at the backend boundary (write()/read())
KV_DTYPES = ("float32", "bfloat16")  # what a compiled graph may hold the caches in


def k_cache(layer: int) -> str:
    return f"k_cache_{layer}"


def v_cache(layer: int) -> str:
    return f"v_cache_{layer}"


def k_new(layer: int) -> str:
    return f"k_new_{layer}"


def v_new(layer: int) -> str:
    return f"v_new_{layer}"


def is_kv_cache(name: str) -> bool:
    return name.startswith(("k_cache_", "v_cache_"))


def n_layers_of(names) -> int:
    """L from a backend's input names (the count of k_cache_{l})."""
    return sum(1 for name in names if name.startswith("k_cache_"))


# -- the slot layout: where slot j of a cache is -------------------------------------------------
K_SLOT_AXIS = 3  # k_cache [1,H,hd,W]
V_SLOT_AXIS = 2  # v_cache [1,H,W,hd]


def k_slot(j: int) -> tuple:
    """Index of slot j in k_cache (and the shape of k_new: [1,H,hd,1]), for TensorIO.write(index=)."""
    return (slice(None), slice(None), slice(None), slice(j, j + 1))


def v_slot(j: int) -> tuple:
    """Index of slot j in v_cache (and the shape of v_new: [1,H,1,hd])."""
    return (slice(None), slice(None), slice(j, j + 1), slice(None))


# -- the whole step ------------------------------------------------------------------------------
def input_specs(cfg: ModelConfig, window: int | None = None) -> list[TensorSpec]:
    """The step's inputs in graph order (x, mask, dist, then k_cache_l, v_cache_l per layer)."""
    D, H, hd, W = cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.window if window is None else window
    specs = [TensorSpec(X, (1, 1, D), IO_DTYPE), TensorSpec(MASK, (1, 1, 1, W), IO_DTYPE),
             TensorSpec(DIST, (1, 1, 1, W), IO_DTYPE)]
    for layer in range(cfg.n_layers):
        specs.append(TensorSpec(k_cache(layer), (1, H, hd, W), IO_DTYPE))
        specs.append(TensorSpec(v_cache(layer), (1, H, W, hd), IO_DTYPE))
    return specs


def output_specs(cfg: ModelConfig) -> list[TensorSpec]:
    """The step's outputs in graph order (logits, then k_new_l, v_new_l per layer)."""
    H, hd = cfg.n_heads, cfg.head_dim
    specs = [TensorSpec(LOGITS, (1, cfg.vocab_size), IO_DTYPE)]
    for layer in range(cfg.n_layers):
        specs.append(TensorSpec(k_new(layer), (1, H, hd, 1), IO_DTYPE))
        specs.append(TensorSpec(v_new(layer), (1, H, 1, hd), IO_DTYPE))
    return specs


def io_specs(cfg: ModelConfig, window: int | None = None) -> tuple[dict, dict]:
    """(inputs, outputs): name -> TensorSpec, in graph order."""
    return ({s.name: s for s in input_specs(cfg, window)}, {s.name: s for s in output_specs(cfg)})


def kv_cache_input_positions(cfg: ModelConfig) -> list[int]:
    """1-based positions of the k_cache_*/v_cache_* inputs in graph order (model_deploy --quant_input_list)."""
    return [i + 1 for i, spec in enumerate(input_specs(cfg, 1)) if is_kv_cache(spec.name)]
