/* edgetype keystroke core: the per-key CPU work of runtime/keystroke_core.py, in plain C.
 *
 * Plain C ABI, no libc at all (built with -nostdlib -ffreestanding): one .so per architecture loads
 * into a glibc or a musl Python alike (Milk-V's buildroot images are musl, Debian's glibc), through
 * ctypes. Every buffer is the caller's; nothing here allocates. The numpy twin is PythonCore in
 * runtime/keystroke_core.py; tests/test_keystroke_core.py drives both with random inputs.
 *
 * Build: `make native` (Makefile), for x86-64 (host cc) and riscv64 (python -m ziglang cc).
 */
#include <stdint.h>

#define ET_ABI_VERSION 1

// ---------------------------------------------------------------------------------------------
// version: the binding refuses a library whose ABI differs
int32_t et_abi_version(void) { return ET_ABI_VERSION; }

// the instruction counter's boundary, called once per key: a no-op, except in the counting build
// (`make native-count`, -DET_COUNTING) where it asks callgrind to dump the counts so far
#ifdef ET_COUNTING
#include <callgrind.h>
#endif
int32_t et_mark(int32_t key) {
#ifdef ET_COUNTING
    CALLGRIND_DUMP_STATS;
#endif
    return key;
}

// ---------------------------------------------------------------------------------------------
// top-k within a prefix: positions j of ids[0..m) whose value log_probs[ids[j]] is at or above the
// want-th best value (all of them when want >= m), best first, equal values by ascending j.
// out_pos: (cap,) int32; out_val: (cap,) float32. Returns the count, or -count when cap is too small
// (nothing useful written then). Cost: O(m * want) compares, want ~ 7.
int32_t et_top_prefix(const float *log_probs, const int64_t *ids, int32_t m, int32_t want,
                      int32_t *out_pos, float *out_val, int32_t cap) {
    float best[64];  // (want,) the want best values so far, descending
    if (want > m) want = m;
    if (want <= 0) return 0;
    if (want > 64) return -m;  // the binding asks for at most SUGGESTION_SLACK + k, far below
    int32_t n_best = 0;
    for (int32_t j = 0; j < m; j++) {
        float v = log_probs[ids[j]];
        if (n_best == want && !(v > best[want - 1])) continue;
        int32_t i = n_best < want ? n_best++ : want - 1;
        while (i > 0 && best[i - 1] < v) { best[i] = best[i - 1]; i--; }
        best[i] = v;
    }
    float threshold = best[want - 1];
    int32_t count = 0;
    for (int32_t j = 0; j < m; j++) {
        float v = log_probs[ids[j]];
        if (!(v >= threshold)) continue;
        if (count == cap) return -(count + 1);
        // insertion keeps descending values, ascending j among equal ones (stable)
        int32_t i = count++;
        while (i > 0 && out_val[i - 1] < v) { out_val[i] = out_val[i - 1]; out_pos[i] = out_pos[i - 1]; i--; }
        out_val[i] = v;
        out_pos[i] = j;
    }
    return count;
}

// ---------------------------------------------------------------------------------------------
// expf / logf without libm (float32, |error| ~ 1 ulp over the range used: x - max <= 0)
static float et_expf(float x) {
    if (x < -103.0f) return 0.0f;
    if (x > 88.0f) x = 88.0f;
    // x = k ln2 + r, |r| <= ln2/2; exp(r) by a degree-6 polynomial
    float kf = x * 1.44269504088896341f;
    int32_t k = (int32_t)(kf + (kf >= 0 ? 0.5f : -0.5f));
    float r = x - (float)k * 0.693145751953125f - (float)k * 1.428606765330187045e-06f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666671633f + r * (0.041666645557f
              + r * (0.008333417773f + r * 0.001388874790f)))));
    union { float f; int32_t i; } scale;
    if (k < -126) {  // subnormal result: scale in two steps
        scale.i = (k + 126 + 127) << 23;
        return p * scale.f * 1.17549435e-38f;
    }
    scale.i = (k + 127) << 23;
    return p * scale.f;
}

static float et_logf(float x) {  // x > 0, normal
    union { float f; int32_t i; } u = {x};
    int32_t e = ((u.i >> 23) & 0xff) - 127;
    u.i = (u.i & 0x007fffff) | 0x3f800000;  // mantissa in [1, 2)
    float m = u.f;
    if (m > 1.41421356f) { m *= 0.5f; e += 1; }
    // log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172
    float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
    float t = s2 * (0.666666666666735130f + s2 * (0.399999999994094190f + s2 * (0.285714287436623914f
              + s2 * (0.222221984321497839f + s2 * 0.181835721616180501f))));
    return (float)e * 0.693147180559945309f + 2.0f * s + s * t;
}

// ---------------------------------------------------------------------------------------------
// log-softmax of a step's logits into a ring row: row = logits - max - log(sum(exp(logits - max))).
// logits, row: (n,) float32 (may not alias). The sum runs in double (then one rounding).
void et_log_softmax(const float *logits, float *row, int32_t n) {
    float top = logits[0];
    for (int32_t i = 1; i < n; i++) if (logits[i] > top) top = logits[i];
    double sum[4] = {0.0, 0.0, 0.0, 0.0};  // four chains: an in-order core need not wait on each add
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        for (int32_t k = 0; k < 4; k++) {
            float shifted = logits[i + k] - top;
            row[i + k] = shifted;
            sum[k] += (double)et_expf(shifted);
        }
    }
    for (; i < n; i++) {
        float shifted = logits[i] - top;
        row[i] = shifted;
        sum[0] += (double)et_expf(shifted);
    }
    float lse = et_logf((float)((sum[0] + sum[1]) + (sum[2] + sum[3])));
    for (i = 0; i < n; i++) row[i] -= lse;
}
