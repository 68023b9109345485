"""Compare the riscv64 (qemu) and x86 reports of board_tests/onboard/riscv64_smoke.py.

    python -m board_tests.riscv64 compare RISCV64.json X86.json [--json]
    python -m board_tests.riscv64 compare-replay RISCV64.json X86.json [--json]   (demo --replay)

Called by ci/riscv64.sh. The same numpy code on two CPUs: token ids, suggested words, kept KV
slots and typed text must be identical; logits and probabilities may differ in the last bits
(different BLAS, FMA): within LOGIT_ATOL / PROB_ATOL. Exit 0 only when every check ran on both
and agrees; a golden.json mismatch of the numpy backend (`golden_problems`: fp32 tolerance of
board_tests/onboard/golden.py) also fails, on riscv64 or x86 alike.
"""
from __future__ import annotations

import json
import sys

LOGIT_ATOL = 2e-3
PROB_ATOL = 1e-4
EXACT_KEYS = {"top5_ids", "words", "suggestion_ids", "kept_tokens", "typed", "chip", "quant",
              "window", "vocab_size", "contexts", "golden_words"}
CLOSE_KEYS = {"top5_logits": LOGIT_ATOL, "probs": PROB_ATOL}


def _flatten(values) -> list[float]:
    if isinstance(values, (list, tuple)):
        return [v for item in values for v in _flatten(item)]
    return [float(values)]


def compare(riscv: dict, x86: dict) -> dict:
    rows = []
    for name in sorted(set(riscv.get("checks", {})) | set(x86.get("checks", {}))):
        a, b = riscv["checks"].get(name), x86["checks"].get(name)
        problems = []
        if a is None or b is None:
            problems.append("missing on " + ("riscv64" if a is None else "x86"))
        else:
            if not a["ok"]:
                problems.append(f"riscv64: {a['error']}")
            if not b["ok"]:
                problems.append(f"x86: {b['error']}")
            if a["ok"] and b["ok"]:
                va, vb = a["values"], b["values"]
                for key in sorted(set(va) | set(vb)):
                    if key in EXACT_KEYS and va.get(key) != vb.get(key):
                        problems.append(f"{key}: riscv64 {va.get(key)} != x86 {vb.get(key)}")
                    elif key in CLOSE_KEYS:
                        fa, fb = _flatten(va.get(key, [])), _flatten(vb.get(key, []))
                        worst = max((abs(p - q) for p, q in zip(fa, fb)), default=0.0)
                        if len(fa) != len(fb) or worst > CLOSE_KEYS[key]:
                            problems.append(f"{key}: differ by {worst:.2e} > {CLOSE_KEYS[key]:.0e}")
                for arch, values in (("riscv64", va), ("x86", vb)):
                    if values.get("golden_problems"):
                        problems.append(f"{arch} vs golden.json: {values['golden_problems'][:2]}")
        rows.append({"check": name, "ok": not problems, "problems": problems,
                     "riscv64_s": (a or {}).get("seconds"), "x86_s": (b or {}).get("seconds"),
                     "riscv64_values": (a or {}).get("values")})
    return {"ok": bool(rows) and all(r["ok"] for r in rows),
            "riscv64": {k: riscv.get(k) for k in ("machine", "python", "numpy")},
            "x86": {k: x86.get(k) for k in ("machine", "python", "numpy")},
            "checks": rows}


REPLAY_KEYS = ("text", "suggestions", "keystrokes", "accepted", "backend")


def compare_replay(riscv: dict, x86: dict) -> dict:
    """Two `demo --replay --json` results: what was typed and shown must be identical."""
    differ = [key for key in REPLAY_KEYS if riscv.get(key) != x86.get(key)]
    return {"ok": not differ, "differ": differ,
            "riscv64": {k: riscv.get(k) for k in REPLAY_KEYS},
            "x86": {k: x86.get(k) for k in REPLAY_KEYS}}


def _read_last_json(path: str) -> dict:
    with open(path) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def _main_replay(argv: list[str]) -> int:
    try:
        result = compare_replay(_read_last_json(argv[1]), _read_last_json(argv[2]))
    except (OSError, ValueError, IndexError) as error:
        print(f"riscv64: cannot read replay results: {error}", file=sys.stderr)
        return 1
    if "--json" in argv:
        print(json.dumps(result, sort_keys=True))
    else:
        for arch in ("riscv64", "x86"):
            r = result[arch]
            print(f"{arch + ':':9} text {r['text']!r} suggestions {r['suggestions']} "
                  f"({r['keystrokes']} keystrokes, {r['accepted']} accepted, backend {r['backend']})")
        print("riscv64 and x86 replays identical" if result["ok"]
              else f"riscv64 replay differs from x86: {', '.join(result['differ'])}")
    return 0 if result["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) >= 3 and argv[0] == "compare-replay":
        return _main_replay(argv)
    if len(argv) < 3 or argv[0] != "compare":
        print("usage: python -m board_tests.riscv64 compare|compare-replay RISCV64.json X86.json "
              "[--json]", file=sys.stderr)
        return 2
    reports = []
    for path in argv[1:3]:
        try:
            with open(path) as f:
                reports.append(json.loads(f.read().strip().splitlines()[-1]))
        except (OSError, ValueError, IndexError) as error:
            print(f"riscv64: cannot read report {path}: {error}", file=sys.stderr)
            return 1
    result = compare(*reports)
    if "--json" in argv:
        print(json.dumps(result, sort_keys=True))
    else:
        r, x = result["riscv64"], result["x86"]
        print(f"riscv64: {r['machine']} python {r['python']} numpy {r['numpy']} (qemu-user)")
        print(f"x86:     {x['machine']} python {x['python']} numpy {x['numpy']}")
        for row in result["checks"]:
            status = "ok  " if row["ok"] else "FAIL"
            print(f"{status} {row['check']:<20} riscv64 {row['riscv64_s']} s, x86 {row['x86_s']} s"
                  + ("" if row["ok"] else "  " + "; ".join(row["problems"])))
            if row["check"] == "engine_suggestions" and row["riscv64_values"]:
                v = row["riscv64_values"]
                for text, words, probs in zip(v["contexts"], v["words"], v["probs"]):
                    print(f"     riscv64 suggestions for {text!r}: "
                          + ", ".join(f"{w} ({p:.3f})" for w, p in zip(words, probs)))
        print("riscv64 and x86 agree" if result["ok"] else "riscv64 check FAILED")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
