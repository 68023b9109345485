"""float32 <-> bf16 conversion (tpu_driver/tensor.py) against a per-element integer oracle."""
import numpy as np

from tpu_driver.tensor import bf16_bits_to_float32, float32_to_bf16_bits


def reference_bf16_bits(value: np.float32) -> int:
    """Round-to-nearest-even on the integer bits, one element at a time (the oracle)."""
    bits = int(np.array(value, np.float32).view(np.uint32))
    if np.isnan(value):
        return 0x7FC0
    upper, lower = bits >> 16, bits & 0xFFFF
    if lower > 0x8000 or (lower == 0x8000 and upper & 1):
        upper += 1
    return upper & 0xFFFF


def test_exact_values_round_trip():
    values = np.array([0.0, -0.0, 1.0, -2.0, 0.5, 3.0, 1024.0, np.inf, -np.inf], np.float32)
    assert np.array_equal(bf16_bits_to_float32(float32_to_bf16_bits(values)), values)


def test_ties_round_to_even():
    # 1 + 2^-8 lies exactly between bf16 1.0 (even) and 1 + 2^-7: rounds down to 1.0
    # 1 + 3*2^-8 lies between 1 + 2^-7 (odd) and 1 + 2^-6 (even): rounds up
    values = np.array([1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8)], np.float32)
    assert bf16_bits_to_float32(float32_to_bf16_bits(values)).tolist() == [1.0, 1 + 2 ** -6, -1.0]


def test_random_values_match_the_oracle_including_nan_and_overflow():
    rng = np.random.default_rng(0)
    values = (rng.standard_normal(2000) * np.exp(rng.uniform(-20, 20, 2000))).astype(np.float32)
    values[:4] = [np.nan, np.float32(3.3895e38), -np.float32(3.3895e38), np.float32(1e-40)]
    got = float32_to_bf16_bits(values)
    assert got.dtype == np.uint16
    expected = np.array([reference_bf16_bits(v) for v in values], np.uint16)
    assert np.array_equal(got, expected)
    assert np.isnan(bf16_bits_to_float32(got[:1]))[0]


def test_in_place_output_and_scratch_on_a_strided_slice():
    values = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7
    out = np.zeros((2, 3, 4), np.uint16)
    scratch = np.zeros((2, 3, 4), np.uint32)
    float32_to_bf16_bits(values[..., 1:2], out=out[..., 1:2], scratch=scratch[..., 1:2])
    expected = np.array([reference_bf16_bits(v) for v in values[..., 1].ravel()], np.uint16).reshape(2, 3)
    assert np.array_equal(out[..., 1], expected)
    assert not out[..., 0].any() and not out[..., 2:].any()  # nothing else written
    back = bf16_bits_to_float32(out[..., 1])
    assert np.max(np.abs(back - values[..., 1])) <= np.max(np.abs(values)) * 2 ** -8
