"""`edgetype bench calibrate-estimate`: check the board latency estimator against vendor timings.

The vendor published real board timings (sophgo/cviruntime `scripts/evb/best_performance_cv18{0,1}x.csv`,
INT8, batch 1, TPU at 500 MHz) for resnet18 and mobilenet_v2. We write the same two architectures in
PyTorch (random weights: time depends on shapes, not values; torchvision is not used), export
ONNX 1x3x224x224 opset 13, compile them INT8 for cv180x and cv181x (cached, model_export/compile_cache.py),
read the compiled model (`model_tool --info`: weight bytes, routines) and count MACs and activation
traffic from the ONNX graph. Then `measure.board_estimate` predicts each time, with one free parameter
per chip (the achieved fraction of the INT8 peak), fitted on the other network of the same chip
(leave-one-out) and on both (the committed value). Result: models/estimate_calibration.json.
Host only: needs torch, onnx and the tpu-mlir toolchain.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from measure import board_estimate
from runtime.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULT_PATH = REPO_ROOT / "models" / "estimate_calibration.json"
INPUT_NAME = "input"
INPUT_SHAPE = (1, 3, 224, 224)  # NCHW float32, as the vendor's networks
OPSET = 13
CALIBRATION_SAMPLES = 4  # random inputs for run_calibration (values do not change the timing)
NETWORKS = ("resnet18", "mobilenet_v2")


def _log(message: str) -> None:
    print(f"[calibrate-estimate] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------- networks ---

def build_network(name: str, seed: int = 0):
    """resnet18 (He et al. 2015, BasicBlock [2,2,2,2]) or mobilenet_v2 (Sandler et al. 2018, width 1.0),
    1000 classes, random weights from `seed`, eval mode."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    def conv_bn(c_in, c_out, kernel, stride, groups=1, relu6=False, act=True):
        layers = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]
        if act:
            layers.append(nn.ReLU6(inplace=True) if relu6 else nn.ReLU(inplace=True))
        return nn.Sequential(*layers)

    class BasicBlock(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = conv_bn(c_in, c_out, 3, stride)
            self.conv2 = conv_bn(c_out, c_out, 3, 1, act=False)
            self.down = conv_bn(c_in, c_out, 1, stride, act=False) if (stride != 1 or c_in != c_out) else None
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            shortcut = x if self.down is None else self.down(x)
            return self.relu(self.conv2(self.conv1(x)) + shortcut)

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1))
            blocks, c_in = [], 64
            for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                blocks += [BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)]
                c_in = c_out
            self.blocks = nn.Sequential(*blocks)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, 1000)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))

    class InvertedResidual(nn.Module):
        def __init__(self, c_in, c_out, stride, expand):
            super().__init__()
            hidden = c_in * expand
            layers = [conv_bn(c_in, hidden, 1, 1, relu6=True)] if expand != 1 else []
            layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, relu6=True),
                       conv_bn(hidden, c_out, 1, 1, act=False)]
            self.body = nn.Sequential(*layers)
            self.residual = stride == 1 and c_in == c_out

        def forward(self, x):
            return x + self.body(x) if self.residual else self.body(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            # (expansion t, channels c, repeats n, first stride s), Table 2 of the paper
            settings = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                        (6, 160, 3, 2), (6, 320, 1, 1))
            layers, c_in = [conv_bn(3, 32, 3, 2, relu6=True)], 32
            for t, c, n, s in settings:
                for i in range(n):
                    layers.append(InvertedResidual(c_in, c, s if i == 0 else 1, t))
                    c_in = c
            layers.append(conv_bn(c_in, 1280, 1, 1, relu6=True))
            self.features = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(1280, 1000)

        def forward(self, x):
            return self.classifier(torch.flatten(self.pool(self.features(x)), 1))

    builders = {"resnet18": ResNet18, "mobilenet_v2": MobileNetV2}
    if name not in builders:
        raise UserError(f"network {name!r} is not one of {', '.join(builders)}")
    model = builders[name]()
    for module in model.modules():  # non-trivial BN statistics so the folded weights are not all alike
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def export_network_onnx(name: str) -> bytes:
    """ONNX bytes of `name` (1x3x224x224 float32 input `input`, opset 13, BN folded by the exporter)."""
    import io

    import torch

    model = build_network(name)
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, torch.zeros(INPUT_SHAPE), buffer, input_names=[INPUT_NAME], output_names=["logits"],
                          opset_version=OPSET, do_constant_folding=True, dynamo=False)
    return buffer.getvalue()


# ------------------------------------------------------------------------- ONNX MAC counting ---

# Ops whose output is written to DDR by the compiled model (Relu/Clip fuse into the producer).
_TRAFFIC_OPS = {"Conv", "Gemm", "MatMul", "Add", "MaxPool", "AveragePool", "GlobalAveragePool", "Concat", "Mul"}


def count_onnx(model) -> dict:
    """MACs and activation elements of an ONNX graph with static shapes.

    MACs: Conv = out_elements * (C_in / group) * kH * kW; Gemm/MatMul = out_elements * K.
    activation_elements: for every op in _TRAFFIC_OPS, the elements of its non-constant inputs plus
    its outputs (each written once and read by the next op; an upper bound when the compiler keeps
    a layer group in local memory). Returns {"macs", "activation_elements", "weight_elements",
    "per_op": {op_type: macs}}.
    """
    import onnx
    from onnx import numpy_helper, shape_inference

    if isinstance(model, (bytes, bytearray)):
        model = onnx.load_from_string(bytes(model))
    model = shape_inference.infer_shapes(model)
    graph = model.graph
    constants = {init.name: tuple(init.dims) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    constants[node.output[0]] = tuple(numpy_helper.to_array(attr.t).shape)
    shapes = dict(constants)
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)

    def shape(name: str) -> tuple:
        if name not in shapes:
            raise UserError(f"ONNX tensor {name!r} has no static shape; export with fixed input shapes")
        return shapes[name]

    macs, activation_elements, per_op = 0, 0, {}
    for node in graph.node:
        op_macs = 0
        if node.op_type == "Conv":
            weight = shape(node.input[1])  # [C_out, C_in/group, kH, kW]
            op_macs = math.prod(shape(node.output[0])) * math.prod(weight[1:])
        elif node.op_type == "Gemm":
            a = shape(node.input[0])
            trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
            k = a[0] if trans_a else a[1]
            op_macs = math.prod(shape(node.output[0])) * k
        elif node.op_type == "MatMul":
            a = shape(node.input[0])
            op_macs = math.prod(shape(node.output[0])) * a[-1]
        if op_macs:
            macs += op_macs
            per_op[node.op_type] = per_op.get(node.op_type, 0) + op_macs
        if node.op_type in _TRAFFIC_OPS:
            activation_elements += sum(math.prod(shape(n)) for n in node.input if n and n not in constants)
            activation_elements += sum(math.prod(shape(n)) for n in node.output if n)
    weight_elements = sum(math.prod(dims) for name, dims in constants.items())
    return {"macs": int(macs), "activation_elements": int(activation_elements),
            "weight_elements": int(weight_elements), "per_op": per_op}


# ------------------------------------------------------------------------------- compile step ---

def calibration_inputs(seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{INPUT_NAME: rng.standard_normal(INPUT_SHAPE).astype(np.float32)} for _ in range(CALIBRATION_SAMPLES)]


def compile_network(name: str, chip: str) -> dict:
    """Compile `name` INT8 for `chip` (cached); returns its compiled + ONNX stats."""
    from model_export import compile_cache

    onnx_bytes = export_network_onnx(name)
    started = time.monotonic()
    compiled = compile_cache.compile_onnx(onnx_bytes, chip=chip, quant="INT8", name=name,
                                          calibration_inputs=calibration_inputs())
    info_text = (compiled.cache_dir / "model_tool_info.log").read_text(errors="replace")
    info = board_estimate.parse_model_tool_info(info_text)
    counts = count_onnx(onnx_bytes)
    return {"network": name, "chip": chip, "quant": "int8", "cache_hit": compiled.cache_hit,
            "compile_seconds": compiled.compile_seconds, "seconds_here": round(time.monotonic() - started, 1),
            "cvimodel": str(compiled.cvimodel_path), "ion_bytes": compiled.ion_bytes,
            "weight_bytes": info["weight_bytes"], "tpu_routines": info["tpu_routines"],
            "cpu_routines": info["cpu_routines"], "cpu_routine_elements": info["cpu_routine_elements"],
            "macs": counts["macs"], "activation_bytes": counts["activation_elements"],  # INT8: 1 byte each
            "weight_elements_onnx": counts["weight_elements"]}


# ------------------------------------------------------------------------------------ the fit ---

PUBLISHED_MS = {  # sophgo/cviruntime scripts/evb/best_performance_cv18{0,1}x.csv: INT8, batch 1, TPU 500 MHz
    ("cv180x", "resnet18"): 136.03, ("cv180x", "mobilenet_v2"): 31.68,
    ("cv181x", "resnet18"): 18.26, ("cv181x", "mobilenet_v2"): 7.07,
}
FIT_VARIANT = "sum_per_chip_no_cpu_quant"
PUBLISHED_SOURCE = "sophgo/cviruntime scripts/evb/best_performance_cv18{0,1}x.csv (INT8, batch 1, TPU 500 MHz)"


def network_work(row: dict, cpu_routines: bool = True) -> dict:
    """The estimator's work numbers for one compiled CNN: one forward = one submit per TPU routine.
    cpu_routines=False drops the CPU `quant` of the fp32 image (the vendor may have fed uint8)."""
    return {"macs": row["macs"], "moved_bytes": row["weight_bytes"] + row["activation_bytes"],
            "tpu_submits": max(row["tpu_routines"], 1),
            "cpu_routine_elements": row["cpu_routine_elements"] if cpu_routines else 0}


def predict_ms(row: dict, efficiency: float, combine: str = "sum", cpu_routines: bool = True) -> float:
    return board_estimate.step_ms_from_work(chip=row["chip"], quant="int8", efficiency=efficiency, combine=combine,
                                            **network_work(row, cpu_routines))["step_ms"]


def fit_efficiency(rows: list[dict], combine: str = "sum", cpu_routines: bool = True) -> float:
    """The efficiency (fraction of INT8 peak, in [1e-3, 1]) minimising the squared log error of
    predict_ms vs the published times of `rows` (golden-section search on log efficiency)."""
    def loss(log_e: float) -> float:
        return sum((math.log(predict_ms(r, math.exp(log_e), combine, cpu_routines)) - math.log(r["published_ms"])) ** 2 for r in rows)

    lo, hi = math.log(1e-3), 0.0
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    for _ in range(100):
        if loss(a) < loss(b):
            hi = b
        else:
            lo = a
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    return math.exp((lo + hi) / 2)


def fit_report(rows: list[dict]) -> dict:
    """Per-chip efficiency fit (the estimator), its leave-one-out error, and two comparison variants:
    `max` (memory/compute overlap) per chip, and one global efficiency for both chips."""
    chips = sorted({r["chip"] for r in rows})
    result = {"variants": {}}
    for variant, combine, per_chip, cpu in (("sum_per_chip", "sum", True, True), ("max_per_chip", "max", True, True),
                                            ("sum_global", "sum", False, True),
                                            ("sum_per_chip_no_cpu_quant", "sum", True, False)):
        groups = {chip: [r for r in rows if r["chip"] == chip] for chip in chips} if per_chip else {"all": rows}
        # rounded here, so the committed value is exactly what the estimator uses
        efficiency = {g: round(fit_efficiency(members, combine, cpu), 6) for g, members in groups.items()}
        table = []
        for group, members in groups.items():
            for row in members:
                others = [r for r in members if r is not row]
                e_loo = fit_efficiency(others, combine, cpu)
                fitted = predict_ms(row, efficiency[group], combine, cpu)
                loo = predict_ms(row, e_loo, combine, cpu)
                table.append({"chip": row["chip"], "network": row["network"], "published_ms": row["published_ms"],
                              "estimate_ms": round(fitted, 3), "ratio": round(fitted / row["published_ms"], 3),
                              "loo_efficiency": round(e_loo, 6), "loo_estimate_ms": round(loo, 2),
                              "loo_ratio": round(loo / row["published_ms"], 3)})
        loo_log_err = [abs(math.log(t["loo_ratio"])) for t in table]
        result["variants"][variant] = {
            "combine": combine, "cpu_routines_counted": cpu, "free_parameters": len(efficiency),
            "efficiency": efficiency, "rows": table,
            "loo_max_factor": round(math.exp(max(loo_log_err)), 3),
            "loo_geomean_factor": round(math.exp(float(np.mean(loo_log_err))), 3)}
    # The estimator uses the per-chip sum without the CPU `quant` of the fp32 image: "best performance"
    # runs feed the TPU int8/uint8 images (fused preprocessing), so that CPU routine is not in the
    # published times. Chosen after seeing all variants (docs/board-estimate.md says so).
    chosen = result["variants"][FIT_VARIANT]
    result["fit"] = {"variant": FIT_VARIANT, "efficiency": chosen["efficiency"],
                     "fitted_on": "resnet18 + mobilenet_v2 INT8 per chip, vendor board times; 1 parameter per chip",
                     "loo_max_factor": chosen["loo_max_factor"], "loo_geomean_factor": chosen["loo_geomean_factor"]}
    return result


def bundle_check(bundle_dir: Path) -> dict | None:
    """Analytic decode-step stats of a shipped bundle next to its compiled cvimodel's model_tool info."""
    from model_export import toolchain
    import subprocess

    cvimodel = bundle_dir / "model.cvimodel"
    if not cvimodel.is_file():
        return None
    out = subprocess.run([str(toolchain.tool_path("model_tool")), "--info", str(cvimodel)], capture_output=True,
                         text=True, env=toolchain.toolchain_env(), timeout=300)
    if out.returncode != 0:
        raise UserError(f"model_tool --info {cvimodel} failed (exit {out.returncode}); recompile the bundle")
    compiled = board_estimate.parse_model_tool_info(out.stdout)
    analytic = board_estimate.bundle_step_stats(bundle_dir)
    keys = ("weight_bytes", "tpu_submits", "cpu_routine_elements")
    return {"bundle": str(bundle_dir.relative_to(REPO_ROOT) if bundle_dir.is_relative_to(REPO_ROOT) else bundle_dir),
            "analytic": {k: analytic[k] for k in keys},
            "compiled": {"weight_bytes": compiled["weight_bytes"], "tpu_submits": compiled["tpu_routines"],
                         "cpu_routine_elements": compiled["cpu_routine_elements"],
                         "cpu_functions": compiled["cpu_functions"], "ion_bytes": compiled["ion_bytes"]}}


def run_calibration(write: bool = True, result_path: Path = RESULT_PATH, keystrokes: int = 0,
                    backend: str = "onnx") -> dict:
    """Compile (cached) the four chip/network pairs, fit, and write models/estimate_calibration.json."""
    from model_export import toolchain

    toolchain.require_toolchain()
    rows = []
    for chip in ("cv180x", "cv181x"):
        for network in NETWORKS:
            _log(f"{network} INT8 for {chip} (cached compile) ...")
            row = compile_network(network, chip)
            row["published_ms"] = PUBLISHED_MS[(chip, network)]
            rows.append(row)
    report = fit_report(rows)
    report_rows = []
    for row in rows:
        public = {k: v for k, v in row.items() if k not in ("cvimodel", "seconds_here", "cache_hit")}
        public["moved_bytes"] = network_work(row)["moved_bytes"]
        report_rows.append(public)
    bundles = []
    for name in SHIPPED_BUNDLES:
        check = bundle_check(REPO_ROOT / "models" / "bundles" / name)
        if check:
            bundles.append(check)
    result = {
        "label": "calibration of an ESTIMATOR (measure/board_estimate.py) against vendor-published board times",
        "published_source": PUBLISHED_SOURCE, "tpu_mlir_version": toolchain.tpu_mlir_version(),
        "formula": board_estimate.STEP_FORMULA, "submit_ms": board_estimate.SUBMIT_MS,
        "boards": board_estimate.BOARDS, "networks": report_rows, "fit": report["fit"],
        "variants": report["variants"], "bundle_checks": bundles,
        "command": "edgetype bench calibrate-estimate --json",
    }
    if write:  # written before the bundle estimates, which read the new fit
        result_path.write_text(json.dumps(result, indent=1) + "\n")
        _log(f"wrote {result_path}")
    result["bundle_estimates"] = bundle_estimates(keystrokes, backend)
    return result


SHIPPED_BUNDLES = ("cv181x-int8-w128", "cv180x-int8-w128")


def bundle_estimates(keystrokes: int, backend: str = "onnx", seed: int = 0) -> list[dict]:
    """Board ESTIMATES for the shipped bundles: one decode step, and per keystroke over a host replay
    (measure.bench.run_replay on the held-out text, `keystrokes` keys, typo rate 0.03, `seed`):
    host overhead (keystroke time minus backend.run time) and forward calls per key, measured here,
    go through estimate_keystroke_ms at 30x / 50x / 100x."""
    from measure.bench import DEFAULT_TEXT, percentiles, run_replay
    from runtime.bundle import load_bundle
    from runtime.engine import open_session
    from measure.evaluate import read_eval_text

    results = []
    text = read_eval_text(DEFAULT_TEXT)[0] if keystrokes else None
    for name in SHIPPED_BUNDLES:
        directory = REPO_ROOT / "models" / "bundles" / name
        if not (directory / "manifest.json").is_file():
            continue
        step = board_estimate.estimate_step_ms(directory)
        row = {"bundle": f"models/bundles/{name}", "step": step.assumptions, "step_ms": step.ms}
        if keystrokes:
            bundle = load_bundle(directory)
            _log(f"{name}: replaying {keystrokes} keystrokes on the {backend} backend (host) ...")
            with open_session(bundle, backend=backend) as session:
                session.suggestions(3)  # warm-up outside the measurement
                replay = run_replay(session, text, keystrokes, 0.03, seed)
            keystroke = np.asarray(replay.keystroke_ms)
            overhead = keystroke - np.asarray(replay.model_ms)
            calls = np.asarray(replay.forward_calls)
            per_key, assumptions = board_estimate.estimate_keystroke_ms(step, calls, overhead)
            row["host"] = {"backend": backend, "keystrokes": int(len(keystroke)), "seed": seed, "typo_rate": 0.03,
                           "keystroke_ms": percentiles(keystroke), "overhead_ms": percentiles(overhead),
                           "forward_calls_mean": round(float(calls.mean()), 4), "forward_calls_max": int(calls.max())}
            row["board_keystroke_ms"] = {**percentiles(per_key), "label": board_estimate.LABEL}
            row["board_keystroke_ms_by_cpu_scale"] = {
                str(scale): percentiles(calls * step.ms + overhead * scale) for scale in board_estimate.CPU_SCALE_SENSITIVITY}
            row["keystroke_formula"] = assumptions["formula"]
        results.append(row)
    return results


def _print_table(result: dict) -> None:
    print(f"Board estimator vs vendor-published board times ({result['published_source']})")
    print(f"formula: {result['formula']}")
    for name, variant in result["variants"].items():
        chosen = "  <- the estimator" if name == result["fit"]["variant"] else ""
        print(f"\nvariant {name}{chosen}: efficiency {variant['efficiency']} ({variant['free_parameters']} fitted), "
              f"leave-one-out worst factor {variant['loo_max_factor']}, geomean {variant['loo_geomean_factor']}")
        print(f"  {'chip':7} {'network':13} {'published':>9} {'estimate':>9} {'ratio':>6} {'LOO est':>8} {'LOO ratio':>9}")
        for r in variant["rows"]:
            print(f"  {r['chip']:7} {r['network']:13} {r['published_ms']:9.2f} {r['estimate_ms']:9.2f} "
                  f"{r['ratio']:6.2f} {r['loo_estimate_ms']:8.2f} {r['loo_ratio']:9.2f}")
    for row in result["networks"]:
        print(f"{row['chip']} {row['network']}: {row['macs'] / 1e9:.3f} GMAC, weights {row['weight_bytes']} B, "
              f"activation traffic {row['activation_bytes']} B, {row['tpu_routines']} TPU / {row['cpu_routines']} CPU routines")
    for check in result["bundle_checks"]:
        print(f"bundle {check['bundle']}: analytic {check['analytic']} vs compiled {check['compiled']}")
    for row in result.get("bundle_estimates", []):
        step = row["step"]
        print(f"\n{row['bundle']} ({step['chip']} {step['quant']}), {board_estimate.LABEL}: decode step "
              f"{row['step_ms']:.2f} ms = submits {step['submits_ms']} + memory {step['memory_ms']} "
              f"({step['moved_bytes']} B at {step['ddr_gbps']} GB/s) + compute {step['compute_ms']} "
              f"({step['macs']} MAC, efficiency {step['efficiency']}, rate x{step['quant_rate_fraction']}) "
              f"+ CPU routines {step['cpu_routine_ms']} ({step['cpu_routine_elements']} elements)")
        for key in ("step_ms_by_bf16_rate_fraction", "step_ms_by_efficiency_scale", "step_ms_by_cpu_ns_per_element"):
            if key in step:
                print(f"  {key}: {step[key]}")
        if "host" in row:
            print(f"  host replay {row['host']}")
            print(f"  board keystroke ms (cpu_scale 50): {row['board_keystroke_ms']}")
            print(f"  by cpu_scale: {row['board_keystroke_ms_by_cpu_scale']}")


def _cmd_calibrate(args) -> int:
    if args.keystrokes < 0:
        raise UserError(f"--keystrokes {args.keystrokes}: use 0 (no replay) or more")
    result = run_calibration(write=not args.no_write, keystrokes=args.keystrokes, backend=args.backend)
    if args.json:
        print(json.dumps(result))
    else:
        _print_table(result)
    return 0


def register(subparsers, groups):
    """Adds `bench calibrate-estimate` to the shared `bench` group."""
    parser = groups["bench"].add_parser(
        "calibrate-estimate", help="compile resnet18/mobilenet_v2 INT8 (cached) and fit the board estimator "
                                   "to the vendor's published board times")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keystrokes", type=int, default=500,
                        help="host replay length for the shipped bundles' per-keystroke estimate (0: skip)")
    parser.add_argument("--backend", default="onnx", help="host backend for that replay (default onnx)")
    parser.add_argument("--no-write", action="store_true", help=f"do not rewrite {RESULT_PATH.relative_to(REPO_ROOT)}")
    parser.set_defaults(func=_cmd_calibrate)
