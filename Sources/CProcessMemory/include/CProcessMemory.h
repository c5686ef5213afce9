#ifndef PORTCULLIS_CPROCESSMEMORY_H
#define PORTCULLIS_CPROCESSMEMORY_H

#include <stddef.h>

/// The process's resident set in bytes (/proc/self/statm, read with one read(2)); 0 when it
/// cannot be read. Takes no lock of the allocator's.
size_t portcullis_resident_bytes(void);

/// Gives the pages the C allocator holds free back to the system (glibc's malloc_trim(0)), so
/// that the resident set falls once memory is freed. Walks every arena's free chunks under that
/// arena's lock (milliseconds for a heap of a million free chunks): call it rarely.
void portcullis_trim_heap(void);

#endif
