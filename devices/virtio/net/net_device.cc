#include "devices/virtio/net/net_device.h"

#include <fmt/format.h>
#include <linux/if_tun.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>

#include <cstring>

#include "base/error.h"
#include "devices/virtio/chain_io.h"
#include "devices/virtio/net/virtio_net_spec.h"

namespace kiln::virtio {

using namespace net;

namespace {

constexpr uint64_t kHdr = Tap::kVnetHdrSize;
// Room for the rest of a frame that does not fit the guest's buffer (so it is detected, never
// silently cut short by the TAP).
constexpr size_t kOverflowBytes = kMaxFrame + kHdr;
// Frames dropped as too long per wake-up at most: a guest posting tiny buffers while the host
// floods the TAP must not keep the event loop here. The TAP stays polled, so the rest follows.
constexpr int kMaxDropsPerWakeup = 256;

template <typename T>
void put(std::vector<uint8_t>& bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

}  // namespace

NetDevice::NetDevice(const NetOptions& options)
    : options_(options),
      tap_(options.tap_name),
      rx_limiter_(options.rx_bandwidth, options.rx_ops),
      tx_limiter_(options.tx_bandwidth, options.tx_ops),
      overflow_(kOverflowBytes) {
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) throw_errno("epoll_create1");
  // The limiters' timers are readable only once they fired: always watched.
  watch(rx_limiter_.fd());
  watch(tx_limiter_.fd());
  config_.assign(kConfigSize, 0);
  if (options_.mac) std::memcpy(config_.data() + kConfigMac, options_.mac->bytes.data(), 6);
  put<uint16_t>(config_, kConfigStatus, kStatusLinkUp);
  put<uint16_t>(config_, kConfigMaxPairs, 1);
  put<uint16_t>(config_, kConfigMtu, options_.mtu.value_or(0));
}

uint32_t NetDevice::device_id() const {
  return kDeviceIdNet;
}

uint64_t NetDevice::device_features() const {
  // The TAP takes partially checksummed and GSO frames from the guest (TX) in any case; what it
  // may hand to the guest (RX) is what TUNSETOFFLOAD accepted.
  uint64_t f = feature(kFVersion1) | feature(kFRingEventIdx) | feature(kFRingIndirectDesc) |
               feature(kFStatus) | feature(kFCsum) | feature(kFHostTso4) | feature(kFHostTso6);
  if (options_.mac) f |= feature(kFMac);
  if (options_.mtu) f |= feature(kFMtu);
  const unsigned tap = tap_.supported_offloads();
  if (tap & TUN_F_CSUM) f |= feature(kFGuestCsum);
  if (tap & TUN_F_TSO4) f |= feature(kFGuestTso4);
  if (tap & TUN_F_TSO6) f |= feature(kFGuestTso6);
  if (tap & TUN_F_UFO) f |= feature(kFGuestUfo);
  return f;
}

void NetDevice::activate(uint64_t features) {
  unsigned offloads = 0;
  if (features & feature(kFGuestCsum)) {
    offloads |= TUN_F_CSUM;  // segmentation offloads need checksum offload
    if (features & feature(kFGuestTso4)) offloads |= TUN_F_TSO4;
    if (features & feature(kFGuestTso6)) offloads |= TUN_F_TSO6;
    if (features & feature(kFGuestUfo)) offloads |= TUN_F_UFO;
  }
  if (tap_.set_offloads(offloads)) {
    tap_offloads_ = offloads;
  } else {
    spdlog::error("virtio-net {}: {}", tap_.name(),
                  errno_message(fmt::format("TUNSETOFFLOAD {:#x}", offloads)));
  }
  set_rx_polling(true);  // the first event finds out whether the guest gave buffers
}

void NetDevice::reset() {
  set_rx_polling(false);
  if (tap_.set_offloads(0)) tap_offloads_ = 0;
}

std::string NetDevice::process_queue(size_t index, Queue& queue, const GuestMemory& mem) {
  if (index == kRxQueue) return process_rx(queue, mem);  // new buffers: deliver waiting frames
  if (index == kTxQueue) return tx_limiter_.blocked() ? "" : process_tx(queue, mem);
  return "";
}

std::string NetDevice::process_host_events(std::span<Queue> queues, const GuestMemory& mem) {
  if (queues.size() <= kTxQueue) return "";
  if (tx_limiter_.on_timer()) {
    std::string error = process_tx(queues[kTxQueue], mem);
    if (!error.empty()) return error;
  }
  rx_limiter_.on_timer();
  return process_rx(queues[kRxQueue], mem);
}

void NetDevice::update_rate_limiters(const BucketUpdate& rx_bandwidth, const BucketUpdate& rx_ops,
                                     const BucketUpdate& tx_bandwidth, const BucketUpdate& tx_ops) {
  rx_limiter_.update(rx_bandwidth, rx_ops);
  tx_limiter_.update(tx_bandwidth, tx_ops);
}

std::string NetDevice::process_rx(Queue& queue, const GuestMemory& mem) {
  if (!queue.ready) {
    set_rx_polling(false);
    return "";
  }
  if (rx_limiter_.blocked()) {  // the TAP stays unread until the limiter's timer fires
    set_rx_polling(false);
    return "";
  }
  int drops = 0;
  const DrainResult result = rx_drain_.drain(
      queue, mem,
      [&](const std::string& error) {
        count(&Metrics::net_rx_errors);
        warn("bad RX chain: " + error);
      },
      [&](const DescriptorChain& chain) {
        if (rx_limiter_.ready()) return receive_frame(chain, mem, drops);
        count(&Metrics::net_rx_throttled);
        set_rx_polling(false);
        return DrainStep::requeue_and_stop();
      });
  if (!result.error.empty()) return fail(result.error);
  if (result.idle) {
    // No buffers: stop polling the TAP until the guest's RX kick brings some.
    if (rx_polling_) count(&Metrics::net_rx_no_buffers);
    set_rx_polling(false);
  }
  return "";
}

DrainStep NetDevice::receive_frame(const DescriptorChain& chain, const GuestMemory& mem,
                                   int& drops) {
  if (chain.readable_bytes != 0 || chain.writable_bytes < kHdr) {
    count(&Metrics::net_rx_errors);
    warn(fmt::format("RX chain with {} device-readable and {} writable bytes returned unused",
                     chain.readable_bytes, chain.writable_bytes));
    return DrainStep::used(0);
  }
  iov_.clear();
  if (!chain_iovecs(mem, chain, true, 0, chain.writable_bytes, iov_)) return DrainStep::used(0);
  iov_.push_back({overflow_.data(), overflow_.size()});
  const ssize_t n = tap_.read_frame(iov_.data(), static_cast<int>(iov_.size()));
  if (n <= 0) {    // the buffer stays the guest's next one
    if (n == 0) {  // nothing waiting: sleep until the TAP is readable
      set_rx_polling(true);
      return DrainStep::requeue_and_stop();
    }
    count(&Metrics::net_rx_errors);
    warn(errno_message("read from the TAP"));
    set_rx_polling(false);  // retried on the next RX kick
    return DrainStep::requeue_and_stop();
  }
  const uint64_t len = static_cast<uint64_t>(n);
  if (len > chain.writable_bytes) {
    // Frame too long for this buffer: drop the frame, keep the buffer.
    count(&Metrics::net_rx_dropped);
    warn(fmt::format("{}-byte frame dropped: the guest's RX buffer holds {}", len - kHdr,
                     chain.writable_bytes - kHdr));
    if (++drops == kMaxDropsPerWakeup) {
      set_rx_polling(true);
      return DrainStep::requeue_and_stop();
    }
    return DrainStep::requeue();
  }
  // One buffer per frame (no VIRTIO_NET_F_MRG_RXBUF): num_buffers is 1. The TAP skips it.
  const uint16_t one = 1;
  chain_write(mem, chain, kNumBuffersOffset,
              std::span(reinterpret_cast<const uint8_t*>(&one), sizeof(one)));
  rx_limiter_.charge(len - kHdr);
  count(&Metrics::net_rx_frames);
  count(&Metrics::net_rx_bytes, len - kHdr);
  return DrainStep::used(static_cast<uint32_t>(len));
}

std::string NetDevice::process_tx(Queue& queue, const GuestMemory& mem) {
  const DrainResult result = tx_drain_.drain(
      queue, mem,
      [&](const std::string& error) {
        count(&Metrics::net_tx_errors);
        warn("bad TX chain: " + error);
      },
      [&](const DescriptorChain& chain) {
        const uint64_t len = chain.readable_bytes;
        iov_.clear();
        if (len <= kHdr || len > kHdr + kMaxFrame) {
          count(&Metrics::net_tx_errors);
          warn(fmt::format("TX chain of {} bytes dropped (header {} + frame up to {})", len, kHdr,
                           kMaxFrame));
        } else if (!tx_limiter_.consume(len - kHdr)) {
          count(&Metrics::net_tx_throttled);
          return DrainStep::requeue_and_stop();  // the frame waits on the ring for the timer
        } else if (!chain_iovecs(mem, chain, false, 0, len, iov_) ||
                   tap_.write_frame(iov_.data(), static_cast<int>(iov_.size())) < 0) {
          count(&Metrics::net_tx_errors);
          warn(errno_message(fmt::format("{}-byte frame not written to the TAP", len - kHdr)));
        } else {
          count(&Metrics::net_tx_frames);
          count(&Metrics::net_tx_bytes, len - kHdr);
        }
        return DrainStep::used(0);
      });
  return result.error.empty() ? "" : fail(result.error);
}

void NetDevice::watch(int fd) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0)
    throw_errno("epoll_ctl for virtio-net");
}

void NetDevice::set_rx_polling(bool on) {
  if (on == rx_polling_) return;
  epoll_event ev{};
  ev.events = EPOLLIN;
  if (::epoll_ctl(epoll_.get(), on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, tap_.fd(), &ev) < 0) {
    spdlog::error("virtio-net {}: {}", tap_.name(), errno_message("epoll_ctl"));
    return;
  }
  rx_polling_ = on;
}

std::string NetDevice::fail(std::string why) {
  set_rx_polling(false);
  return why;
}

void NetDevice::warn(const std::string& what) {
  if (log_limit_.allow())
    spdlog::warn("virtio-net {}: {} ({} so far)", tap_.name(), what, log_limit_.events());
}

std::optional<std::vector<uint8_t>> NetDevice::save_state() const {
  return versioned_empty_state();
}

void NetDevice::restore_state(std::span<const uint8_t> state, std::span<Queue>) {
  restore_versioned_empty_state(state, "virtio-net " + tap_.name() + " state");
}

}  // namespace kiln::virtio
