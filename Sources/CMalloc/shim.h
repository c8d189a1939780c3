// glibc functions Swift's Glibc module does not export: malloc tuning
// (mallopt) and starting writeback of a file range (sync_file_range).
#if defined(__linux__)
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <malloc.h>

/// Starts writing [offset, offset+count) of fd's dirty pages to the disk
/// without waiting (SYNC_FILE_RANGE_WRITE). Returns 0 or -1 (errno set).
static inline int sceneps_start_writeback(int fd, long long offset, long long count) {
    return sync_file_range(fd, (off64_t)offset, (off64_t)count, SYNC_FILE_RANGE_WRITE);
}
#endif
