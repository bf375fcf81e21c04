#include "devices/virtio/rng/rng_device.h"

#include <spdlog/spdlog.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>

#include "base/error.h"
#include "devices/virtio/chain_io.h"

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
  return drain_
      .drain(
          queue, mem,
          [&](const std::string& error) {
            if (metrics_) Metrics::add(metrics_->entropy_errors);
            if (log_limit_.allow())
              spdlog::warn("virtio-rng: request failed ({} so far): {}", log_limit_.events(),
                           error);
          },
          [&](const DescriptorChain& chain) { return serve_one(chain, mem); })
      .error;
}

DrainStep RngDevice::serve_one(const DescriptorChain& chain, const GuestMemory& mem) {
  uint32_t len =
      static_cast<uint32_t>(std::min<uint64_t>(chain.writable_bytes, kMaxBytesPerRequest));
  if (limit_ && len > 0) {
    const uint64_t granted = limit_->take(len);
    if (granted == 0) {
      // Out of bytes: leave the request on the ring until the bucket has refilled.
      throttled_ = true;
      if (metrics_) Metrics::add(metrics_->entropy_throttled);
      arm_timer(limit_->time_until(len));
      return DrainStep::requeue_and_stop();
    }
    len = static_cast<uint32_t>(granted);
  }
  if (len == 0 || !fill(chain, len, mem)) {
    if (metrics_) Metrics::add(metrics_->entropy_errors);
    if (log_limit_.allow())
      spdlog::warn("virtio-rng: request with no writable buffer or outside guest memory");
    len = 0;
  } else if (metrics_) {
    Metrics::add(metrics_->entropy_bytes, len);
  }
  return DrainStep::used(len);
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

std::optional<std::vector<uint8_t>> RngDevice::save_state() const {
  return versioned_empty_state();
}

void RngDevice::restore_state(std::span<const uint8_t> state, std::span<Queue>) {
  restore_versioned_empty_state(state, "virtio-rng state");
}

}  // namespace kiln::virtio
