"""Raw array routines with no autograd (im2col/col2im, pooling windows, LRN sums).

A portable reference written against the NumPy/CuPy array API, plus fast paths.
Imports numpy/cupy/numba only, never minicnn.
"""
