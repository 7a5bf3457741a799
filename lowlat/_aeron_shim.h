// Thin C++ layer between lowlat/_aeron.pyx and the Aeron 1.11.3 C++ client.
//
// Why a header: the client's poll/offer APIs are templates taking lambdas and std::function, which Cython
// cannot express.  Here they become plain functions over opaque structs and a C function pointer.
// Setup calls may throw (Cython declares them `except +`, so a C++ exception becomes a Python exception);
// hot-path calls (offer, poll) never throw: they catch and return a status code.
#ifndef LOWLAT_AERON_SHIM_H
#define LOWLAT_AERON_SHIM_H

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <chrono>

#include <Aeron.h>
#include <ControlledFragmentAssembler.h>

namespace lowlat_aeron {

// Offer results beyond Aeron's own (-1..-5): the message is longer than max_message_length, or the client
// threw something else (message in ll_last_error).
static const std::int64_t LL_MESSAGE_TOO_LONG = -100;
static const std::int64_t LL_OFFER_ERROR = -101;

// Called once per complete (re-assembled) message.  Return 0 to consume it, 1 to abort the poll without
// consuming it (it is delivered again on the next poll), 2 to stop the poll after consuming it.
typedef int (*ll_message_fn)(void *ctx, const std::uint8_t *buf, std::int32_t len, std::int32_t session_id,
                             std::int64_t position);

struct Client {
    aeron::Context context;     // must outlive `aeron`: aeron::Aeron keeps a reference to it
    std::shared_ptr<aeron::Aeron> aeron;
    std::mutex mu;
    std::string error;          // last error reported by the client conductor thread (driver timeout, ...)
    std::int64_t error_count = 0;
};

// What a publication and a subscription share: one owner (the Python object), released by ll_endpoint_close.
struct Endpoint {
    virtual ~Endpoint() = default;
};

struct Pub : Endpoint {
    explicit Pub(std::shared_ptr<aeron::Publication> p) : pub(std::move(p)) {}
    std::shared_ptr<aeron::Publication> pub;
};

struct Sub : Endpoint {
    explicit Sub(std::shared_ptr<aeron::Subscription> s)
        : sub(std::move(s)),
          assembler(new aeron::ControlledFragmentAssembler(
              [this](aeron::concurrent::AtomicBuffer &b, aeron::util::index_t o, aeron::util::index_t l,
                     aeron::Header &h) { return on_message(b, o, l, h); })),
          handler(assembler->handler()) {}
    std::shared_ptr<aeron::Subscription> sub;
    ll_message_fn fn = nullptr;     // set for the duration of one poll
    void *ctx = nullptr;
    std::unique_ptr<aeron::ControlledFragmentAssembler> assembler;
    aeron::controlled_poll_fragment_handler_t handler;   // assembler->handler(), built once

    aeron::ControlledPollAction on_message(aeron::concurrent::AtomicBuffer &buffer, aeron::util::index_t offset,
                                           aeron::util::index_t length, aeron::Header &header) {
        int rc = fn(ctx, buffer.buffer() + offset, length, header.sessionId(), header.position());
        if (rc == 1) return aeron::ControlledPollAction::ABORT;
        if (rc == 2) return aeron::ControlledPollAction::BREAK;
        return aeron::ControlledPollAction::CONTINUE;
    }
};

// Connect to the media driver whose files live in `dir`.  Throws (-> Python exception) if there is no driver.
inline Client *ll_connect(const std::string &dir, long driver_timeout_ms) {
    std::unique_ptr<Client> c(new Client());
    Client *raw = c.get();
    aeron::Context &ctx = c->context;
    ctx.aeronDir(dir);
    ctx.mediaDriverTimeout(driver_timeout_ms);
    // The default handler prints and calls exit(-1), which would kill the Python process: record instead.
    ctx.errorHandler([raw](const std::exception &e) {
        std::lock_guard<std::mutex> g(raw->mu);
        raw->error = e.what();
        raw->error_count++;
    });
    c->aeron = aeron::Aeron::connect(ctx);
    return c.release();
}

inline std::string ll_last_error(Client *c, std::int64_t *count) {
    std::lock_guard<std::mutex> g(c->mu);
    *count = c->error_count;
    return c->error;
}

inline void ll_close(Client *c) {
    // Aeron's destructor stops the conductor thread and releases everything the client still holds;
    // reset it explicitly before the Context member it refers to is destroyed.
    c->aeron.reset();
    delete c;
}

// Poll find() (sleeping 1 ms between checks) until it returns the driver's object or timeout_ms passes
// (then an empty shared_ptr).  find() throws on a driver error (e.g. invalid channel).
template <class Find>
inline auto ll_await_created(Find find, long timeout_ms) -> decltype(find()) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        auto p = find();
        if (p) return p;
        if (std::chrono::steady_clock::now() > deadline) return nullptr;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

// Register a publication / subscription and wait until the driver has created it.
// Returns nullptr on timeout; throws on a driver error (e.g. invalid channel).
inline Pub *ll_add_publication(Client *c, const std::string &channel, std::int32_t stream_id, long timeout_ms) {
    std::int64_t id = c->aeron->addPublication(channel, stream_id);
    auto p = ll_await_created([c, id] { return c->aeron->findPublication(id); }, timeout_ms);
    return p ? new Pub(std::move(p)) : nullptr;
}

inline Sub *ll_add_subscription(Client *c, const std::string &channel, std::int32_t stream_id, long timeout_ms) {
    std::int64_t id = c->aeron->addSubscription(channel, stream_id);
    auto s = ll_await_created([c, id] { return c->aeron->findSubscription(id); }, timeout_ms);
    return s ? new Sub(std::move(s)) : nullptr;
}

// Dropping the last shared_ptr releases the publication / subscription in the driver.
inline void ll_endpoint_close(Endpoint *e) noexcept { delete e; }

inline bool ll_pub_connected(Pub *p) noexcept { return p->pub->isConnected(); }
inline bool ll_pub_closed(Pub *p) noexcept { return p->pub->isClosed(); }
inline std::int32_t ll_pub_max_message_length(Pub *p) noexcept { return p->pub->maxMessageLength(); }
inline std::int32_t ll_pub_max_payload_length(Pub *p) noexcept { return p->pub->maxPayloadLength(); }
inline std::int32_t ll_pub_session_id(Pub *p) noexcept { return p->pub->sessionId(); }
inline std::int64_t ll_pub_position(Pub *p) noexcept { return p->pub->position(); }
inline int ll_sub_image_count(Sub *s) noexcept { return s->sub->imageCount(); }

// Offer one message made of up to two parts (an optional in-band header, then the payload), gathered by
// the client straight into the log buffer: no copy on our side.
inline std::int64_t ll_offer2(Pub *p, const std::uint8_t *a, std::int32_t alen, const std::uint8_t *b,
                              std::int32_t blen) noexcept {
    if (static_cast<std::int64_t>(alen) + blen > p->pub->maxMessageLength()) return LL_MESSAGE_TOO_LONG;
    try {
        if (alen == 0) {
            aeron::concurrent::AtomicBuffer buf(const_cast<std::uint8_t *>(b), static_cast<size_t>(blen));
            return p->pub->offer(buf, 0, blen);
        }
        std::array<aeron::concurrent::AtomicBuffer, 2> bufs = {{
            aeron::concurrent::AtomicBuffer(const_cast<std::uint8_t *>(a), static_cast<size_t>(alen)),
            aeron::concurrent::AtomicBuffer(const_cast<std::uint8_t *>(b), static_cast<size_t>(blen))}};
        return p->pub->offer(bufs.begin(), bufs.end());
    } catch (...) {
        return LL_OFFER_ERROR;
    }
}

// Poll up to `fragment_limit` fragments; fn sees whole messages (the assembler joins fragments).
// Returns the number of fragments consumed, or -1 if the client threw.
inline int ll_poll(Sub *s, ll_message_fn fn, void *ctx, int fragment_limit) noexcept {
    s->fn = fn;
    s->ctx = ctx;
    try {
        return s->sub->controlledPoll(s->handler, fragment_limit);
    } catch (...) {
        return -1;
    }
}

}  // namespace lowlat_aeron

#endif
