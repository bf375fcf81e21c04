#include "devices/virtio/rng/rng_device.h"

#include <spdlog/spdlog.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>

#include "devices/virtio/chain_io.h"
#include "base/error.h"

namespace kiln::virtio {

RngDevice::RngDevice(std::optional<TokenBucket> limit, Metrics* metrics)
    : limit_(std::move(limit)), metrics_(metrics) {
  const int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (fd < 0) throw_errno("timerfd_create for virtio-rng");
  timer_ = UniqueFd(fd);
}

uint64_t RngDevice::device_features() const {
  return feature(kFVersion1) | feature(kFRingEventIdx) | feature(kFRingIndirectDesc);
}

void RngDevice::read_config(uint64_t /*offset*/, std::span<uint8_t> data) const {
  std::fill(data.begin(), data.end(), 0);  // virtio-rng has no configuration space
}

void RngDevice::reset() {
  throttled_ = false;
  disarm_timer();
}

std::string RngDevice::process_queue(size_t /*index*/, Queue& queue, const GuestMemory& mem) {
  if (throttled_) return "";  // the timer will serve the new buffers
  return serve(queue, mem);
}

std::string RngDevice::process_host_events(std::span<Queue> queues, const GuestMemory& mem) {
  uint64_t expirations = 0;
  if (::read(timer_.get(), &expirations, sizeof(expirations)) < 0) return "";  // spurious
  throttled_ = false;
  return queues.empty() ? "" : serve(queues[0], mem);
}

std::string RngDevice::serve(Queue& queue, const GuestMemory& mem) {
  do {
    for (;;) {
      queue.pop(mem, pop_);
      if (pop_.kind == Queue::Pop::Kind::kEmpty) break;
      if (pop_.kind == Queue::Pop::Kind::kBrokenRing) return pop_.error;
      if (pop_.kind == Queue::Pop::Kind::kBadChain) {
        if (metrics_) Metrics::add(metrics_->entropy_errors);
        if (log_limit_.allow())
          spdlog::warn("virtio-rng: request failed ({} so far): {}", log_limit_.events(),
                       pop_.error);
        continue;
      }
      uint32_t len =
          static_cast<uint32_t>(std::min<uint64_t>(pop_.chain.writable_bytes, kMaxBytesPerRequest));
      if (limit_ && len > 0) {
        const uint64_t granted = limit_->take(len);
        if (granted == 0) {
          // Out of bytes: leave the request on the ring until the bucket has refilled.
          queue.undo_pop();
          throttled_ = true;
          if (metrics_) Metrics::add(metrics_->entropy_throttled);
          arm_timer(limit_->time_until(len));
          return "";
        }
        len = static_cast<uint32_t>(granted);
      }
      if (len == 0 || !fill(pop_.chain, len, mem)) {
        if (metrics_) Metrics::add(metrics_->entropy_errors);
        if (log_limit_.allow())
          spdlog::warn("virtio-rng: request with no writable buffer or outside guest memory");
        len = 0;
      } else if (metrics_) {
        Metrics::add(metrics_->entropy_bytes, len);
      }
      if (!queue.add_used(mem, pop_.chain.head, len)) return "used ring is outside guest memory";
    }
  } while (queue.enable_notification(mem));
  return "";
}

bool RngDevice::fill(const DescriptorChain& chain, uint32_t len, const GuestMemory& mem) {
  buffer_.resize(len);
  size_t got = 0;
  while (got < len) {
    const ssize_t n = ::getrandom(buffer_.data() + got, len - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return chain_write(mem, chain, 0, std::span<const uint8_t>(buffer_.data(), len));
}

void RngDevice::arm_timer(std::chrono::nanoseconds delay) {
  itimerspec spec{};
  spec.it_value.tv_sec = static_cast<time_t>(delay.count() / 1'000'000'000);
  spec.it_value.tv_nsec = static_cast<long>(delay.count() % 1'000'000'000);
  if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;
  ::timerfd_settime(timer_.get(), 0, &spec, nullptr);
}

void RngDevice::disarm_timer() {
  itimerspec spec{};
  ::timerfd_settime(timer_.get(), 0, &spec, nullptr);  // also clears a pending expiration
}

}  // namespace kiln::virtio
