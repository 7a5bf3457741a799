# The one UTF-8 well-formedness check of the compiled modules (what Python's strict decoder accepts), for
# nogil loops that must not hand a Python caller bytes it cannot decode.


cdef inline bint utf8_ok(const unsigned char* s, Py_ssize_t n) noexcept nogil:
    # Well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
    cdef Py_ssize_t i = 0, k, need
    cdef unsigned int c, cp
    while i < n:
        c = s[i]
        if c < 0x80:
            i += 1
            continue
        if c >= 0xC2 and c <= 0xDF:
            need = 1
            cp = c & 0x1F
        elif c >= 0xE0 and c <= 0xEF:
            need = 2
            cp = c & 0x0F
        elif c >= 0xF0 and c <= 0xF4:
            need = 3
            cp = c & 0x07
        else:
            return False
        if i + need >= n:
            return False
        for k in range(1, need + 1):
            if (s[i + k] & 0xC0) != 0x80:
                return False
            cp = (cp << 6) | (s[i + k] & 0x3F)
        if ((need == 2 and (cp < 0x800 or (cp >= 0xD800 and cp <= 0xDFFF)))
                or (need == 3 and (cp < 0x10000 or cp > 0x10FFFF))):
            return False
        i += need + 1
    return True
