# Declarations of lowlat._aeron: a thin binding over the Aeron 1.11.3 C++ client (via _aeron_shim.h).
# Built only when AERON_HOME points at an Aeron install (see setup.py and tests/setup/30-aeron.sh).
from libc.stdint cimport int32_t, int64_t, uint8_t
from libcpp cimport bool as cbool
from libcpp.string cimport string


cdef extern from "_aeron_shim.h" namespace "lowlat_aeron":
    # Called by ll_poll with the GIL held (poll never releases it): not nogil.
    ctypedef int (*ll_message_fn)(void* ctx, const uint8_t* buf, int32_t length, int32_t session_id,
                                  int64_t position) noexcept


cdef extern from "_aeron_shim.h" namespace "lowlat_aeron" nogil:
    const int64_t LL_MESSAGE_TOO_LONG      # offer: message longer than max_message_length
    const int64_t LL_OFFER_ERROR           # offer: the client threw (see Client.last_error)

    cppclass LLClient "lowlat_aeron::Client":
        pass

    cppclass LLEndpoint "lowlat_aeron::Endpoint":
        pass

    cppclass LLPub "lowlat_aeron::Pub":
        pass

    cppclass LLSub "lowlat_aeron::Sub":
        pass

    LLClient* ll_connect(const string& aeron_dir, long driver_timeout_ms) except +
    string ll_last_error(LLClient* c, int64_t* count) except +
    void ll_close(LLClient* c) except +
    LLPub* ll_add_publication(LLClient* c, const string& channel, int32_t stream_id, long timeout_ms) except +
    LLSub* ll_add_subscription(LLClient* c, const string& channel, int32_t stream_id, long timeout_ms) except +
    void ll_endpoint_close(LLEndpoint* e) noexcept
    cbool ll_pub_connected(LLPub* p) noexcept
    cbool ll_pub_closed(LLPub* p) noexcept
    int32_t ll_pub_max_message_length(LLPub* p) noexcept
    int32_t ll_pub_max_payload_length(LLPub* p) noexcept
    int32_t ll_pub_session_id(LLPub* p) noexcept
    int64_t ll_pub_position(LLPub* p) noexcept
    int ll_sub_image_count(LLSub* s) noexcept
    int64_t ll_offer2(LLPub* p, const uint8_t* a, int32_t alen, const uint8_t* b, int32_t blen) noexcept
    int ll_poll(LLSub* s, ll_message_fn fn, void* ctx, int fragment_limit) noexcept


cdef class _Endpoint


cdef class Client:
    cdef LLClient* _c                   # owned; NULL once closed
    cdef readonly str aeron_dir         # the media driver's directory (AERON_DIR)
    cdef object _children               # WeakSet of open Publication/Subscription, closed before the client
    cdef object __weakref__
    cdef int _check_c(self) except -1
    cdef int _add_c(self, _Endpoint ep, str op, str channel, int32_t stream_id, double timeout) except -1


cdef class _Endpoint:
    cdef readonly Client client         # keeps the client (and its conductor) alive while we exist
    cdef readonly str channel           # the Aeron channel URI, e.g. aeron:ipc
    cdef readonly int32_t stream_id
    cdef LLEndpoint* _h                 # owned (an LLPub or an LLSub); NULL once closed
    cdef object __weakref__
    cdef int _open_c(self, LLClient* c, const string& channel, int32_t stream_id, long timeout_ms) except -1
    cdef bint _released_c(self) noexcept     # close() released the Aeron object
    cdef bint _connected_c(self) noexcept    # a peer is connected


cdef class Publication(_Endpoint):
    cdef LLPub* _pub(self) noexcept
    cdef int64_t offer_c(self, const uint8_t* hdr, int32_t hlen, const uint8_t* buf, int32_t blen) noexcept


cdef class Subscription(_Endpoint):
    cdef LLSub* _sub(self) noexcept
    cdef object _handler                # the Python callable of the poll in progress
    cdef object _error                  # exception raised by _handler during the poll in progress
    cdef bint _with_header              # call _handler(mv, session_id, position) instead of _handler(mv)
    cdef readonly int64_t frame_errors  # poll_frames: messages that were not a well-formed in-band frame
    cdef bytes _want                    # poll_reply_until: the subject (bytes) whose message ends the wait
    cdef object _hit                    # ... and that message's (payload, raw headers), once seen
    cdef int poll_c(self, object handler, int fragment_limit, bint with_header) except -1
    cdef int poll_fn_c(self, ll_message_fn fn, object handler, int fragment_limit) except -1
