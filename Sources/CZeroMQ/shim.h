#ifndef SCENEPS_CZEROMQ_SHIM_H
#define SCENEPS_CZEROMQ_SHIM_H
// libzmq.pc adds -isystem flags SwiftPM refuses, so no pkgConfig: the header
// is found in /usr/include and `link "zmq"` does the rest (docs/ARCHITECTURE.md §7).
#include <zmq.h>
#endif
