#include "CProcessMemory.h"
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

// Swift's Glibc module does not map <malloc.h>; and reading statm here keeps Foundation's
// string and file machinery off a path read four times a second.
size_t portcullis_resident_bytes(void) {
#ifndef __linux__
    return 0;
#else
    char text[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t length = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (length <= 0) return 0;
    text[length] = '\0';
    char *rest = NULL;
    strtoull(text, &rest, 10);  // size
    if (rest == NULL || *rest != ' ') return 0;
    unsigned long long pages = strtoull(rest + 1, NULL, 10);  // resident
    long page = sysconf(_SC_PAGESIZE);
    return page > 0 ? (size_t)(pages * (unsigned long long)page) : 0;
#endif
}

void portcullis_trim_heap(void) {
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}
