/* Idle strategies of lowlat (Aeron's BusySpin / Yielding / Sleeping / Backoff) and the clock they use.
 *
 * Why a header: the same state machine runs inside the rings' nogil wait loops (C), inside the Aeron
 * binding (C++) and, one step at a time, in asyncio pollers (Python asks what to do and awaits it), so
 * it must compile as C and as C++ and must not depend on either module.  Plain C only, no atomics.
 */
#ifndef LOWLAT_IDLE_H
#define LOWLAT_IDLE_H

#include <sched.h>
#include <stdint.h>
#include <time.h>

enum { LL_IDLE_BUSY = 0, LL_IDLE_YIELD = 1, LL_IDLE_BACKOFF = 2, LL_IDLE_SLEEP = 3 };

/* What one idle step asks the caller to do: a positive value is "park this many ns". */
enum { LL_IDLE_ACT_SPIN = 0, LL_IDLE_ACT_YIELD = -1 };

typedef struct {
    int kind;              /* LL_IDLE_* */
    uint32_t max_spins;    /* backoff: pause instructions before yielding */
    uint32_t max_yields;   /* backoff: sched_yield calls before parking */
    int64_t min_park_ns;   /* backoff: first sleep, ns; sleep: every sleep, ns */
    int64_t max_park_ns;   /* backoff: sleep cap, ns (doubles from min up to this) */
    uint32_t spins;        /* state */
    uint32_t yields;       /* state */
    int64_t park_ns;       /* state */
} ll_idle_t;

static inline void ll_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

static inline int64_t ll_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void ll_sleep_ns(int64_t ns) {
    struct timespec ts;
    if (ns <= 0) return;
    ts.tv_sec = (time_t)(ns / 1000000000LL);
    ts.tv_nsec = (long)(ns % 1000000000LL);
    nanosleep(&ts, NULL);
}

static inline void ll_idle_reset(ll_idle_t *s) {
    s->spins = 0;
    s->yields = 0;
    s->park_ns = s->min_park_ns;
}

/* Advance the state machine by one idle period without waiting; returns LL_IDLE_ACT_SPIN,
 * LL_IDLE_ACT_YIELD or the ns to park. */
static inline int64_t ll_idle_step(ll_idle_t *s) {
    int64_t park;
    switch (s->kind) {
    case LL_IDLE_BUSY:
        return LL_IDLE_ACT_SPIN;
    case LL_IDLE_YIELD:
        return LL_IDLE_ACT_YIELD;
    case LL_IDLE_SLEEP:
        return s->min_park_ns;
    default:
        if (s->spins < s->max_spins) {
            s->spins++;
            return LL_IDLE_ACT_SPIN;
        }
        if (s->yields < s->max_yields) {
            s->yields++;
            return LL_IDLE_ACT_YIELD;
        }
        park = s->park_ns;
        s->park_ns = park * 2 > s->max_park_ns ? s->max_park_ns : park * 2;
        return park;
    }
}

/* Carry out one step's action (the caller decides whether the GIL is held: spinning keeps it). */
static inline void ll_idle_act(int64_t action) {
    if (action == LL_IDLE_ACT_SPIN)
        ll_cpu_relax();
    else if (action == LL_IDLE_ACT_YIELD)
        sched_yield();
    else
        ll_sleep_ns(action);
}

static inline void ll_idle(ll_idle_t *s) { ll_idle_act(ll_idle_step(s)); }

#endif
