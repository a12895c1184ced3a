/* Exact mAP over Hamming rankings of packed binary codes, with Matlab's tie order.
 *
 * Matlab's `sort(..., 'ascend')` is stable, so items at equal distance keep their
 * database order. Distances take only K+1 values, which makes the stable rank of an
 * item computable without sorting: rank = (#items at a smaller distance)
 *                                        + (#items at the same distance and a lower index) + 1.
 * Per query: one pass in index order computes the distances and two histograms (all
 * items, relevant items); the histogram counter read before each increment is the
 * item's place among the earlier items of its distance, so after a prefix sum over the
 * K+1 bins every relevant item knows its rank and its ordinal among the relevant items.
 * O(N) per query, O(N) scratch per thread, no sort.
 *
 * The AP terms i/rank_i are summed in rank order, then divided by the number of
 * relevant items found, the same operations in the same order as the numpy path in
 * bitlens.metrics, so both give bit-identical results.
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

/* x86-64 baseline has no popcnt instruction: build a popcnt clone beside the
 * portable one and let the loader pick (GCC function multi-versioning). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MAP_CLONES __attribute__((target_clones("popcnt", "default")))
#else
#define MAP_CLONES
#endif

enum { SELF_NONE = 0, SELF_NONRELEVANT = 1, SELF_RELEVANT = 2, SELF_DROP = 3 };

typedef struct {
    const uint64_t *q, *mask, *db;
    const int64_t *dl;
    Py_ssize_t nd, words, self_offset, topk;
    int self_mode, nbins;
} Problem;

static inline __attribute__((always_inline)) unsigned hamming(const uint64_t *q, const uint64_t *d,
                                                               const uint64_t *m, Py_ssize_t w)
{
    unsigned s = 0;
    if (m) {
        for (Py_ssize_t t = 0; t < w; t++) s += (unsigned)__builtin_popcountll((q[t] ^ d[t]) & m[t]);
    } else {
        for (Py_ssize_t t = 0; t < w; t++) s += (unsigned)__builtin_popcountll(q[t] ^ d[t]);
    }
    return s;
}

typedef struct {
    Py_ssize_t bin, occ, rocc; /* distance, items before it in its bin, relevant items before it in its bin */
} Hit;

/* One pass over the database: the histogram update hands each item its occurrence
 * number inside its distance bin, which is all its stable rank needs; only relevant
 * items are written out. Literal word counts let the compiler unroll the popcounts. */
static inline __attribute__((always_inline)) Py_ssize_t scan(const Problem *p, const uint64_t *q, const uint64_t *m,
                                                             Py_ssize_t self, int64_t ql, Py_ssize_t w,
                                                             int64_t *cnt, int64_t *rcnt, Hit *hits)
{
    Py_ssize_t nh = 0;
    for (Py_ssize_t j = 0; j < p->nd; j++) {
        int rel = p->dl[j] == ql;
        if (j == self) {
            if (p->self_mode == SELF_DROP) continue;
            rel = p->self_mode == SELF_RELEVANT ? 1 : p->self_mode == SELF_NONRELEVANT ? 0 : rel;
        }
        const unsigned s = hamming(q, p->db + j * w, m, w);
        const int64_t occ = cnt[s]++;
        if (rel) {
            hits[nh].bin = s;
            hits[nh].occ = occ;
            hits[nh].rocc = rcnt[s]++;
            nh++;
        }
    }
    return nh;
}

MAP_CLONES
static double query_ap(const Problem *p, Py_ssize_t qi, int64_t ql, int64_t *cnt, int64_t *rcnt, Hit *hits,
                       double *terms)
{
    const Py_ssize_t w = p->words;
    const uint64_t *q = p->q + qi * w;
    const uint64_t *m = p->mask ? p->mask + qi * w : NULL;
    const Py_ssize_t self = p->self_mode == SELF_NONE ? -1 : p->self_offset + qi;
    memset(cnt, 0, sizeof(int64_t) * p->nbins);
    memset(rcnt, 0, sizeof(int64_t) * p->nbins);
    Py_ssize_t nh;
    switch (w) {
    case 1: nh = scan(p, q, m, self, ql, 1, cnt, rcnt, hits); break;
    case 2: nh = scan(p, q, m, self, ql, 2, cnt, rcnt, hits); break;
    case 4: nh = scan(p, q, m, self, ql, 4, cnt, rcnt, hits); break;
    case 8: nh = scan(p, q, m, self, ql, 8, cnt, rcnt, hits); break;
    case 16: nh = scan(p, q, m, self, ql, 16, cnt, rcnt, hits); break;
    default: nh = scan(p, q, m, self, ql, w, cnt, rcnt, hits);
    }
    if (nh == 0) return 0.0;
    /* exclusive prefix sums: cnt[s] = items ranked before distance s, rcnt[s] = relevant ones */
    int64_t before = 0, rbefore = 0;
    for (int s = 0; s < p->nbins; s++) {
        const int64_t c = cnt[s], r = rcnt[s];
        cnt[s] = before;
        rcnt[s] = rbefore;
        before += c;
        rbefore += r;
    }
    Py_ssize_t found = 0;
    for (Py_ssize_t h = 0; h < nh; h++) {
        const int64_t rank = cnt[hits[h].bin] + hits[h].occ + 1;
        const int64_t i = rcnt[hits[h].bin] + hits[h].rocc + 1;
        if (p->topk > 0 && rank > p->topk) continue;
        terms[i - 1] = (double)i / (double)rank;
        found++;
    }
    if (found == 0) return 0.0;
    double sum = 0.0;
    for (Py_ssize_t t = 0; t < found; t++) sum += terms[t];
    return sum / (double)found;
}

static PyObject *average_precisions(PyObject *self, PyObject *args)
{
    PyObject *oq, *od, *oql, *odl, *omask, *oout;
    Py_ssize_t words, self_offset, topk;
    int self_mode, nbits, threads;
    if (!PyArg_ParseTuple(args, "OOOOOOnninni", &oq, &od, &oql, &odl, &omask, &oout, &words, &self_offset,
                          &self_mode, &nbits, &topk, &threads))
        return NULL;
    if (words < 1 || nbits < 0 || nbits > 64 * words || nbits > 65535 || self_mode < 0 || self_mode > 3) {
        PyErr_SetString(PyExc_ValueError, "bad words / bits / self_mode");
        return NULL;
    }
    Py_buffer bq, bd, bql, bdl, bmask, bout;
    int have_mask = omask != Py_None, ok = 0;
    if (get_buffer(oq, &bq, 0, "query words", 8) < 0) return NULL;
    if (get_buffer(od, &bd, 0, "database words", 8) < 0) goto r_q;
    if (get_buffer(oql, &bql, 0, "query labels", 8) < 0) goto r_d;
    if (get_buffer(odl, &bdl, 0, "database labels", 8) < 0) goto r_ql;
    if (have_mask && get_buffer(omask, &bmask, 0, "masks", 8) < 0) goto r_dl;
    if (get_buffer(oout, &bout, 1, "out", 8) < 0) goto r_mask;

    const Py_ssize_t nq = bql.len / 8, nd = bdl.len / 8;
    if (bq.len != nq * words * 8 || bd.len != nd * words * 8 || bout.len != nq * 8 ||
        (have_mask && bmask.len != bq.len)) {
        PyErr_SetString(PyExc_ValueError, "array sizes disagree with the query / database counts");
        goto r_out;
    }
    Problem p = {bq.buf, have_mask ? bmask.buf : NULL, bd.buf, bdl.buf, nd, words, self_offset, topk, self_mode,
                 nbits + 1};
    const int64_t *ql = bql.buf;
    double *out = bout.buf;
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
#ifdef _OPENMP
    if (threads < 1) threads = omp_get_max_threads();
#pragma omp parallel num_threads(threads) reduction(| : failed)
#endif
    {
        Hit *hits = malloc(sizeof(Hit) * (nd ? nd : 1));
        double *terms = malloc(sizeof(double) * (nd ? nd : 1));
        int64_t *cnt = malloc(sizeof(int64_t) * p.nbins), *rcnt = malloc(sizeof(int64_t) * p.nbins);
        if (!hits || !terms || !cnt || !rcnt) {
            failed = 1;
        } else {
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 8)
#endif
            for (Py_ssize_t i = 0; i < nq; i++) out[i] = query_ap(&p, i, ql[i], cnt, rcnt, hits, terms);
        }
        free(hits);
        free(terms);
        free(cnt);
        free(rcnt);
    }
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
        goto r_out;
    }
    ok = 1;
r_out:
    PyBuffer_Release(&bout);
r_mask:
    if (have_mask) PyBuffer_Release(&bmask);
r_dl:
    PyBuffer_Release(&bdl);
r_ql:
    PyBuffer_Release(&bql);
r_d:
    PyBuffer_Release(&bd);
r_q:
    PyBuffer_Release(&bq);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"average_precisions", average_precisions, METH_VARARGS,
     "average_precisions(q_words, db_words, q_labels, db_labels, masks_or_None, out, words, self_offset, "
     "self_mode, nbits, topk, threads)\n\nAP per query (into out, float64) over the stable Hamming ranking of the "
     "database. Words are uint64 (rows x words), labels int64; self_mode 0 none, 1 nonrelevant, 2 relevant, "
     "3 drop (query i is database item self_offset + i); topk 0 means all; threads < 1 means OpenMP's default."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_map", "Exact Matlab-order mAP over packed codes.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__map(void) { return PyModule_Create(&module); }
