/* Exact top-k over packed binary codes: Hamming distance and SDC (weighted plane-pair Hamming), OpenMP.
 *
 * A pair's cost is C = sum_ij coef[i][j] * popcount(q_i XOR d_j) over the planes of the query (i) and the
 * database item (j); Hamming is one plane with coef 1.  Mode 0 keeps the k smallest costs, mode 1 (SDC cosine)
 * the k largest keys IP*|IP| / dnorm[r] with IP = base - 2C, computed in double exactly as numpy does.
 * Ties always go to the smaller database index: within one scan rows arrive in increasing order, so a newcomer
 * enters only when strictly better than the current k-th; scans of separate database ranges are merged by
 * (score, index).
 *
 * Work split: threads take tasks of 64 queries (or, with few queries, ranges of the database); a task walks
 * the database in blocks that stay in L2, scoring a small block of queries against each row while that
 * row is in L1.  Selection sits behind one integer comparison per pair: each query of the block keeps the
 * largest cost that could still enter its list (for cosine, derived from the k-th key and the block's norm
 * range), so a cosine key is computed only for a pair that can enter.
 *
 * Kernels differ only in how a pair's cost is computed (generic builtin, scalar popcnt, AVX2 nibble lookup,
 * AVX-512 VPOPCNTDQ); blocking and selection are one shared body.  The kernel is chosen at run time; the
 * vector code is compiled with target attributes, so the build needs no -march.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BITLENS_X86 1
#endif

typedef struct {
    const uint64_t *q, *d;
    int64_t qs, ds;          /* plane strides in words */
    int pq, pd, W;           /* planes, words per plane row */
    const int64_t *coef;     /* pq * pd */
    int64_t nq, n, k;
    int mode;
    int64_t base;
    const double *dnorm;
} job_t;

/* per (task, query) selection state: mode 0 keys (cost << 32 | row); mode 1 (key, row) */
typedef struct {
    uint64_t *ikey;      /* k, max-heap */
    double *fkey;        /* k, min-heap on (key, -row) */
    int64_t *frow;
    int64_t cnt;
} heap_t;

/* ---- selection ---------------------------------------------------------------------------------------- */

static inline void iheap_push(uint64_t *h, int64_t *cnt, int64_t k, uint64_t key) {
    int64_t i;
    if (*cnt < k) {
        i = (*cnt)++;
        while (i > 0) {
            int64_t p = (i - 1) >> 1;
            if (h[p] >= key) break;
            h[i] = h[p];
            i = p;
        }
        h[i] = key;
        return;
    }
    i = 0;  /* replace the top (largest) */
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, c;
        if (l >= k) break;
        c = (r < k && h[r] > h[l]) ? r : l;
        if (h[c] <= key) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = key;
}

/* a worse than b for the cosine mode: smaller key, or equal key and larger row */
static inline int fworse(double ka, int64_t ra, double kb, int64_t rb) {
    return ka < kb || (ka == kb && ra > rb);
}

static inline void fheap_push(double *hk, int64_t *hr, int64_t *cnt, int64_t k, double key, int64_t row) {
    int64_t i;
    if (*cnt < k) {
        i = (*cnt)++;
        while (i > 0) {
            int64_t p = (i - 1) >> 1;
            if (!fworse(key, row, hk[p], hr[p])) break;
            hk[i] = hk[p]; hr[i] = hr[p];
            i = p;
        }
        hk[i] = key; hr[i] = row;
        return;
    }
    i = 0;  /* replace the top (worst) */
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, c;
        if (l >= k) break;
        c = (r < k && fworse(hk[r], hr[r], hk[l], hr[l])) ? r : l;
        if (!fworse(hk[c], hr[c], key, row)) break;
        hk[i] = hk[c]; hr[i] = hr[c];
        i = c;
    }
    hk[i] = key; hr[i] = row;
}

/* ---- admission thresholds ------------------------------------------------------------------------- */

/* The best key a pair of cost c can have over rows whose squared norms lie in [nmin, nmax]: for IP >= 0 the
 * smallest norm gives the largest key, for IP < 0 the largest.  Correctly rounded products and quotients are
 * monotone, so the key computed for any such row is <= this value, rounding included. */
static inline double cosine_bound(int64_t base, int64_t c, double nmin, double nmax) {
    double ip = (double)(base - 2 * c);
    return ip * fabs(ip) / (ip >= 0 ? nmin : nmax);
}

/* Largest cost whose bound still beats the k-th key t (-1: none can; INT64_MAX: no usable bound).  The bound
 * is non-increasing in the cost, so a binary search finds it; it runs once per query and block, and after
 * each admission, never per pair. */
static int64_t cosine_limit(int64_t base, double t, double nmin, double nmax) {
    if (!(nmin > 0) || !(nmax >= nmin) || !isfinite(nmax) || base < 0) return INT64_MAX;
    if (!(cosine_bound(base, 0, nmin, nmax) > t)) return -1;
    if (cosine_bound(base, base, nmin, nmax) > t) return INT64_MAX;
    int64_t lo = 0, hi = base;  /* bound(lo) > t >= bound(hi) */
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (cosine_bound(base, mid, nmin, nmax) > t) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* The largest cost a new row can have and still enter H.  A row of a scan comes after every row already
 * kept, so a tie with the k-th never enters: mode 0 needs a cost below the k-th cost. */
static inline int64_t query_limit(const job_t *J, const heap_t *H, double nmin, double nmax) {
    if (H->cnt < J->k) return INT64_MAX;
    if (J->mode == 0) return (int64_t)(H->ikey[0] >> 32) - 1;
    return cosine_limit(J->base, H->fkey[0], nmin, nmax);
}

/* A pair that passed the threshold test: insert it (cosine: if its exact key is better) and return the new
 * threshold. */
static inline int64_t admit(const job_t *J, heap_t *H, int64_t cost, int64_t r, double nmin, double nmax,
                            int64_t lim) {
    if (J->mode == 0) {
        iheap_push(H->ikey, &H->cnt, J->k, ((uint64_t)cost << 32) | (uint64_t)r);
        return query_limit(J, H, nmin, nmax);
    }
    double ip = (double)(J->base - 2 * cost);
    double key = ip * fabs(ip) / J->dnorm[r];
    if (H->cnt < J->k || fworse(H->fkey[0], H->frow[0], key, r)) {
        fheap_push(H->fkey, H->frow, &H->cnt, J->k, key, r);
        return query_limit(J, H, nmin, nmax);
    }
    return lim;
}

/* Squared norms of rows [b0, b1): their range, or nmin = 0 when a norm is not positive (no bound then). */
static void norm_range(const job_t *J, int64_t b0, int64_t b1, double *nmin, double *nmax) {
    double lo = INFINITY, hi = 0;
    for (int64_t r = b0; r < b1; r++) {
        double v = J->dnorm[r];
        if (!(v > 0)) { lo = 0; break; }
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    *nmin = lo;
    *nmax = hi;
}

/* ---- pair costs and the shared scan ------------------------------------------------------------------ */

#define QBLOCK 8
#define TASK_QUERIES 64 /* queries per task when threads split the queries */
#define L2_BYTES (256 * 1024)

/* Costs take the shape (W words per plane, PQ and PD planes) as arguments; the scans below call them with
 * constants for the common shapes (1,024- and 2,048-bit Hamming; 512 x 2 SDC) so the compiler unrolls them.
 * Each kernel gives two macros, reading J, coef and drow:
 *   PAIR_COST   sets the int64 `cost` of the query row `qrow` against drow;
 *   BLOCK_COST  sets bcost[u] for the QBLOCK queries qb + u (a full block) against drow.  The vector kernels
 *               keep each query's sum in a vector and add the QBLOCK vectors across in one transposition
 *               instead of one horizontal sum per pair. */

/* BEBR's plane weights (1, 1/2) give the coefficients (4, 2, 2, 1) for 512 x 2 SDC; that shape is also compiled
 * with them as constants (C421 = 1): the vector kernels then weight the plane pairs by Horner's rule in
 * additions, ((p00 * 2 + p01 + p10) * 2 + p11), instead of four multiplications. */
static const int64_t COEF421[4] = {4, 2, 2, 1};
#define COEF(idx) (C421 ? COEF421[idx] : coef[idx])

static inline int coef_is_421(const job_t *J) {
    return J->pq == 2 && J->pd == 2 && J->coef[0] == 4 && J->coef[1] == 2 && J->coef[2] == 2 && J->coef[3] == 1;
}

#define SCALAR_COST(POPCNT, W, PQ, PD, W0)                                                            \
    for (int i = 0; i < (PQ); i++) {                                                                  \
        const uint64_t *a = qrow + i * J->qs;                                                         \
        for (int j = 0; j < (PD); j++) {                                                              \
            const uint64_t *b = drow + j * J->ds;                                                     \
            int64_t h = 0;                                                                            \
            for (int w = (W0); w < (W); w++) h += POPCNT(a[w] ^ b[w]);                                \
            cost += COEF(i * (PD) + j) * h;                                                           \
        }                                                                                             \
    }

#define SCALAR_BLOCK(POPCNT, W, PQ, PD)                                                               \
    for (int u = 0; u < QBLOCK; u++) {                                                                \
        const uint64_t *qrow = J->q + (qb + u) * (W);                                                 \
        int64_t cost = 0;                                                                             \
        SCALAR_COST(POPCNT, W, PQ, PD, 0)                                                             \
        bcost[u] = cost;                                                                              \
    }

/* One pair's cost `c` for query qi: summed into the floor, or offered to the selection behind the threshold. */
#define SELECT(qi, c)                                                                                 \
    if (FLOOR) sum_all += (c);                                                                        \
    else if ((c) <= lim[(qi) - qb])                                                                   \
        lim[(qi) - qb] = admit(J, &heaps[(qi) - q0], (c), r, nmin, nmax, lim[(qi) - qb]);

/* Scans queries [q0, q1) against database rows [r0, r1).  Selection (FLOOR = 0): heaps[qi - q0] hold the
 * running top-k.  The floor (FLOOR = 1): every pair's cost, summed into *total, no selection at all; it is
 * the same loop, so the difference between the two is the price of the selection.  Each database row is read
 * once per block of QBLOCK queries, while it is in L1; a block of rows stays in L2 across the query blocks. */
#define SCAN_BODY(PAIR_COST, BLOCK_COST)                                                              \
    const int64_t *coef = J->coef;                                                                    \
    int64_t sum_all = 0;                                                                              \
    SCAN_DECL                                                                                         \
    int64_t rowbytes = (int64_t)(PD) * (W) * 8;                                                       \
    int64_t rb = L2_BYTES / (rowbytes > 0 ? rowbytes : 1);                                            \
    if (rb < 16) rb = 16;                                                                             \
    for (int64_t b0 = r0; b0 < r1; b0 += rb) {                                                        \
        int64_t b1 = b0 + rb < r1 ? b0 + rb : r1;                                                     \
        double nmin = 0, nmax = 0;                                                                    \
        if (!(FLOOR) && J->mode == 1) norm_range(J, b0, b1, &nmin, &nmax);                            \
        for (int64_t qb = q0; qb < q1; qb += QBLOCK) {                                                \
            int64_t qe = qb + QBLOCK < q1 ? qb + QBLOCK : q1;                                         \
            int64_t lim[QBLOCK];                                                                      \
            if (!(FLOOR))                                                                             \
                for (int64_t qi = qb; qi < qe; qi++)                                                  \
                    lim[qi - qb] = query_limit(J, &heaps[qi - q0], nmin, nmax);                       \
            if (qe - qb == QBLOCK) {                                                                  \
                BLOCK_PREP                                                                            \
                for (int64_t r = b0; r < b1; r++) {                                                   \
                    const uint64_t *drow = J->d + r * (W);                                            \
                    int64_t bcost[QBLOCK];                                                            \
                    BLOCK_COST                                                                        \
                    BLOCK_SELECT                                                                      \
                }                                                                                     \
            } else {                                                                                  \
                for (int64_t r = b0; r < b1; r++) {                                                   \
                    const uint64_t *drow = J->d + r * (W);                                            \
                    for (int64_t qi = qb; qi < qe; qi++) {                                            \
                        const uint64_t *qrow = J->q + qi * (W);                                       \
                        int64_t cost = 0;                                                             \
                        PAIR_COST                                                                     \
                        SELECT(qi, cost)                                                              \
                    }                                                                                 \
                }                                                                                     \
            }                                                                                         \
        }                                                                                             \
    }                                                                                                 \
    SCAN_END                                                                                          \
    if (FLOOR) *total += sum_all;

/* Hooks a kernel may define before it expands SCAN_BODY (the defaults below suit the scalar and AVX2 ones):
 *   SCAN_DECL / SCAN_END  state of the whole scan (the AVX-512 floor's vector sum);
 *   BLOCK_PREP            once per full block of queries, before its rows (AVX-512: the queries into registers);
 *   BLOCK_SELECT          offers the block's QBLOCK costs bcost[] of row r to the selection (or the floor). */
#define SCAN_DECL
#define SCAN_END
#define BLOCK_PREP
#define BLOCK_SELECT for (int u = 0; u < QBLOCK; u++) { SELECT(qb + u, bcost[u]) }

/* heaps == NULL asks for the floor (see SCAN_BODY) */
#define SCAN_ARGS const job_t *J, int64_t q0, int64_t q1, int64_t r0, int64_t r1, heap_t *heaps, int64_t *total
#define SCAN_PASS J, q0, q1, r0, r1, heaps, total

#define DEFINE_SCALAR_SCAN(NAME, ATTR)                                                                \
static inline __attribute__((always_inline)) ATTR void NAME##_impl(SCAN_ARGS, const int W, const int PQ, \
                                                                   const int PD, const int FLOOR,     \
                                                                   const int C421) {                  \
    SCAN_BODY(SCALAR_COST(__builtin_popcountll, W, PQ, PD, 0),                                        \
              SCALAR_BLOCK(__builtin_popcountll, W, PQ, PD))                                          \
}                                                                                                     \
static ATTR void NAME(SCAN_ARGS) {                                                                    \
    int F = heaps == NULL, H = J->pq == 1 && J->pd == 1;                                              \
    if (F && H && J->W == 16) NAME##_impl(SCAN_PASS, 16, 1, 1, 1, 0);                                 \
    else if (F && H && J->W == 32) NAME##_impl(SCAN_PASS, 32, 1, 1, 1, 0);                            \
    else if (F) NAME##_impl(SCAN_PASS, J->W, J->pq, J->pd, 1, 0);                                     \
    else if (H && J->W == 16) NAME##_impl(SCAN_PASS, 16, 1, 1, 0, 0);                                 \
    else if (H && J->W == 32) NAME##_impl(SCAN_PASS, 32, 1, 1, 0, 0);                                 \
    else if (coef_is_421(J) && J->W == 8) NAME##_impl(SCAN_PASS, 8, 2, 2, 0, 1);                      \
    else if (J->pq == 2 && J->pd == 2 && J->W == 8) NAME##_impl(SCAN_PASS, 8, 2, 2, 0, 0);            \
    else NAME##_impl(SCAN_PASS, J->W, J->pq, J->pd, 0, 0);                                            \
}

DEFINE_SCALAR_SCAN(scan_generic, )

#ifdef BITLENS_X86
DEFINE_SCALAR_SCAN(scan_popcnt, __attribute__((target("popcnt"))))

/* AVX2: words [0, VW) of each plane pair by nibble lookup (bytes summed, one SAD per plane pair) into `acc`
 * (four 64-bit lanes, plane pairs weighted), words [VW, W) by scalar popcnt, so the vector and the integer
 * units can work on the same pair at once. */
#define AVX2_ACC(W, PQ, PD, VW)                                                                       \
    __m256i acc = _mm256_setzero_si256();                                                             \
    if (C421 && (VW) <= 8) {                                                                          \
        /* Horner's rule on the byte counts, one SAD: a byte holds at most ((16·2 + 16 + 16)·2 + 16) */ \
        __m256i bytes = _mm256_setzero_si256();                                                       \
        for (int i = 0; i < 2; i++)                                                                   \
            for (int j = 0; j < 2; j++) {                                                             \
                const uint64_t *a = qrow + i * J->qs, *b = drow + j * J->ds;                          \
                if (j == 1) bytes = _mm256_add_epi8(bytes, bytes);                                    \
                for (int w = 0; w < (VW); w += 4) {                                                   \
                    __m256i x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(a + w)),        \
                                                 _mm256_loadu_si256((const __m256i *)(b + w)));       \
                    __m256i lo = _mm256_and_si256(x, low4);                                           \
                    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low4);                     \
                    bytes = _mm256_add_epi8(bytes, _mm256_shuffle_epi8(lut, lo));                     \
                    bytes = _mm256_add_epi8(bytes, _mm256_shuffle_epi8(lut, hi));                     \
                }                                                                                     \
            }                                                                                         \
        acc = _mm256_sad_epu8(bytes, _mm256_setzero_si256());                                         \
    } else                                                                                            \
    for (int i = 0; i < (PQ); i++) {                                                                  \
        const uint64_t *a = qrow + i * J->qs;                                                         \
        for (int j = 0; j < (PD); j++) {                                                              \
            const uint64_t *b = drow + j * J->ds;                                                     \
            __m256i sum = _mm256_setzero_si256();                                                     \
            for (int w0 = 0; w0 < (VW); w0 += 4 * 30) {                                              \
                int w1 = w0 + 4 * 30 < (VW) ? w0 + 4 * 30 : (VW);                                     \
                __m256i bytes = _mm256_setzero_si256();                                               \
                for (int w = w0; w < w1; w += 4) {                                                    \
                    __m256i x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(a + w)),        \
                                                 _mm256_loadu_si256((const __m256i *)(b + w)));       \
                    __m256i lo = _mm256_and_si256(x, low4);                                           \
                    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), low4);                     \
                    bytes = _mm256_add_epi8(bytes, _mm256_shuffle_epi8(lut, lo));                     \
                    bytes = _mm256_add_epi8(bytes, _mm256_shuffle_epi8(lut, hi));                     \
                }                                                                                     \
                sum = _mm256_add_epi64(sum, _mm256_sad_epu8(bytes, _mm256_setzero_si256()));          \
            }                                                                                         \
            if ((PQ) * (PD) == 1) acc = sum;                                                          \
            else if (C421) acc = i + j == 0 ? sum : i + j == 2 || j == 1 ?                            \
                _mm256_add_epi64(_mm256_add_epi64(acc, acc), sum) : _mm256_add_epi64(acc, sum);       \
            else acc = _mm256_add_epi64(acc, _mm256_mul_epu32(sum,                                    \
                                               _mm256_set1_epi64x(coef[i * (PD) + j])));              \
        }                                                                                             \
    }

#define AVX2_COST(W, PQ, PD, VW)                                                                      \
    {                                                                                                 \
        AVX2_ACC(W, PQ, PD, VW)                                                                       \
        __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));    \
        cost = _mm_cvtsi128_si64(s2) + _mm_extract_epi64(s2, 1);                                      \
        if ((PQ) * (PD) == 1) cost *= coef[0];                                                        \
    }                                                                                                 \
    if ((VW) < (W)) { SCALAR_COST(__builtin_popcountll, W, PQ, PD, VW) }

/* lanes of A, B, C, D -> [sum A, sum B, sum C, sum D] */
#define AVX2_SUM4(A, B, C, D, OUT)                                                                    \
    {                                                                                                 \
        __m256i ab = _mm256_add_epi64(_mm256_unpacklo_epi64(A, B), _mm256_unpackhi_epi64(A, B));      \
        __m256i cd = _mm256_add_epi64(_mm256_unpacklo_epi64(C, D), _mm256_unpackhi_epi64(C, D));      \
        OUT = _mm256_add_epi64(_mm256_permute2x128_si256(ab, cd, 0x20),                               \
                               _mm256_permute2x128_si256(ab, cd, 0x31));                              \
    }

#define AVX2_BLOCK(W, PQ, PD, VW)                                                                     \
    {                                                                                                 \
        __m256i accs[QBLOCK];                                                                         \
        for (int u = 0; u < QBLOCK; u++) {                                                            \
            const uint64_t *qrow = J->q + (qb + u) * (W);                                             \
            AVX2_ACC(W, PQ, PD, VW)                                                                   \
            accs[u] = acc;                                                                            \
        }                                                                                             \
        __m256i s0, s1;                                                                               \
        AVX2_SUM4(accs[0], accs[1], accs[2], accs[3], s0)                                             \
        AVX2_SUM4(accs[4], accs[5], accs[6], accs[7], s1)                                             \
        _mm256_storeu_si256((__m256i *)bcost, s0);                                                    \
        _mm256_storeu_si256((__m256i *)(bcost + 4), s1);                                              \
        if ((PQ) * (PD) == 1 && coef[0] != 1)                                                         \
            for (int u = 0; u < QBLOCK; u++) bcost[u] *= coef[0];                                     \
        if ((VW) < (W))                                                                               \
            for (int u = 0; u < QBLOCK; u++) {                                                        \
                const uint64_t *qrow = J->q + (qb + u) * (W);                                         \
                int64_t cost = 0;                                                                     \
                SCALAR_COST(__builtin_popcountll, W, PQ, PD, VW)                                      \
                bcost[u] += cost;                                                                     \
            }                                                                                         \
    }

static inline __attribute__((always_inline, target("avx2,popcnt")))
void scan_avx2_impl(SCAN_ARGS, const int W, const int PQ, const int PD, const int VW, const int FLOOR,
                    const int C421) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    SCAN_BODY(AVX2_COST(W, PQ, PD, VW), AVX2_BLOCK(W, PQ, PD, VW))
}

static int g_vector_words = -1;  /* tuning: words per plane done by AVX2 (-1: the built-in split) */

static __attribute__((target("avx2,popcnt"))) void scan_avx2(SCAN_ARGS) {
    int vw = g_vector_words;
    int F = heaps == NULL;
    /* measured splits (AMD EPYC, AVX2): 12 of 16 words in vectors for 1,024-bit Hamming, all 8 for 512 x 2 SDC;
     * 2,048-bit Hamming (the popcount work of 512 x 2 SDC, which the benchmarks compare it with) keeps the
     * 1,024-bit proportion, 24 of 32 */
    if (J->pq == 1 && J->pd == 1 && J->W == 16 && (vw < 0 || vw == 12)) {
        if (F) scan_avx2_impl(SCAN_PASS, 16, 1, 1, 12, 1, 0);
        else scan_avx2_impl(SCAN_PASS, 16, 1, 1, 12, 0, 0);
    }
    else if (J->pq == 1 && J->pd == 1 && J->W == 32 && (vw < 0 || vw == 24)) {
        if (F) scan_avx2_impl(SCAN_PASS, 32, 1, 1, 24, 1, 0);
        else scan_avx2_impl(SCAN_PASS, 32, 1, 1, 24, 0, 0);
    }
    else if (!F && J->pq == 1 && J->pd == 1 && J->W == 16 && vw == 8) scan_avx2_impl(SCAN_PASS, 16, 1, 1, 8, 0, 0);
    else if (!F && J->pq == 1 && J->pd == 1 && J->W == 16 && vw == 16) scan_avx2_impl(SCAN_PASS, 16, 1, 1, 16, 0, 0);
    else if (!F && J->pq == 2 && J->pd == 2 && J->W == 8 && (vw < 0 || vw == 8)) {
        if (coef_is_421(J)) scan_avx2_impl(SCAN_PASS, 8, 2, 2, 8, 0, 1);
        else scan_avx2_impl(SCAN_PASS, 8, 2, 2, 8, 0, 0);
    }
    else if (!F && J->pq == 2 && J->pd == 2 && J->W == 8 && vw == 4) scan_avx2_impl(SCAN_PASS, 8, 2, 2, 4, 0, 0);
    else {
        if (vw < 0 || vw > J->W || vw % 4) vw = J->W - J->W % 4;
        if (F) scan_avx2_impl(SCAN_PASS, J->W, J->pq, J->pd, vw, 1, 0);
        else scan_avx2_impl(SCAN_PASS, J->W, J->pq, J->pd, vw, 0, 0);
    }
}

/* AVX-512 VPOPCNTDQ: eight words per instruction, the last partial group by a masked (zeroing, non-faulting)
 * load; plane pairs weighted in 64-bit lanes as in the AVX2 cost.  QLOAD(U, I, W0) is query U's plane I at word
 * W0: in a full block of small queries (at most AVX512_QREGS vectors each) they were loaded into registers once
 * per block (BLOCK_PREP), so a row costs only its own loads. */
#define AVX512_TARGET "avx512f,avx512vpopcntdq,popcnt"
#define AVX512_QREGS 2
#define AVX512_NV(W) (((W) + 7) / 8)
#define AVX512_MASK(W, w) ((W) - (w) >= 8 ? (__mmask8)0xff : (__mmask8)((1u << ((W) - (w))) - 1u))
#define AVX512_ACC(W, PQ, PD, QLOAD)                                                                  \
    __m512i acc = _mm512_setzero_si512();                                                             \
    for (int i = 0; i < (PQ); i++) {                                                                  \
        for (int j = 0; j < (PD); j++) {                                                              \
            const uint64_t *b = drow + j * J->ds;                                                     \
            __m512i sum = _mm512_setzero_si512();                                                     \
            for (int w = 0; w < (W); w += 8) {                                                        \
                __m512i x = _mm512_xor_si512(QLOAD(u, i, w),                                          \
                                             _mm512_maskz_loadu_epi64(AVX512_MASK(W, w), b + w));     \
                sum = _mm512_add_epi64(sum, _mm512_popcnt_epi64(x));                                  \
            }                                                                                         \
            if ((PQ) * (PD) == 1) acc = sum;                                                          \
            else if (C421) acc = i + j == 0 ? sum : i + j == 2 || j == 1 ?                            \
                _mm512_add_epi64(_mm512_add_epi64(acc, acc), sum) : _mm512_add_epi64(acc, sum);       \
            else acc = _mm512_add_epi64(acc, _mm512_mul_epu32(sum,                                    \
                                               _mm512_set1_epi64(coef[i * (PD) + j])));               \
        }                                                                                             \
    }

#define AVX512_QMEM(U, I, W0) _mm512_maskz_loadu_epi64(AVX512_MASK(W, W0), qrow + (I) * J->qs + (W0))
#define AVX512_QREG(U, I, W0)                                                                         \
    (AVX512_QUERY_IN_REGS ? qv[U][(I) * AVX512_NV(W) + (W0) / 8] : AVX512_QMEM(U, I, W0))
#define AVX512_QUERY_IN_REGS ((PQ) * AVX512_NV(W) <= AVX512_QREGS)

#define AVX512_COST(W, PQ, PD)                                                                        \
    {                                                                                                 \
        const int u = 0;                                                                              \
        (void)u;                                                                                      \
        AVX512_ACC(W, PQ, PD, AVX512_QMEM)                                                            \
        cost = _mm512_reduce_add_epi64(acc);                                                          \
        if ((PQ) * (PD) == 1) cost *= coef[0];                                                        \
    }

/* lanes of A, B -> per 128-bit chunk k: (A[2k] + A[2k+1], B[2k] + B[2k+1]) */
#define AVX512_PAIRS(A, B) _mm512_add_epi64(_mm512_unpacklo_epi64(A, B), _mm512_unpackhi_epi64(A, B))
/* chunks (x0, x1, x2, x3) of X and Y -> (x0 + x1, x2 + x3, y0 + y1, y2 + y3): 0x88 picks chunks 0, 2 of each,
 * 0xDD chunks 1, 3 */
#define AVX512_HALVE(X, Y) _mm512_add_epi64(_mm512_shuffle_i64x2(X, Y, 0x88), _mm512_shuffle_i64x2(X, Y, 0xDD))

/* the QBLOCK costs of row r, one per lane (query qb + u in lane u) */
#define AVX512_BLOCK(W, PQ, PD)                                                                       \
    __m512i vcost;                                                                                    \
    {                                                                                                 \
        __m512i accs[QBLOCK];                                                                         \
        for (int u = 0; u < QBLOCK; u++) {                                                            \
            const uint64_t *qrow = J->q + (qb + u) * (W);                                             \
            (void)qrow;                                                                               \
            AVX512_ACC(W, PQ, PD, AVX512_QREG)                                                        \
            accs[u] = acc;                                                                            \
        }                                                                                             \
        __m512i t0 = AVX512_PAIRS(accs[0], accs[1]), t1 = AVX512_PAIRS(accs[2], accs[3]);             \
        __m512i t2 = AVX512_PAIRS(accs[4], accs[5]), t3 = AVX512_PAIRS(accs[6], accs[7]);             \
        __m512i w0 = AVX512_HALVE(t0, t1), w1 = AVX512_HALVE(t2, t3);                                 \
        vcost = AVX512_HALVE(w0, w1);                                                                 \
        if ((PQ) * (PD) == 1 && coef[0] != 1) vcost = _mm512_mullox_epi64(vcost, _mm512_set1_epi64(coef[0])); \
    }

/* The selection behind one vector comparison per row: the QBLOCK costs against the QBLOCK limits; only a lane
 * that passes goes to the scalar admission (rare once the lists are full).  The floor adds the costs in a vector
 * and sums it once at the end. */
#undef SCAN_DECL
#undef SCAN_END
#undef BLOCK_PREP
#undef BLOCK_SELECT
#define SCAN_DECL __m512i vsum = _mm512_setzero_si512();
#define SCAN_END if (FLOOR) sum_all += _mm512_reduce_add_epi64(vsum);
#define BLOCK_PREP                                                                                    \
    __m512i qv[QBLOCK][AVX512_QREGS];                                                                 \
    if (AVX512_QUERY_IN_REGS)                                                                         \
        for (int u = 0; u < QBLOCK; u++)                                                              \
            for (int i = 0; i < (PQ); i++)                                                            \
                for (int w = 0; w < (W); w += 8)                                                      \
                    qv[u][i * AVX512_NV(W) + w / 8] = _mm512_maskz_loadu_epi64(                       \
                        AVX512_MASK(W, w), J->q + (qb + u) * (W) + i * J->qs + w);
#define BLOCK_SELECT                                                                                  \
    if (FLOOR) vsum = _mm512_add_epi64(vsum, vcost);                                                  \
    else {                                                                                            \
        __mmask8 pass = _mm512_cmple_epi64_mask(vcost, _mm512_loadu_si512((const void *)lim));        \
        if (pass) {                                                                                   \
            _mm512_storeu_si512((void *)bcost, vcost);                                                \
            while (pass) {                                                                            \
                int u = __builtin_ctz(pass);                                                          \
                pass &= pass - 1;                                                                     \
                lim[u] = admit(J, &heaps[qb + u - q0], bcost[u], r, nmin, nmax, lim[u]);             \
            }                                                                                         \
        }                                                                                             \
    }

static inline __attribute__((always_inline, target(AVX512_TARGET)))
void scan_avx512_impl(SCAN_ARGS, const int W, const int PQ, const int PD, const int FLOOR, const int C421) {
    SCAN_BODY(AVX512_COST(W, PQ, PD), AVX512_BLOCK(W, PQ, PD))
}

static __attribute__((target(AVX512_TARGET))) void scan_avx512(SCAN_ARGS) {
    int F = heaps == NULL, H = J->pq == 1 && J->pd == 1;
    if (F && H && J->W == 16) scan_avx512_impl(SCAN_PASS, 16, 1, 1, 1, 0);
    else if (F && H && J->W == 32) scan_avx512_impl(SCAN_PASS, 32, 1, 1, 1, 0);
    else if (F) scan_avx512_impl(SCAN_PASS, J->W, J->pq, J->pd, 1, 0);
    else if (H && J->W == 16) scan_avx512_impl(SCAN_PASS, 16, 1, 1, 0, 0);
    else if (H && J->W == 32) scan_avx512_impl(SCAN_PASS, 32, 1, 1, 0, 0);
    else if (coef_is_421(J) && J->W == 8) scan_avx512_impl(SCAN_PASS, 8, 2, 2, 0, 1);
    else if (J->pq == 2 && J->pd == 2 && J->W == 8) scan_avx512_impl(SCAN_PASS, 8, 2, 2, 0, 0);
    else scan_avx512_impl(SCAN_PASS, J->W, J->pq, J->pd, 0, 0);
}
#endif

/* ---- driver ------------------------------------------------------------------------------------------- */

typedef void (*scan_fn)(SCAN_ARGS);

enum { K_GENERIC, K_POPCNT, K_AVX2, K_AVX512, K_COUNT };
static const char *const KERNEL_NAMES[K_COUNT] = {"generic", "popcnt", "avx2", "avx512"};
/* what each kernel needs of the CPU, for the error that names a missing one */
static const char *const KERNEL_NEEDS[K_COUNT] = {
    "nothing", "the popcnt instruction", "AVX2 and popcnt", "AVX-512 F and VPOPCNTDQ (avx512f, avx512_vpopcntdq)"};


/* the best kernel this CPU runs (every lower one runs too) */
static int best_kernel(void) {
    int best = K_GENERIC;
#ifdef BITLENS_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("popcnt")) best = K_POPCNT;
    if (best == K_POPCNT && __builtin_cpu_supports("avx2")) best = K_AVX2;
    /* libgcc's check includes the OS saving the AVX-512 state (XCR0) */
    if (best == K_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq"))
        best = K_AVX512;
#endif
    return best;
}

#include "kernels.h"

static scan_fn kernel_fn(int c) {
#ifdef BITLENS_X86
    if (c == K_AVX512) return scan_avx512;
    if (c == K_AVX2) return scan_avx2;
    if (c == K_POPCNT) return scan_popcnt;
#endif
    (void)c;
    return scan_generic;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

typedef struct { double key; int64_t row; } frec_t;

static int cmp_frec(const void *a, const void *b) {
    const frec_t *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

/* Returns 0 on success, -1 on allocation failure. Outputs: out_val (int64 costs or double keys), out_idx. */
static int run_topk(const job_t *J, int nthreads, void *out_val, int64_t *out_idx) {
    int64_t nq = J->nq, n = J->n, k = J->k;
    scan_fn scan = kernel_fn(pick_kernel());
    if (nthreads < 1) nthreads = 1;
    /* few queries: split the database instead, and merge the per-range results */
    int nsplit = nq >= 2 * (int64_t)nthreads * QBLOCK ? 1 : nthreads;
    if ((int64_t)nsplit > n) nsplit = (int)(n > 0 ? n : 1);
    int64_t slots = (int64_t)nsplit * nq;
    heap_t *heaps = calloc((size_t)slots, sizeof(heap_t));
    uint64_t *ik = NULL; double *fk = NULL; int64_t *fr = NULL;
    if (!heaps) return -1;
    if (J->mode == 0) ik = malloc((size_t)(slots * k) * sizeof(uint64_t));
    else { fk = malloc((size_t)(slots * k) * sizeof(double)); fr = malloc((size_t)(slots * k) * sizeof(int64_t)); }
    if ((J->mode == 0 && !ik) || (J->mode != 0 && (!fk || !fr))) { free(heaps); free(ik); free(fk); free(fr); return -1; }
    for (int64_t s = 0; s < slots; s++) {
        if (ik) heaps[s].ikey = ik + s * k;
        else { heaps[s].fkey = fk + s * k; heaps[s].frow = fr + s * k; }
    }
    /* Many query tasks, taken dynamically: a thread that loses its core on a shared machine delays only its
     * current task, not half of the work.  Each task still reuses every database block across its queries. */
    int64_t ntasks = nsplit;
    if (nsplit == 1) {
        ntasks = (nq + TASK_QUERIES - 1) / TASK_QUERIES;
        if (ntasks < nthreads) ntasks = nthreads;
        if (ntasks > nq) ntasks = nq > 0 ? nq : 1;
    }
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int64_t t = 0; t < ntasks; t++) {
        if (nsplit == 1) {
            int64_t q0 = nq * t / ntasks, q1 = nq * (t + 1) / ntasks;
            if (q1 > q0) scan(J, q0, q1, 0, n, heaps + q0, NULL);
        } else {
            int64_t r0 = n * t / ntasks, r1 = n * (t + 1) / ntasks;
            if (r1 > r0) scan(J, 0, nq, r0, r1, heaps + (int64_t)t * nq, NULL);
        }
    }
    /* merge the ranges and sort each query's list best first */
    int fail = 0;
    #pragma omp parallel num_threads(nthreads)
    {
        uint64_t *bi = NULL; frec_t *bf = NULL;
        if (J->mode == 0) bi = malloc((size_t)(nsplit * k) * sizeof(uint64_t));
        else bf = malloc((size_t)(nsplit * k) * sizeof(frec_t));
        if (!bi && !bf) {
            #pragma omp atomic write
            fail = 1;
        } else {
            #pragma omp for schedule(static)
            for (int64_t qi = 0; qi < nq; qi++) {
                int64_t m = 0;
                for (int s = 0; s < nsplit; s++) {
                    heap_t *H = &heaps[(int64_t)s * nq + qi];
                    for (int64_t c = 0; c < H->cnt; c++) {
                        if (bi) bi[m++] = H->ikey[c];
                        else { bf[m].key = H->fkey[c]; bf[m].row = H->frow[c]; m++; }
                    }
                }
                if (bi) {
                    qsort(bi, (size_t)m, sizeof(uint64_t), cmp_u64);
                    for (int64_t c = 0; c < k; c++) {
                        ((int64_t *)out_val)[qi * k + c] = c < m ? (int64_t)(bi[c] >> 32) : -1;
                        out_idx[qi * k + c] = c < m ? (int64_t)(bi[c] & 0xffffffffu) : -1;
                    }
                } else {
                    qsort(bf, (size_t)m, sizeof(frec_t), cmp_frec);
                    for (int64_t c = 0; c < k; c++) {
                        ((double *)out_val)[qi * k + c] = c < m ? bf[c].key : NAN;
                        out_idx[qi * k + c] = c < m ? bf[c].row : -1;
                    }
                }
            }
        }
        free(bi); free(bf);
    }
    free(heaps); free(ik); free(fk); free(fr);
    return fail ? -1 : 0;
}

/* The floor: every pair's XOR + popcount cost with no selection, by the same kernel, blocking and threads as
 * the search.  Returns the sum of all costs (so no pair can be optimised away; the tests check it). */
static int64_t run_floor(const job_t *J, int nthreads) {
    scan_fn scan = kernel_fn(pick_kernel());
    int64_t nq = J->nq, total = 0;
    if (nthreads < 1) nthreads = 1;
    int64_t ntasks = (nq + TASK_QUERIES - 1) / TASK_QUERIES;
    if (ntasks < nthreads) ntasks = nthreads;
    if (ntasks > nq) ntasks = nq > 0 ? nq : 1;
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) reduction(+ : total)
    for (int64_t t = 0; t < ntasks; t++) {
        int64_t q0 = nq * t / ntasks, q1 = nq * (t + 1) / ntasks, part = 0;
        if (q1 > q0) scan(J, q0, q1, 0, J->n, NULL, &part);
        total += part;
    }
    return total;
}

/* ---- Python binding ----------------------------------------------------------------------------------- */

static PyObject *py_topk(PyObject *self, PyObject *args) {
    Py_buffer qb, db, cb, nb, ov, oi;
    Py_ssize_t qs, ds, nq, n, k, base;
    int pq, pd, W, mode, nthreads;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*niy*ninniy*niny*iw*w*", &qb, &qs, &pq, &db, &ds, &pd, &nq, &n, &W, &cb, &k,
                          &mode, &base, &nb, &nthreads, &ov, &oi))
        return NULL;
    PyObject *ret = NULL;
    if (k < 1 || n < 1 || nq < 0 || W < 1 || pq < 1 || pd < 1 || n >= ((Py_ssize_t)1 << 32)) {
        PyErr_SetString(PyExc_ValueError, "native topk: need k >= 1, 1 <= n < 2**32, W >= 1, planes >= 1");
    } else if (qb.len < (Py_ssize_t)(8 * ((pq - 1) * qs + nq * W)) || db.len < (Py_ssize_t)(8 * ((pd - 1) * ds + n * W))
               || cb.len < (Py_ssize_t)(8 * pq * pd) || ov.len < 8 * nq * k || oi.len < 8 * nq * k
               || (mode == 1 && nb.len < 8 * n)) {
        PyErr_SetString(PyExc_ValueError, "native topk: a buffer is smaller than its stated shape");
    } else {
        job_t J = {qb.buf, db.buf, qs, ds, pq, pd, W, cb.buf, nq, n, k, mode, base, nb.buf};
        int rc;
#ifdef _OPENMP
        if (nthreads < 1) nthreads = omp_get_max_threads();
#else
        nthreads = 1;
#endif
        Py_BEGIN_ALLOW_THREADS
        rc = run_topk(&J, nthreads, ov.buf, (int64_t *)oi.buf);
        Py_END_ALLOW_THREADS
        if (rc) PyErr_NoMemory();
        else ret = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&qb); PyBuffer_Release(&db); PyBuffer_Release(&cb); PyBuffer_Release(&nb);
    PyBuffer_Release(&ov); PyBuffer_Release(&oi);
    return ret;
}

static PyObject *py_floor(PyObject *self, PyObject *args) {
    Py_buffer qb, db;
    Py_ssize_t nq, n;
    int W, nthreads;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*nnii", &qb, &db, &nq, &n, &W, &nthreads)) return NULL;
    PyObject *ret = NULL;
    if (n < 1 || nq < 0 || W < 1) {
        PyErr_SetString(PyExc_ValueError, "native floor: need n >= 1, nq >= 0, W >= 1");
    } else if (qb.len < (Py_ssize_t)(8 * nq * W) || db.len < (Py_ssize_t)(8 * n * W)) {
        PyErr_SetString(PyExc_ValueError, "native floor: a buffer is smaller than its stated shape");
    } else {
        static const int64_t one = 1;
        job_t J = {qb.buf, db.buf, nq * W, n * W, 1, 1, W, &one, nq, n, 1, 0, 0, NULL};
        int64_t total;
#ifdef _OPENMP
        if (nthreads < 1) nthreads = omp_get_max_threads();
#else
        nthreads = 1;
#endif
        Py_BEGIN_ALLOW_THREADS
        total = run_floor(&J, nthreads);
        Py_END_ALLOW_THREADS
        ret = PyLong_FromLongLong(total);
    }
    PyBuffer_Release(&qb); PyBuffer_Release(&db);
    return ret;
}

static PyObject *py_set_kernel(PyObject *self, PyObject *args) {
    PyObject *arg;
    int c;
    (void)self;
    if (!PyArg_ParseTuple(args, "O", &arg)) return NULL;
    if (PyUnicode_Check(arg)) {
        const char *name = PyUnicode_AsUTF8(arg);
        if (!name || (c = kernel_index(name)) < -1) return NULL;
    } else {
        long v = PyLong_AsLong(arg);
        if (v == -1 && PyErr_Occurred()) return NULL;
        if (v < -1 || v >= K_COUNT) {
            PyErr_Format(PyExc_ValueError, "kernel number %ld out of range (-1 auto, 0..%d)", v, K_COUNT - 1);
            return NULL;
        }
        c = (int)v;
    }
    return choose_kernel(c);
}

static PyObject *py_set_vector_words(PyObject *self, PyObject *args) {
    int c;
    (void)self;
    if (!PyArg_ParseTuple(args, "i", &c)) return NULL;
#ifdef BITLENS_X86
    g_vector_words = c;
#endif
    Py_RETURN_NONE;
}

static PyObject *py_max_threads(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
#ifdef _OPENMP
    return PyLong_FromLong(omp_get_max_threads());
#else
    return PyLong_FromLong(1);
#endif
}

static PyMethodDef methods[] = {
    {"topk", py_topk, METH_VARARGS,
     "topk(q, q_plane_stride, pq, d, d_plane_stride, pd, nq, n, W, coef, k, mode, base, dnorm, nthreads, "
     "out_val, out_idx): exact top-k, see bitlens.search"},
    {"floor", py_floor, METH_VARARGS,
     "floor(q, d, nq, n, W, nthreads) -> sum of popcount(q XOR d) over every pair, no selection (the speed floor)"},
    {"set_kernel", py_set_kernel, METH_VARARGS,
     "set_kernel('auto' | 'generic' | 'popcnt' | 'avx2' | 'avx512', or -1..3): force a kernel; one the CPU lacks "
     "raises RuntimeError"},
    {"set_vector_words", py_set_vector_words, METH_VARARGS, "tuning: AVX2 words per plane row (-1 default)"},
    KERNEL_METHODS,
    {"max_threads", py_max_threads, METH_NOARGS, "OpenMP threads used by default"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moddef = {PyModuleDef_HEAD_INIT, "_search", "bitlens native search kernels", -1, methods,
                                   NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__search(void) {
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    PyObject *names = Py_BuildValue("(ssss)", KERNEL_NAMES[0], KERNEL_NAMES[1], KERNEL_NAMES[2], KERNEL_NAMES[3]);
    if (!names || PyModule_AddObject(m, "KERNELS", names) < 0) { Py_XDECREF(names); Py_DECREF(m); return NULL; }
    return m;
}
