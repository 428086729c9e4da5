/*
 * Reuse of large message buffers: a small mutex-guarded cache of freed buffers of at least
 * DR_BIG_BUFFER_MIN bytes, matched by malloc_usable_size (see big_buffers.h).
 */
#include "base/big_buffers.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static void *cache_ptr[DR_BIG_BUFFER_COUNT];   /* kept buffers (NULL: free entry) */
static size_t cache_size[DR_BIG_BUFFER_COUNT]; /* their usable sizes */
static size_t cache_bytes;                     /* sum of cache_size */

/*
 * A fresh large buffer, 2 MiB-aligned and advised for transparent huge pages: where THP is in
 * madvise mode (Debian's default) its first touch takes one fault per 2 MiB instead of one per
 * 4 KiB page (measured: a 100 MB message copied into fresh 4 KiB pages cost 25,600 faults).
 */
static void *alloc_huge(size_t len) {
    void *block = NULL;
    if (posix_memalign(&block, DR_BIG_BUFFER_ALIGN, len) != 0)
        return NULL;
    madvise(block, len & ~(DR_BIG_BUFFER_ALIGN - 1), MADV_HUGEPAGE);
    return block;
}

void *dr_big_alloc(size_t len) {
    if (len < DR_BIG_BUFFER_MIN)
        return malloc(len ? len : 1);
    void *found = NULL;
    pthread_mutex_lock(&cache_lock);
    int best = -1;
    for (int i = 0; i < DR_BIG_BUFFER_COUNT; i++)
        if (cache_ptr[i] && cache_size[i] >= len && cache_size[i] / 2 <= len &&
            (best < 0 || cache_size[i] < cache_size[best]))
            best = i;
    if (best >= 0) {
        found = cache_ptr[best];
        cache_bytes -= cache_size[best];
        cache_ptr[best] = NULL;
    }
    pthread_mutex_unlock(&cache_lock);
    return found ? found : alloc_huge(len);
}

void dr_big_free(void *ptr) {
    if (!ptr)
        return;
    size_t size = malloc_usable_size(ptr);
    if (size >= DR_BIG_BUFFER_MIN) {
        pthread_mutex_lock(&cache_lock);
        for (int i = 0; i < DR_BIG_BUFFER_COUNT; i++) {
            if (!cache_ptr[i] && cache_bytes + size <= DR_BIG_BUFFER_BYTES) {
                cache_ptr[i] = ptr;
                cache_size[i] = size;
                cache_bytes += size;
                ptr = NULL;
                break;
            }
        }
        pthread_mutex_unlock(&cache_lock);
    }
    free(ptr);
}

void dr_big_trim(void) {
    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < DR_BIG_BUFFER_COUNT; i++) {
        free(cache_ptr[i]);
        cache_ptr[i] = NULL;
    }
    cache_bytes = 0;
    pthread_mutex_unlock(&cache_lock);
}
