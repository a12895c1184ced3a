/* Scalar stand-ins for the AVX-512 intrinsics of lib/bitlens/native/_search.c, written from the operation
 * pseudo-code of Intel's intrinsics guide, so the AVX-512 kernel's logic (masks, lanes, the cross-query
 * transposition) runs on a CPU without AVX-512. tests/test_search_avx512_emulated.py renames `_mm512_*` to
 * `emu512_*` and `__m512i` to `emu512i` in a copy of the kernel source and builds it with this header.
 * An intrinsic used there and missing here fails that build by name. */
#ifndef BITLENS_EMU512_H
#define BITLENS_EMU512_H
#include <stdint.h>

typedef struct { uint64_t v[8]; } emu512i;  /* lane i = bits [64 i, 64 i + 63] */

static inline emu512i emu512_setzero_si512(void) {
    emu512i r;
    for (int i = 0; i < 8; i++) r.v[i] = 0;
    return r;
}
static inline emu512i emu512_set1_epi64(long long x) {
    emu512i r;
    for (int i = 0; i < 8; i++) r.v[i] = (uint64_t)x;
    return r;
}
/* zeroing masked load: a lane whose mask bit is clear is 0 and its memory is not read */
static inline emu512i emu512_maskz_loadu_epi64(unsigned char k, const void *p) {
    emu512i r;
    const uint64_t *q = p;
    for (int i = 0; i < 8; i++) r.v[i] = (k >> i) & 1 ? q[i] : 0;
    return r;
}
static inline void emu512_storeu_si512(void *p, emu512i a) {
    uint64_t *q = p;
    for (int i = 0; i < 8; i++) q[i] = a.v[i];
}
static inline emu512i emu512_xor_si512(emu512i a, emu512i b) {
    for (int i = 0; i < 8; i++) a.v[i] ^= b.v[i];
    return a;
}
static inline emu512i emu512_add_epi64(emu512i a, emu512i b) {
    for (int i = 0; i < 8; i++) a.v[i] += b.v[i];
    return a;
}
static inline emu512i emu512_popcnt_epi64(emu512i a) {
    for (int i = 0; i < 8; i++) a.v[i] = (uint64_t)__builtin_popcountll(a.v[i]);
    return a;
}
/* unsigned 32 x 32 -> 64 of each lane's low halves */
static inline emu512i emu512_mul_epu32(emu512i a, emu512i b) {
    for (int i = 0; i < 8; i++) a.v[i] = (uint64_t)(uint32_t)a.v[i] * (uint64_t)(uint32_t)b.v[i];
    return a;
}
static inline long long emu512_reduce_add_epi64(emu512i a) {
    uint64_t s = 0;
    for (int i = 0; i < 8; i++) s += a.v[i];
    return (long long)s;
}
/* per 128-bit chunk k (lanes 2k, 2k + 1): (a[2k], b[2k]) and (a[2k + 1], b[2k + 1]) */
static inline emu512i emu512_unpacklo_epi64(emu512i a, emu512i b) {
    emu512i r;
    for (int k = 0; k < 4; k++) { r.v[2 * k] = a.v[2 * k]; r.v[2 * k + 1] = b.v[2 * k]; }
    return r;
}
static inline emu512i emu512_unpackhi_epi64(emu512i a, emu512i b) {
    emu512i r;
    for (int k = 0; k < 4; k++) { r.v[2 * k] = a.v[2 * k + 1]; r.v[2 * k + 1] = b.v[2 * k + 1]; }
    return r;
}
/* chunks 0, 1 from a and 2, 3 from b, each chosen by two bits of imm */
static inline emu512i emu512_shuffle_i64x2(emu512i a, emu512i b, int imm) {
    emu512i r;
    for (int k = 0; k < 4; k++) {
        const emu512i *src = k < 2 ? &a : &b;
        int sel = (imm >> (2 * k)) & 3;
        r.v[2 * k] = src->v[2 * sel];
        r.v[2 * k + 1] = src->v[2 * sel + 1];
    }
    return r;
}
static inline emu512i emu512_loadu_si512(const void *p) {
    return emu512_maskz_loadu_epi64(0xff, p);
}
/* signed 64-bit a <= b per lane, as a mask (bit i = lane i) */
static inline unsigned char emu512_cmple_epi64_mask(emu512i a, emu512i b) {
    unsigned char k = 0;
    for (int i = 0; i < 8; i++) k |= (unsigned char)(((int64_t)a.v[i] <= (int64_t)b.v[i]) << i);
    return k;
}
/* the low 64 bits of each lane's product */
static inline emu512i emu512_mullox_epi64(emu512i a, emu512i b) {
    for (int i = 0; i < 8; i++) a.v[i] *= b.v[i];
    return a;
}
#endif
