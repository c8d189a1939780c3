#ifndef SCENEPS_CBLAS_SHIM_H
#define SCENEPS_CBLAS_SHIM_H
// Debian's libopenblas-dev installs <cblas.h> through alternatives; there is
// no cblas.pc. openblas_set_num_threads is declared by OpenBLAS's cblas.h.
#include <cblas.h>
#endif
