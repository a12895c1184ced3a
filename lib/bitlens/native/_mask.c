/* Thresholded bilinear masks for Network Dissection, without building the masks.
 *
 * For each (h, w) float32 map and its threshold, the positive pixels of
 * bilinear_resize(map, H×W) > threshold (align_corners = False, edges clamped: the
 * formula of torch's upsample_bilinear2d and of PIL's pixel-centre bilinear), as
 * (map index, pixel index) pairs in map-major, row-major order.
 *
 * The width is resized first (two taps per output column), then each output row mixes
 * two resized source rows. A bilinear value never exceeds the larger of its two
 * sources, so an output row is computed only where one of its source rows has a value
 * above the threshold, and a pixel counts only where one of its two sources does (the
 * rule stays explicit, so rounding can never add a pixel).
 * Products and sums are float32 in the order of the numpy fallback in bitlens.dissect;
 * the build passes -ffp-contract=off, so no kernel fuses them into an FMA and every
 * kernel gives the same bits.
 *
 * Kernels: one C body compiled three times (portable, AVX2, AVX-512 F) with target
 * attributes, chosen at run time like the search kernels; the vector kernels differ only
 * in how the compiler vectorises the two resize loops. Maps are split into chunks over
 * OpenMP threads; each chunk collects its pixels and the chunks are joined in map order.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "buffers.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#define BITLENS_X86 1
#endif

typedef struct {
    const float *maps, *thr, *cw0, *cw1, *rw0, *rw1;
    const int64_t *c0, *c1, *r0, *r1;
    int64_t h, w, H, W;
} mjob_t;

/* the pixels one chunk of maps found; grows as needed */
typedef struct {
    int64_t *m, *p;
    int64_t len, cap;
    int fail;
} obuf_t;

static void obuf_push(obuf_t *o, int64_t m, int64_t p) {
    if (o->len == o->cap) {
        int64_t cap = o->cap ? 2 * o->cap : 4096;
        int64_t *nm = realloc(o->m, (size_t)cap * sizeof(int64_t));
        if (nm) o->m = nm;
        int64_t *np_ = nm ? realloc(o->p, (size_t)cap * sizeof(int64_t)) : NULL;
        if (np_) o->p = np_;
        if (!nm || !np_) { o->fail = 1; return; }
        o->cap = cap;
    }
    o->m[o->len] = m;
    o->p[o->len] = p;
    o->len++;
}

/* maps [m0, m1) into o; Y (h·W), hot (h) and V (W) are the caller's scratch */
#define MASK_BODY                                                                                   \
    const int64_t h = J->h, w = J->w, H = J->H, W = J->W;                                           \
    const int64_t *restrict c0 = J->c0, *restrict c1 = J->c1;                                       \
    const float *restrict cw0 = J->cw0, *restrict cw1 = J->cw1;                                     \
    for (int64_t m = m0; m < m1; m++) {                                                             \
        const float *restrict x = J->maps + m * h * w;                                              \
        const float t = J->thr[m];                                                                  \
        int any = 0;                                                                                \
        for (int64_t i = 0; i < h; i++) {                                                           \
            const float *restrict row = x + i * w;                                                  \
            float *restrict y = Y + i * W;                                                          \
            for (int64_t j = 0; j < W; j++) y[j] = row[c0[j]] * cw0[j] + row[c1[j]] * cw1[j];       \
            unsigned char hi = 0;                                                                   \
            for (int64_t j = 0; j < W; j++) hi |= y[j] > t;                                         \
            hot[i] = hi;                                                                            \
            any |= hi;                                                                              \
        }                                                                                           \
        if (!any) continue;                                                                         \
        for (int64_t r = 0; r < H; r++) {                                                           \
            const int64_t a = J->r0[r], b = J->r1[r];                                               \
            if (!hot[a] && !hot[b]) continue;                                                       \
            const float *restrict ya = Y + a * W, *restrict yb = Y + b * W;                         \
            const float wa = J->rw0[r], wb = J->rw1[r];                                             \
            for (int64_t j = 0; j < W; j++) V[j] = ya[j] * wa + yb[j] * wb;                         \
            for (int64_t j = 0; j < W; j++)                                                         \
                if ((ya[j] > t || yb[j] > t) && V[j] > t) obuf_push(o, m, r * W + j);               \
        }                                                                                           \
    }

#define MASK_ARGS const mjob_t *J, int64_t m0, int64_t m1, float *restrict Y, unsigned char *restrict hot, \
                  float *restrict V, obuf_t *o

static void maps_generic(MASK_ARGS) { MASK_BODY }
#ifdef BITLENS_X86
static __attribute__((target("avx2"))) void maps_avx2(MASK_ARGS) { MASK_BODY }
static __attribute__((target("avx512f"))) void maps_avx512(MASK_ARGS) { MASK_BODY }
#endif

typedef void (*maps_fn)(MASK_ARGS);

enum { K_GENERIC, K_AVX2, K_AVX512, K_COUNT };
static const char *const KERNEL_NAMES[K_COUNT] = {"generic", "avx2", "avx512"};
static const char *const KERNEL_NEEDS[K_COUNT] = {"nothing", "AVX2", "AVX-512 F (avx512f)"};

static int best_kernel(void) {
    int best = K_GENERIC;
#ifdef BITLENS_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) best = K_AVX2;
    if (best == K_AVX2 && __builtin_cpu_supports("avx512f")) best = K_AVX512;
#endif
    return best;
}

#include "kernels.h"

static maps_fn kernel_fn(int c) {
#ifdef BITLENS_X86
    if (c == K_AVX512) return maps_avx512;
    if (c == K_AVX2) return maps_avx2;
#endif
    (void)c;
    return maps_generic;
}

/* Runs every map; fills out_m/out_p up to cap in map order and returns the total count, or -1 when out of
 * memory. */
static int64_t run_masks(const mjob_t *J, int64_t n, int nthreads, int64_t *out_m, int64_t *out_p, int64_t cap) {
    maps_fn fn = kernel_fn(pick_kernel());
    if (nthreads < 1) nthreads = 1;
    int64_t nchunks = nthreads == 1 ? 1 : (int64_t)nthreads * 8;
    if (nchunks > n) nchunks = n > 0 ? n : 1;
    obuf_t *bufs = calloc((size_t)nchunks, sizeof(obuf_t));
    if (!bufs) return -1;
    int fail = 0;
    #pragma omp parallel num_threads(nthreads)
    {
        float *Y = malloc(sizeof(float) * (size_t)(J->h * J->W > 0 ? J->h * J->W : 1));
        float *V = malloc(sizeof(float) * (size_t)(J->W > 0 ? J->W : 1));
        unsigned char *hot = malloc((size_t)(J->h > 0 ? J->h : 1));
        if (!Y || !V || !hot) {
            #pragma omp atomic write
            fail = 1;
        }
        /* every thread reaches the loop (a worksharing construct), and skips its work after a failure */
        #pragma omp for schedule(dynamic, 1)
        for (int64_t c = 0; c < nchunks; c++) {
            if (Y && V && hot) fn(J, n * c / nchunks, n * (c + 1) / nchunks, Y, hot, V, &bufs[c]);
        }
        free(Y); free(V); free(hot);
    }
    int64_t total = 0;
    for (int64_t c = 0; c < nchunks; c++) {
        if (bufs[c].fail) fail = 1;
        for (int64_t i = 0; i < bufs[c].len && !fail; i++, total++)
            if (total < cap) { out_m[total] = bufs[c].m[i]; out_p[total] = bufs[c].p[i]; }
        free(bufs[c].m); free(bufs[c].p);
    }
    free(bufs);
    return fail ? -1 : total;
}

/* mask_pixels(maps f32 (n·h·w), thr f32 (n), n, h, w, c0 i64 (W), c1, cw0 f32 (W), cw1, r0 i64 (H), r1,
 *             rw0 f32 (H), rw1, out_map i64 (cap), out_pix i64 (cap)[, threads]) -> count
 * Writes at most cap pairs; the count returned is the total, so a caller whose buffers were too small
 * calls again with count-sized ones. threads: OpenMP threads (0 or absent: 1). */
static PyObject *mask_pixels(PyObject *self, PyObject *args)
{
    PyObject *o[14];
    Py_ssize_t n, h, w;
    int nthreads = 1;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOnnnOOOOOOOOOO|i", &o[0], &o[1], &n, &h, &w, &o[2], &o[3], &o[4], &o[5], &o[6],
                          &o[7], &o[8], &o[9], &o[10], &o[11], &nthreads))
        return NULL;
    static const char *names[12] = {"maps", "thr", "c0", "c1", "cw0", "cw1", "r0", "r1", "rw0", "rw1",
                                    "out_map", "out_pix"};
    static const Py_ssize_t sizes[12] = {4, 4, 8, 8, 4, 4, 8, 8, 4, 4, 8, 8};
    Py_buffer b[12];
    int got = 0;
    for (; got < 12; got++)
        if (get_buffer(o[got], &b[got], got >= 10, names[got], sizes[got]) < 0) break;
    PyObject *result = NULL;
    if (got < 12) goto done;
    Py_ssize_t W = b[2].len / 8, H = b[6].len / 8, cap = b[10].len / 8;
    if (n < 0 || h < 0 || w < 0 || b[0].len / 4 < n * h * w || b[1].len / 4 < n || b[3].len / 8 != W ||
        b[4].len / 4 != W || b[5].len / 4 != W || b[7].len / 8 != H || b[8].len / 4 != H || b[9].len / 4 != H ||
        b[11].len / 8 != cap) {
        PyErr_SetString(PyExc_ValueError, "mask_pixels: inconsistent buffer sizes");
        goto done;
    }
    /* every tap must index inside the map: a bad index would read outside the buffer */
    const int64_t *c0 = b[2].buf, *c1 = b[3].buf, *r0 = b[6].buf, *r1 = b[7].buf;
    for (Py_ssize_t j = 0; j < W; j++)
        if (c0[j] < 0 || c0[j] >= w || c1[j] < 0 || c1[j] >= w) {
            PyErr_SetString(PyExc_ValueError, "mask_pixels: a column tap lies outside the map width");
            goto done;
        }
    for (Py_ssize_t r = 0; r < H; r++)
        if (r0[r] < 0 || r0[r] >= h || r1[r] < 0 || r1[r] >= h) {
            PyErr_SetString(PyExc_ValueError, "mask_pixels: a row tap lies outside the map height");
            goto done;
        }
#ifndef _OPENMP
    nthreads = 1;
#endif
    mjob_t J = {b[0].buf, b[1].buf, b[4].buf, b[5].buf, b[8].buf, b[9].buf, c0, c1, r0, r1, h, w, H, W};
    int64_t count;
    Py_BEGIN_ALLOW_THREADS
    count = n > 0 ? run_masks(&J, n, nthreads, b[10].buf, b[11].buf, cap) : 0;
    Py_END_ALLOW_THREADS
    if (count < 0) PyErr_NoMemory();
    else result = PyLong_FromLongLong(count);
done:
    for (int i = 0; i < got; i++) PyBuffer_Release(&b[i]);
    return result;
}

static PyObject *py_set_kernel(PyObject *self, PyObject *args) {
    const char *name;
    (void)self;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    int c = kernel_index(name);
    return c < -1 ? NULL : choose_kernel(c);
}

static PyMethodDef methods[] = {
    {"mask_pixels", mask_pixels, METH_VARARGS,
     "mask_pixels(maps, thr, n, h, w, c0, c1, cw0, cw1, r0, r1, rw0, rw1, out_map, out_pix[, threads]) -> count"},
    {"set_kernel", py_set_kernel, METH_VARARGS,
     "set_kernel('auto' | 'generic' | 'avx2' | 'avx512'): force a kernel; one the CPU lacks raises RuntimeError"},
    KERNEL_METHODS,
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_mask",
                                    "Thresholded bilinear mask pixels for Network Dissection.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__mask(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    PyObject *names = Py_BuildValue("(sss)", KERNEL_NAMES[0], KERNEL_NAMES[1], KERNEL_NAMES[2]);
    if (!names || PyModule_AddObject(m, "KERNELS", names) < 0) { Py_XDECREF(names); Py_DECREF(m); return NULL; }
    return m;
}
