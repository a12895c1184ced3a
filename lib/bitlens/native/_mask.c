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
 * above the threshold, and in it only the columns where one of the two sources does.
 * Products and sums are float32 in the order of the numpy fallback in bitlens.dissect.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "buffers.h"
#include <stdint.h>
#include <stdlib.h>

/* mask_pixels(maps f32 (n·h·w), thr f32 (n), n, h, w, c0 i64 (W), c1, cw0 f32 (W), cw1, r0 i64 (H), r1,
 *             rw0 f32 (H), rw1, out_map i64 (cap), out_pix i64 (cap)) -> count
 * Writes at most cap pairs; the count returned is the total, so a caller whose buffers were too small
 * calls again with count-sized ones. */
static PyObject *mask_pixels(PyObject *self, PyObject *args)
{
    PyObject *o[14];
    Py_ssize_t n, h, w;
    if (!PyArg_ParseTuple(args, "OOnnnOOOOOOOOOO", &o[0], &o[1], &n, &h, &w, &o[2], &o[3], &o[4], &o[5], &o[6],
                          &o[7], &o[8], &o[9], &o[10], &o[11]))
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
    if (b[0].len / 4 < n * h * w || b[1].len / 4 < n || b[3].len / 8 != W || b[4].len / 4 != W ||
        b[5].len / 4 != W || b[7].len / 8 != H || b[8].len / 4 != H || b[9].len / 4 != H || b[11].len / 8 != cap) {
        PyErr_SetString(PyExc_ValueError, "mask_pixels: inconsistent buffer sizes");
        goto done;
    }
    const float *maps = b[0].buf, *thr = b[1].buf, *cw0 = b[4].buf, *cw1 = b[5].buf, *rw0 = b[8].buf,
                *rw1 = b[9].buf;
    const int64_t *c0 = b[2].buf, *c1 = b[3].buf, *r0 = b[6].buf, *r1 = b[7].buf;
    int64_t *out_m = b[10].buf, *out_p = b[11].buf;
    float *Y = malloc(sizeof(float) * (size_t)(h * W > 0 ? h * W : 1));
    unsigned char *hot = malloc((size_t)(h > 0 ? h : 1));
    if (!Y || !hot) {
        free(Y);
        free(hot);
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t count = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t m = 0; m < n; m++) {
        const float *x = maps + m * h * w;
        const float t = thr[m];
        int any = 0;
        for (Py_ssize_t i = 0; i < h; i++) {
            const float *row = x + i * w;
            float *y = Y + i * W;
            unsigned char hi = 0;
            for (Py_ssize_t j = 0; j < W; j++) {
                float v = row[c0[j]] * cw0[j] + row[c1[j]] * cw1[j];
                y[j] = v;
                hi |= v > t;
            }
            hot[i] = hi;
            any |= hi;
        }
        if (!any) continue;
        for (Py_ssize_t r = 0; r < H; r++) {
            const Py_ssize_t a = r0[r], bb = r1[r];
            if (!hot[a] && !hot[bb]) continue;
            const float *ya = Y + a * W, *yb = Y + bb * W;
            const float wa = rw0[r], wb = rw1[r];
            for (Py_ssize_t j = 0; j < W; j++) {
                if (!(ya[j] > t) && !(yb[j] > t)) continue;
                float v = ya[j] * wa + yb[j] * wb;
                if (v > t) {
                    if (count < cap) {
                        out_m[count] = m;
                        out_p[count] = r * W + j;
                    }
                    count++;
                }
            }
        }
    }
    Py_END_ALLOW_THREADS
    free(Y);
    free(hot);
    result = PyLong_FromSsize_t(count);
done:
    for (int i = 0; i < got; i++) PyBuffer_Release(&b[i]);
    return result;
}

static PyMethodDef methods[] = {
    {"mask_pixels", mask_pixels, METH_VARARGS,
     "mask_pixels(maps, thr, n, h, w, c0, c1, cw0, cw1, r0, r1, rw0, rw1, out_map, out_pix) -> count"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_mask",
                                    "Thresholded bilinear mask pixels for Network Dissection.", -1, methods};

PyMODINIT_FUNC PyInit__mask(void) { return PyModule_Create(&module); }
