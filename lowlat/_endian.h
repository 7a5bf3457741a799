/* Little-endian unaligned loads/stores through memcpy: FlatBuffers are little-endian and a buffer
 * handed to us (a NATS payload, a numpy slice) has no alignment guarantee.  memcpy of a constant size
 * compiles to one mov on x86-64/aarch64. */
#ifndef LOWLAT_ENDIAN_H
#define LOWLAT_ENDIAN_H
#include <stdint.h>
#include <string.h>
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "lowlat currently supports little-endian hosts only"
#endif
static inline uint8_t  ll_load_u8 (const char *p) { uint8_t  v; memcpy(&v, p, 1); return v; }
static inline int8_t   ll_load_i8 (const char *p) { int8_t   v; memcpy(&v, p, 1); return v; }
static inline uint16_t ll_load_u16(const char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline int16_t  ll_load_i16(const char *p) { int16_t  v; memcpy(&v, p, 2); return v; }
static inline uint32_t ll_load_u32(const char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline int32_t  ll_load_i32(const char *p) { int32_t  v; memcpy(&v, p, 4); return v; }
static inline uint64_t ll_load_u64(const char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline int64_t  ll_load_i64(const char *p) { int64_t  v; memcpy(&v, p, 8); return v; }
static inline double   ll_load_f64(const char *p) { double   v; memcpy(&v, p, 8); return v; }
static inline void ll_store_u8 (char *p, uint8_t  v) { memcpy(p, &v, 1); }
static inline void ll_store_u16(char *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void ll_store_i32(char *p, int32_t  v) { memcpy(p, &v, 4); }
static inline void ll_store_u32(char *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void ll_store_u64(char *p, uint64_t v) { memcpy(p, &v, 8); }
static inline void ll_store_i64(char *p, int64_t  v) { memcpy(p, &v, 8); }
static inline void ll_store_f64(char *p, double   v) { memcpy(p, &v, 8); }
#endif
