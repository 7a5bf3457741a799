# Included by _core.pyx.  The other messages: a spec-driven codec (generated specs in _fbs_specs.pxi).  Not
# the hot path (~3-6 us per message); each message decodes to a named tuple whose fields are the schema's, in
# schema order.

cdef dict _SCALAR_FMT = {"u8": ("<B", 1), "i8": ("<b", 1), "bool": ("<?", 1), "u16": ("<H", 2),
                         "i16": ("<h", 2), "u32": ("<I", 4), "i32": ("<i", 4), "u64": ("<Q", 8),
                         "i64": ("<q", 8), "f32": ("<f", 4), "f64": ("<d", 8), "utype:Command": ("<B", 1)}


def _fields(tname):
    return [f for f in _FB_TABLES[tname] if not f[1].startswith("utype:")]


Level = _namedtuple("Level", [f[0] for f in _FB_STRUCTS["Level"][2]])
Level.__doc__ = "One price level of a BookSnapshot: price (quote currency), quantity (lots), order_count."
OrderMsg = _namedtuple("OrderMsg", [f[0] for f in _fields("Order")],
                       defaults=[f[3] for f in _fields("Order")][1:])
OrderMsg.__doc__ = "A finance.Order as a plain named tuple (for encode_command / decode_command)."
ValidationResult = _namedtuple("ValidationResult", [f[0] for f in _fields("ValidationResult")],
                               defaults=[f[3] for f in _fields("ValidationResult")][1:])
Cancel = _namedtuple("Cancel", [f[0] for f in _fields("Cancel")], defaults=[f[3] for f in _fields("Cancel")][1:])
Modify = _namedtuple("Modify", [f[0] for f in _fields("Modify")], defaults=[f[3] for f in _fields("Modify")][1:])
MassCancel = _namedtuple("MassCancel", [f[0] for f in _fields("MassCancel")],
                         defaults=[f[3] for f in _fields("MassCancel")][1:])
CommandMsg = _namedtuple("CommandMsg", ["cmd_type", "cmd", "sequence"])
ExecutionReport = _namedtuple("ExecutionReport", [f[0] for f in _fields("ExecutionReport")],
                              defaults=[f[3] for f in _fields("ExecutionReport")][1:])
Trade = _namedtuple("Trade", [f[0] for f in _fields("Trade")], defaults=[f[3] for f in _fields("Trade")][1:])
L2Update = _namedtuple("L2Update", [f[0] for f in _fields("L2Update")],
                       defaults=[f[3] for f in _fields("L2Update")][1:])
BookSnapshot = _namedtuple("BookSnapshot", [f[0] for f in _fields("BookSnapshot")],
                           defaults=[f[3] for f in _fields("BookSnapshot")][1:])

cdef dict _TUPLES = {"Order": OrderMsg, "ValidationResult": ValidationResult, "Cancel": Cancel,
                     "Modify": Modify, "MassCancel": MassCancel, "ExecutionReport": ExecutionReport,
                     "Trade": Trade, "L2Update": L2Update, "BookSnapshot": BookSnapshot}
cdef dict _COMMAND_OF = {OrderMsg: CommandType.ORDER, Cancel: CommandType.CANCEL, Modify: CommandType.MODIFY,
                         MassCancel: CommandType.MASS_CANCEL}
cdef tuple _COMMAND_TABLES = (None,) + _FB_UNIONS["Command"]


# Encoding plan per (table, which optional strings/vectors/union are present), computed once: the vtable bytes,
# the table's inline size and one struct.Struct that packs the whole table (soffset, scalars, offset
# placeholders) in one call.  Inline layout as flatc's builders align it: soffset at 0, one 4-byte field at 4 (if
# any), 8-byte fields from 8, then 4/2/1-byte fields; tables start 8-aligned, strings 4-aligned, struct vector
# elements aligned to the struct.  Every scalar is written (so readers never fall back to defaults); absent
# strings/vectors/union values are left out of the vtable.
cdef dict _PLANS = {}


cdef tuple _plan(str tname, tuple present):
    cdef Py_ssize_t ri = 0, maxslot = 2, cur, off
    spec = _FB_TABLES[tname]
    scal = []       # (slot, size, struct code, key): key = field name, or ref index (int)
    refs = []       # (slot, kind, name)
    for name, kind, slot, dflt in spec:
        if kind in _SCALAR_FMT:
            fmt, size = _SCALAR_FMT[kind]
            scal.append((slot, size, fmt[1], name))
        else:
            ri += 1
            if not present[ri - 1]:
                continue
            scal.append((slot, 4, "I", len(refs)))
            refs.append((slot, kind, name))
        maxslot = max(maxslot, slot)
    place = {}
    fours = [f for f in scal if f[1] == 4]
    if fours:
        place[fours[0][0]] = 4
    cur = 8
    for size in (8, 4, 2, 1):
        for f in scal:
            if f[1] == size and f[0] not in place:
                place[f[0]] = cur
                cur += size
    tsize = cur
    vsize = maxslot + 2
    vtab = bytearray(vsize)
    _struct.pack_into("<HH", vtab, 0, vsize, tsize)
    for slot, o in place.items():
        _struct.pack_into("<H", vtab, slot, o)
    fmt = "<i"
    cur = 4
    keys = []
    for slot, size, code, key in sorted(scal, key=lambda f: place[f[0]]):
        off = place[slot]
        if off > cur:
            fmt += f"{off - cur}x"
        fmt += code
        keys.append(key)
        cur = off + size
    if tsize > cur:
        fmt += f"{tsize - cur}x"
    return (bytes(vtab), tsize, _struct.Struct(fmt), tuple(keys),
            tuple((place[slot], kind, name) for slot, kind, name in refs))


cdef tuple _emit(str tname, dict values, Py_ssize_t base):
    # Bytes of [vtable][pad][table][referenced objects] to be placed at absolute offset `base` (4-aligned);
    # returns (chunk, absolute table position).
    cdef Py_ssize_t tpos, pos, k
    present = tuple(values.get(name) is not None for name, kind, slot, d in _FB_TABLES[tname]
                    if kind not in _SCALAR_FMT)
    plan = _PLANS.get((tname, present))
    if plan is None:
        plan = _PLANS[(tname, present)] = _plan(tname, present)
    vtab, tsize, st, keys, refs = plan
    tpos = base + len(vtab)
    tpos += (8 - tpos % 8) % 8
    parts = [vtab, bytes(tpos - base - len(vtab)), None]
    pos = tpos + tsize
    ref_off = []
    for off, kind, name in refs:
        v = values[name]
        if kind == "str":
            data = v.encode() if isinstance(v, str) else bytes(v)
            k = (4 - pos % 4) % 4
            parts.append(bytes(k))
            pos += k
            ref_off.append(pos - (tpos + off))
            ln = len(data)
            parts.append(_struct.pack("<I", ln) + data + bytes(1 + (4 - (ln + 1) % 4) % 4))
            pos += 4 + ln + 1 + (4 - (ln + 1) % 4) % 4
        elif kind.startswith("vec:"):
            ssize, salign, sfields = _FB_STRUCTS[kind[4:]]
            k = (salign - (pos + 4) % salign) % salign
            parts.append(bytes(k))
            pos += k
            ref_off.append(pos - (tpos + off))
            sst = _struct_packer(kind[4:])
            items = list(v)
            parts.append(_struct.pack("<I", len(items)) + b"".join(sst.pack(*item) for item in items))
            pos += 4 + ssize * len(items)
        else:   # union member table
            sub, sub_tpos = _emit(_COMMAND_TABLES[values["cmd_type_value"]], dict(zip(v._fields, v)), pos)
            ref_off.append(sub_tpos - (tpos + off))
            parts.append(sub)
            pos += len(sub)
    args = [values[key] if isinstance(key, str) else ref_off[key] for key in keys]
    try:
        parts[2] = st.pack(tpos - base, *args)
    except _struct.error as e:
        raise ValueError(f"{tname}: a field value does not fit its schema type: {e}") from None
    return b"".join(parts), tpos


cdef dict _STRUCT_PACKERS = {}


cdef object _struct_packer(str sname):
    st = _STRUCT_PACKERS.get(sname)
    if st is None:
        ssize, salign, sfields = _FB_STRUCTS[sname]
        fmt, cur = "<", 0
        for fname, fkind, foff in sfields:
            if foff > cur:
                fmt += f"{foff - cur}x"
            fmt += _SCALAR_FMT[fkind][0][1]
            cur = foff + _SCALAR_FMT[fkind][1]
        if ssize > cur:
            fmt += f"{ssize - cur}x"
        st = _STRUCT_PACKERS[sname] = _struct.Struct(fmt)
    return st


cdef bytes _encode_root(str tname, dict values):
    chunk, tpos = _emit(tname, values, 4)
    return _struct.pack("<I", tpos) + chunk


cdef object _load(const char* p, str kind):
    if kind == "u64":
        return ll_load_u64(p)
    if kind == "f64":
        return ll_load_f64(p)
    if kind == "u32":
        return ll_load_u32(p)
    if kind == "i8":
        return ll_load_i8(p)
    if kind == "u8" or kind.startswith("utype:"):
        return ll_load_u8(p)
    if kind == "bool":
        return ll_load_u8(p) != 0
    return _struct.unpack_from(_SCALAR_FMT[kind][0], (<char*>p)[:_SCALAR_FMT[kind][1]])[0]


cdef object _decode_table(str tname, const char* buf, Py_ssize_t n, Py_ssize_t pos):
    cdef FbTable t
    cdef Py_ssize_t f, start, count, i
    cdef const char* s
    cdef Py_ssize_t sl
    cdef int rc = fb_table_at(buf, n, pos, &t)
    if rc:
        _raise_decode(rc, tname, n)
    vals = []
    ctype = 0
    for name, kind, slot, dflt in _FB_TABLES[tname]:
        if kind == "str":
            rc = fb_string(&t, slot, &s, &sl)
            if rc:
                _raise_decode(rc, tname, n)
            vals.append(_str(s, sl, False))
        elif kind.startswith("vec:"):
            ssize, salign, sfields = _FB_STRUCTS[kind[4:]]
            rc = fb_vector(&t, slot, ssize, &start, &count)
            if rc:
                _raise_decode(rc, tname, n)
            levels = []
            for i in range(count):
                item = []
                for _, fkind, foff in sfields:
                    item.append(_load(buf + start + i * <Py_ssize_t>ssize + <Py_ssize_t>foff, fkind))
                levels.append(Level(*item))
            vals.append(tuple(levels))
        elif kind.startswith("union:"):
            if ctype == 0:
                vals.append(None)
                continue
            if ctype >= len(_COMMAND_TABLES):
                _raise_decode(FB_E_UNION, tname, n)
            f = fb_field(&t, slot, 4)
            if f <= 0:
                _raise_decode(FB_E_UNION if f == 0 else FB_E_FIELD, tname, n)
            vals.append(_decode_table(_COMMAND_TABLES[ctype], buf, n, f + <Py_ssize_t>ll_load_u32(buf + f)))
        else:
            f = fb_field(&t, slot, _SCALAR_FMT[kind][1])
            if f < 0:
                _raise_decode(FB_E_FIELD, tname, n)
            v = _load(buf + f, kind) if f else dflt
            if kind.startswith("utype:"):
                ctype = v
                continue
            vals.append(v)
    if tname == "CommandMsg":
        return CommandMsg(_enum_or_int(tuple(CommandType), ctype), vals[0], vals[1])
    return _TUPLES[tname](*vals)


cdef object _decode_root(str tname, buf):
    cdef Py_buffer view
    cdef const char* p
    cdef Py_ssize_t n
    cdef int held = _acquire(buf, &view, &p, &n)
    try:
        if n < 4:
            _raise_decode(FB_E_SHORT, tname, n)
        return _decode_table(tname, p, n, ll_load_u32(p))
    finally:
        if held:
            PyBuffer_Release(&view)


def encode_message(msg) -> bytes:
    """Encode any of the named tuples (``OrderMsg``, ``Cancel``, ``Modify``, ``MassCancel``,
    ``ValidationResult``, ``ExecutionReport``, ``Trade``, ``L2Update``, ``BookSnapshot``) as its FlatBuffer."""
    for tname, cls in _TUPLES.items():
        if type(msg) is cls:
            return _encode_root(tname, dict(zip(msg._fields, msg)))
    raise TypeError(f"encode_message: not a lowlat message tuple: {type(msg).__name__}")


def encode_command(cmd, *, uint64_t sequence=0) -> bytes:
    """Wrap an ``OrderMsg``/``Cancel``/``Modify``/``MassCancel`` in a ``finance.CommandMsg`` (the union's type
    byte tells the matching engine which command a frame holds).  ``sequence`` is the producer's counter."""
    ctype = _COMMAND_OF.get(type(cmd))
    if ctype is None:
        raise TypeError(f"encode_command: expected OrderMsg, Cancel, Modify or MassCancel, not "
                        f"{type(cmd).__name__}")
    return _encode_root("CommandMsg", {"cmd": cmd, "cmd_type": int(ctype), "cmd_type_value": int(ctype),
                                       "sequence": sequence})


def decode_command(buf):
    """Verify and decode a ``finance.CommandMsg`` -> ``CommandMsg(cmd_type: CommandType, cmd, sequence)`` where
    ``cmd`` is an ``OrderMsg``/``Cancel``/``Modify``/``MassCancel`` (``None`` for type NONE).
    Raises DecodeError on bad bytes or an unknown union type."""
    return _decode_root("CommandMsg", buf)


def command_type(buf) -> int:
    """Verify a CommandMsg root and return its union type byte (a ``CommandType`` value); DecodeError if bad."""
    cdef Py_buffer view
    cdef const char* p
    cdef Py_ssize_t n
    cdef uint8_t ct = 0
    cdef uint64_t seq = 0
    cdef FbTable sub
    cdef int rc
    cdef int held = _acquire(buf, &view, &p, &n)
    rc = fb_command_table(p, n, &ct, &seq, &sub)
    if held:
        PyBuffer_Release(&view)
    if rc:
        _raise_decode(rc, "CommandMsg", n)
    return ct


def encode_validation_result(uint64_t order_id, bint accepted, uint8_t reason, uint64_t timestamp=0,
                             symbol=None) -> bytes:
    """Build a ``finance.ValidationResult`` (reason: a ``Reject`` code; timestamp: ns)."""
    return encode_message(ValidationResult(order_id, accepted, reason, timestamp, symbol))


def encode_cancel(uint64_t order_id, symbol=None, uint64_t account=0, uint64_t timestamp=0) -> bytes:
    """Build a ``finance.Cancel``."""
    return encode_message(Cancel(order_id, symbol, account, timestamp))


def encode_modify(uint64_t order_id, symbol=None, double price=0.0, uint32_t quantity=0, uint64_t timestamp=0,
                  uint64_t account=0) -> bytes:
    """Build a ``finance.Modify`` (new price in quote currency, new quantity in lots)."""
    return encode_message(Modify(order_id, symbol, price, quantity, timestamp, account))


def encode_mass_cancel(uint64_t account, symbol=None, uint64_t timestamp=0) -> bytes:
    """Build a ``finance.MassCancel`` (symbol None = every symbol)."""
    return encode_message(MassCancel(account, symbol, timestamp))


def encode_execution_report(*args, **kwargs) -> bytes:
    """Build a ``finance.ExecutionReport``; arguments as the ``ExecutionReport`` named tuple's fields."""
    return encode_message(ExecutionReport(*args, **kwargs))


def encode_trade(*args, **kwargs) -> bytes:
    """Build a ``finance.Trade``; arguments as the ``Trade`` named tuple's fields."""
    return encode_message(Trade(*args, **kwargs))


def encode_l2_update(*args, **kwargs) -> bytes:
    """Build a ``finance.L2Update``; arguments as the ``L2Update`` named tuple's fields."""
    return encode_message(L2Update(*args, **kwargs))


def encode_book_snapshot(*args, **kwargs) -> bytes:
    """Build a ``finance.BookSnapshot``; ``bids``/``asks`` are sequences of ``Level`` (or 3-tuples)."""
    return encode_message(BookSnapshot(*args, **kwargs))


def decode_validation_result(buf):
    """Verify and decode a ``finance.ValidationResult``; DecodeError on bad bytes."""
    return _decode_root("ValidationResult", buf)


def decode_cancel(buf):
    """Verify and decode a ``finance.Cancel``; DecodeError on bad bytes."""
    return _decode_root("Cancel", buf)


def decode_modify(buf):
    """Verify and decode a ``finance.Modify``; DecodeError on bad bytes."""
    return _decode_root("Modify", buf)


def decode_mass_cancel(buf):
    """Verify and decode a ``finance.MassCancel``; DecodeError on bad bytes."""
    return _decode_root("MassCancel", buf)


def decode_execution_report(buf):
    """Verify and decode a ``finance.ExecutionReport``; DecodeError on bad bytes."""
    return _decode_root("ExecutionReport", buf)


def decode_trade(buf):
    """Verify and decode a ``finance.Trade``; DecodeError on bad bytes."""
    return _decode_root("Trade", buf)


def decode_l2_update(buf):
    """Verify and decode a ``finance.L2Update``; DecodeError on bad bytes."""
    return _decode_root("L2Update", buf)


def decode_book_snapshot(buf):
    """Verify and decode a ``finance.BookSnapshot`` (levels as ``Level`` tuples); DecodeError on bad bytes."""
    return _decode_root("BookSnapshot", buf)


def decode_order_msg(buf):
    """Verify and decode a ``finance.Order`` into an ``OrderMsg`` named tuple (a copy; see decode_order)."""
    return _decode_root("Order", buf)
