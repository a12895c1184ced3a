/* The run-time kernel choice every native module shares: which kernels the CPU runs, forcing one by name, and the
 * Python functions that report them.  The including file defines, before including this header:
 *   K_COUNT, KERNEL_NAMES[K_COUNT] (worst first), KERNEL_NEEDS[K_COUNT] (what each needs of the CPU, in words),
 *   and `static int best_kernel(void)`, the best index this CPU runs (every lower one runs too). */
#ifndef BITLENS_KERNELS_H
#define BITLENS_KERNELS_H
#include <Python.h>
#include <string.h>

static int g_kernel_choice = -1;  /* -1 auto, else a kernel the CPU has */

static int pick_kernel(void) { return g_kernel_choice >= 0 ? g_kernel_choice : best_kernel(); }

/* "auto" -> -1, a known name -> its index; else a ValueError listing the names and -2 */
static int kernel_index(const char *name) {
    if (strcmp(name, "auto") == 0) return -1;
    for (int c = 0; c < K_COUNT; c++)
        if (strcmp(name, KERNEL_NAMES[c]) == 0) return c;
    char valid[256] = "'auto'";
    for (int c = 0; c < K_COUNT; c++) {
        strncat(valid, ", '", sizeof valid - strlen(valid) - 1);
        strncat(valid, KERNEL_NAMES[c], sizeof valid - strlen(valid) - 1);
        strncat(valid, "'", sizeof valid - strlen(valid) - 1);
    }
    PyErr_Format(PyExc_ValueError, "unknown kernel '%s'; valid: %s", name, valid);
    return -2;
}

/* Force kernel c (-1: back to the best); one the CPU lacks is an error, never a silent substitute. */
static PyObject *choose_kernel(int c) {
    if (c > best_kernel()) {
        PyErr_Format(PyExc_RuntimeError, "kernel '%s' needs %s, which this CPU lacks (best here: '%s')",
                     KERNEL_NAMES[c], KERNEL_NEEDS[c], KERNEL_NAMES[best_kernel()]);
        return NULL;
    }
    g_kernel_choice = c;
    Py_RETURN_NONE;
}

static PyObject *py_kernel(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    return PyUnicode_FromString(KERNEL_NAMES[pick_kernel()]);
}

static PyObject *py_kernels(PyObject *self, PyObject *noargs) {
    (void)self; (void)noargs;
    int best = best_kernel();
    PyObject *out = PyTuple_New(best + 1);
    if (!out) return NULL;
    for (int c = 0; c <= best; c++) {
        PyObject *s = PyUnicode_FromString(KERNEL_NAMES[c]);
        if (!s) { Py_DECREF(out); return NULL; }
        PyTuple_SET_ITEM(out, c, s);
    }
    return out;
}

static PyObject *py_kernel_needs(PyObject *self, PyObject *args) {
    const char *name;
    (void)self;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    for (int c = 0; c < K_COUNT; c++)
        if (strcmp(name, KERNEL_NAMES[c]) == 0) return PyUnicode_FromString(KERNEL_NEEDS[c]);
    PyErr_Format(PyExc_ValueError, "unknown kernel '%s'", name);
    return NULL;
}

#define KERNEL_METHODS                                                                                \
    {"kernel", py_kernel, METH_NOARGS, "name of the kernel the next call uses"},                      \
    {"kernels", py_kernels, METH_NOARGS, "names of the kernels this CPU runs, best last"},            \
    {"kernel_needs", py_kernel_needs, METH_VARARGS, "what a kernel needs of the CPU, in words"}

#endif
