/* LOWLAT_DEBUG is set by setup.py (0 release, 1 debug build).  Used as a plain C constant so the
 * compiler removes debug-only branches in release builds (uvloop's UVLOOP_DEBUG idea). */
#ifndef LOWLAT_DEBUG_H
#define LOWLAT_DEBUG_H
#ifndef LOWLAT_DEBUG
#define LOWLAT_DEBUG 0
#endif
#endif
