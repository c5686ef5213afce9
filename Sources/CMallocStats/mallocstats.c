#include "CMallocStats.h"
#include <malloc.h>

// Swift's Glibc module does not map <malloc.h>, so mallinfo2 is reached through this one function.
size_t portcullis_heap_in_use(void) {
    struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;
}
