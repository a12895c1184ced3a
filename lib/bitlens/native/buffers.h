/* Shared by the compiled kernels: a C-contiguous buffer of the expected item size, or a Python error. */
#ifndef BITLENS_NATIVE_BUFFERS_H
#define BITLENS_NATIVE_BUFFERS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

static int get_buffer(PyObject *obj, Py_buffer *view, int writable, const char *name, Py_ssize_t itemsize)
{
    if (PyObject_GetBuffer(obj, view, (writable ? PyBUF_WRITABLE : 0) | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return -1;
    if (view->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s: expected items of %zd bytes, got %zd", name, itemsize, view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

#endif
