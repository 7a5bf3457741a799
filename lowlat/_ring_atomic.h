/* C11 atomics and process helpers for lowlat._ring (idle strategies and the clock: _idle.h).
 *
 * Why a header: Cython cannot spell `_Atomic`, and the ring protocol needs real acquire/release ordering
 * (not "x86 happens to be TSO").  Every shared word of a ring (head, tail, record headers, broadcast
 * counters) is a naturally aligned uint64_t and is only ever touched through these functions.  We cast
 * plain shared memory to `_Atomic uint64_t *`; that is valid because 64-bit atomics are lock-free
 * (asserted below), so they have the same size/representation as uint64_t and work across processes
 * that map the same memory.
 */
#ifndef LOWLAT_RING_ATOMIC_H
#define LOWLAT_RING_ATOMIC_H

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "_idle.h"

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "lowlat rings need lock-free 64-bit atomics");
_Static_assert(sizeof(_Atomic uint64_t) == sizeof(uint64_t), "atomic u64 must be plain-sized");

typedef _Atomic uint64_t ll_atomic_u64;

/* ---- loads / stores / CAS on shared 64-bit words ------------------------------------------------ */
static inline uint64_t ll_load_acquire(const void *p) {
    return atomic_load_explicit((ll_atomic_u64 *)p, memory_order_acquire);
}
static inline uint64_t ll_load_relaxed(const void *p) {
    return atomic_load_explicit((ll_atomic_u64 *)p, memory_order_relaxed);
}
static inline void ll_store_release(void *p, uint64_t v) {
    atomic_store_explicit((ll_atomic_u64 *)p, v, memory_order_release);
}
static inline void ll_store_relaxed(void *p, uint64_t v) {
    atomic_store_explicit((ll_atomic_u64 *)p, v, memory_order_relaxed);
}
/* Strong CAS: on failure *expected receives the current value.  acq_rel so that a producer that wins
 * the claim has also observed every earlier producer's claim (they are ordered on the tail word). */
static inline int ll_cas(void *p, uint64_t *expected, uint64_t desired) {
    return atomic_compare_exchange_strong_explicit((ll_atomic_u64 *)p, expected, desired,
                                                   memory_order_acq_rel, memory_order_acquire);
}
static inline uint64_t ll_fetch_add(void *p, uint64_t v) {
    return atomic_fetch_add_explicit((ll_atomic_u64 *)p, v, memory_order_acq_rel);
}
/* Fences for the broadcast ring's seqlock-style validation (Boehm, "Can seqlocks get along with
 * programming language memory models?"): writer = intent store; release fence; data.  Reader =
 * data; acquire fence; intent load. */
static inline void ll_fence_acquire(void) { atomic_thread_fence(memory_order_acquire); }
static inline void ll_fence_release(void) { atomic_thread_fence(memory_order_release); }
static inline void ll_fence_seq_cst(void) { atomic_thread_fence(memory_order_seq_cst); }

/* ---- process identity / liveness --------------------------------------------------------------- */
/* getpid() is a real syscall since glibc 2.25; records carry the writer's pid, so cache it and refresh
 * it in forked children (multiprocessing's default start method on Linux is fork). */
static uint32_t ll_cached_pid_ = 0;
static void ll_pid_after_fork_(void) { ll_cached_pid_ = (uint32_t)getpid(); }
static inline void ll_pid_init(void) {
    ll_cached_pid_ = (uint32_t)getpid();
    pthread_atfork(NULL, NULL, ll_pid_after_fork_);
}
static inline uint32_t ll_pid(void) { return ll_cached_pid_; }

/* 1 if pid looks alive, 0 if it is gone (no such process, or a zombie nobody has reaped yet).
 * Slow (syscall + /proc read): only used on the consumer's stall path. */
static inline int ll_pid_alive(uint32_t pid) {
    char path[64], buf[512];
    FILE *f;
    size_t n;
    char *rp;
    if (pid == 0) return 1;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) return 0;
    snprintf(path, sizeof path, "/proc/%u/stat", (unsigned)pid);
    f = fopen(path, "r");
    if (f == NULL) return errno == ENOENT ? 0 : 1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    rp = strrchr(buf, ')');
    if (rp != NULL && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X')) return 0;
    return 1;
}

#endif /* LOWLAT_RING_ATOMIC_H */
