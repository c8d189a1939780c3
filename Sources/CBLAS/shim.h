#ifndef SCENEPS_CBLAS_SHIM_H
#define SCENEPS_CBLAS_SHIM_H
// Debian's libopenblas-dev installs <cblas.h> through alternatives; there is
// no cblas.pc. openblas_set_num_threads is declared by OpenBLAS's cblas.h.
#include <cblas.h>
// LAPACK's symmetric eigensolver (OpenBLAS ships LAPACK; Debian installs no
// lapack.h with it): the title vectors' principal components (TitleReducer).
extern void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                   double *w, double *work, const int *lwork, int *info);
#endif
