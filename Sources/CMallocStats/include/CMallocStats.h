#ifndef PORTCULLIS_CMALLOCSTATS_H
#define PORTCULLIS_CMALLOCSTATS_H

#include <stddef.h>

/// Bytes the C allocator has handed out and not had back, in every arena and in mmapped chunks
/// (glibc's mallinfo2: uordblks + hblkhd). Unlike the resident set it falls as soon as memory is
/// freed, though the allocator may keep the pages. Walks each arena's free lists under that
/// arena's lock: call it now and then, off the event loops.
size_t portcullis_heap_in_use(void);

#endif
