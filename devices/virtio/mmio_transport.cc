#include "devices/virtio/mmio_transport.h"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>

#include <cstring>

#include "base/error.h"
#include "base/snapshot/bytes.h"

namespace kiln::virtio {

namespace {

enum Reg : uint64_t {
  kRegMagic = 0x000,
  kRegVersion = 0x004,
  kRegDeviceId = 0x008,
  kRegVendorId = 0x00c,
  kRegDeviceFeatures = 0x010,
  kRegDeviceFeaturesSel = 0x014,
  kRegDriverFeatures = 0x020,
  kRegDriverFeaturesSel = 0x024,
  kRegQueueSel = 0x030,
  kRegQueueNumMax = 0x034,
  kRegQueueNum = 0x038,
  kRegQueueReady = 0x044,
  kRegQueueNotify = 0x050,
  kRegInterruptStatus = 0x060,
  kRegInterruptAck = 0x064,
  kRegStatus = 0x070,
  kRegQueueDescLow = 0x080,
  kRegQueueDescHigh = 0x084,
  kRegQueueDriverLow = 0x090,
  kRegQueueDriverHigh = 0x094,
  kRegQueueDeviceLow = 0x0a0,
  kRegQueueDeviceHigh = 0x0a4,
  kRegConfigGeneration = 0x0fc,
  kConfigSpace = 0x100,
};

void set_low(Gpa& addr, uint32_t v) {
  addr = (addr & ~Gpa{0xffffffff}) | v;
}
void set_high(Gpa& addr, uint32_t v) {
  addr = (addr & 0xffffffff) | (Gpa{v} << 32);
}

}  // namespace

MmioTransport::MmioTransport(std::shared_ptr<VirtioDevice> device, const GuestMemory& mem,
                             RaiseIrq raise_irq)
    : device_(std::move(device)),
      mem_(mem),
      raise_irq_(std::move(raise_irq)),
      queue_events_(device_->num_queues()),
      queues_(device_->num_queues()),
      deferred_kicks_(device_->num_queues()) {
  for (Queue& q : queues_) q.size = device_->max_queue_size();
  if (device_->host_event_fd() >= 0) {
    host_gate_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!host_gate_) throw_errno("epoll_create1 (virtio host events)");
  }
}

void MmioTransport::update_host_watch_locked() {
  const bool want = activated_ && !paused_;
  if (!host_gate_ || want == host_watched_) return;
  const int fd = device_->host_event_fd();
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (::epoll_ctl(host_gate_.get(), want ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev) < 0) {
    // Cannot happen for a valid fd; without the watch the device simply gets no host events.
    spdlog::error("virtio device {}: {}", device_->device_id(),
                  errno_message(want ? "watching its host fd" : "unwatching its host fd"));
    return;
  }
  host_watched_ = want;
}

uint32_t MmioTransport::status() const {
  std::lock_guard lock(mutex_);
  return status_;
}

void MmioTransport::read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  if (offset >= kConfigSpace) {
    std::lock_guard lock(mutex_);
    device_->read_config(offset - kConfigSpace, data);
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) return;  // registers are 32-bit only
  uint32_t value;
  if (offset == kRegInterruptStatus) {
    value = interrupt_status_.load();
  } else {
    std::lock_guard lock(mutex_);
    value = read_register(offset);
  }
  std::memcpy(data.data(), &value, 4);
}

void MmioTransport::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset >= kConfigSpace) {
    std::lock_guard lock(mutex_);
    device_->write_config(offset - kConfigSpace, data);
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) return;
  uint32_t value;
  std::memcpy(&value, data.data(), 4);
  if (offset == kRegInterruptAck) {
    interrupt_status_.fetch_and(~value);
    return;
  }
  if (offset == kRegQueueNotify) {
    // Reached only without an ioeventfd: hand the kick to the event loop all the same.
    if (value < queue_events_.size()) queue_events_[value].signal();
    return;
  }
  std::lock_guard lock(mutex_);
  write_register(offset, value);
}

Queue* MmioTransport::selected_queue() {
  return queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
}

uint32_t MmioTransport::read_register(uint64_t offset) {
  Queue* q = selected_queue();
  switch (offset) {
    case kRegMagic:
      return kMagic;
    case kRegVersion:
      return 2;
    case kRegDeviceId:
      return device_->device_id();
    case kRegVendorId:
      return kVendorId;
    case kRegDeviceFeatures:
      return device_features_sel_ < 2
                 ? static_cast<uint32_t>(device_->device_features() >> (32 * device_features_sel_))
                 : 0;
    case kRegQueueNumMax:
      return q ? device_->max_queue_size() : 0;
    case kRegQueueNum:
      return q ? q->size : 0;
    case kRegQueueReady:
      return q && q->ready;
    case kRegStatus:
      return status_;
    case kRegQueueDescLow:
      return q ? static_cast<uint32_t>(q->desc_table) : 0;
    case kRegQueueDescHigh:
      return q ? static_cast<uint32_t>(q->desc_table >> 32) : 0;
    case kRegQueueDriverLow:
      return q ? static_cast<uint32_t>(q->avail_ring) : 0;
    case kRegQueueDriverHigh:
      return q ? static_cast<uint32_t>(q->avail_ring >> 32) : 0;
    case kRegQueueDeviceLow:
      return q ? static_cast<uint32_t>(q->used_ring) : 0;
    case kRegQueueDeviceHigh:
      return q ? static_cast<uint32_t>(q->used_ring >> 32) : 0;
    case kRegConfigGeneration:
      return config_generation_;
    default:
      return 0;
  }
}

void MmioTransport::write_register(uint64_t offset, uint32_t value) {
  if (offset == kRegStatus) return write_status(value);
  if (offset == kRegDeviceFeaturesSel) {
    device_features_sel_ = value;
    return;
  }
  if (offset == kRegDriverFeaturesSel) {
    driver_features_sel_ = value;
    return;
  }
  if (offset == kRegQueueSel) {
    queue_sel_ = value;
    return;
  }
  // Feature and queue setup belong to the driver's initialization, before DRIVER_OK.
  const bool features_phase = (status_ & kStatusDriver) && !(status_ & kStatusFeaturesOk);
  const bool setup_phase = (status_ & kStatusFeaturesOk) && !(status_ & kStatusDriverOk);
  if (offset == kRegDriverFeatures) {
    if (!features_phase || driver_features_sel_ >= 2) return;
    const int shift = 32 * static_cast<int>(driver_features_sel_);
    driver_features_ =
        (driver_features_ & ~(uint64_t{0xffffffff} << shift)) | (uint64_t{value} << shift);
    return;
  }
  Queue* q = selected_queue();
  if (!q || !setup_phase) return;
  if (offset == kRegQueueReady) {
    if (value == 1 && !q->ready) {
      const std::string error = q->validate(mem_);
      if (!error.empty()) return fail_locked("queue " + std::to_string(queue_sel_) + ": " + error);
    }
    q->ready = value == 1;
    return;
  }
  if (q->ready) return;  // a live queue's layout cannot change
  switch (offset) {
    case kRegQueueNum:
      if (value == 0 || value > device_->max_queue_size() || (value & (value - 1)) != 0) return;
      q->size = static_cast<uint16_t>(value);
      return;
    case kRegQueueDescLow:
      return set_low(q->desc_table, value);
    case kRegQueueDescHigh:
      return set_high(q->desc_table, value);
    case kRegQueueDriverLow:
      return set_low(q->avail_ring, value);
    case kRegQueueDriverHigh:
      return set_high(q->avail_ring, value);
    case kRegQueueDeviceLow:
      return set_low(q->used_ring, value);
    case kRegQueueDeviceHigh:
      return set_high(q->used_ring, value);
    default:
      return;
  }
}

void MmioTransport::write_status(uint32_t value) {
  if (value == 0) return reset_locked();
  if (value & kStatusFailed) {
    status_ |= kStatusFailed;
    return;
  }
  // DEVICE_NEEDS_RESET is the device's bit: drivers that read-modify-write Status echo it back,
  // but cannot set it, and nothing but a reset (or FAILED) leaves that state.
  if (status_ & kStatusDeviceNeedsReset) return;
  value &= ~kStatusDeviceNeedsReset;
  // The driver only adds bits, one step at a time, in the order the spec gives.
  if ((value & status_) != status_) return;
  const uint32_t added = value & ~status_;
  auto has = [&](uint32_t bit) { return (value & bit) != 0; };
  if ((added & kStatusDriver) && !has(kStatusAcknowledge)) return;
  if (added & kStatusFeaturesOk) {
    if (!has(kStatusDriver)) return;
    const uint64_t offered = device_->device_features();
    if ((driver_features_ & ~offered) != 0 || !(driver_features_ & feature(kFVersion1))) {
      if (features_log_.allow())
        spdlog::warn(
            "virtio device {}: driver features {:#x} refused (offered {:#x}, VERSION_1 "
            "required; {} refusals so far)",
            device_->device_id(), driver_features_, offered, features_log_.events());
      value &= ~kStatusFeaturesOk;  // the driver reads it back and gives up
    }
  }
  if (added & kStatusDriverOk) {
    if (!has(kStatusFeaturesOk)) return;
    for (Queue& q : queues_)
      q.set_features(driver_features_ & feature(kFRingEventIdx),
                     driver_features_ & feature(kFRingIndirectDesc));
    device_->activate(driver_features_);
    activated_ = true;
    update_host_watch_locked();
  }
  status_ = value;
}

void MmioTransport::reset_locked() {
  device_->reset();
  for (Queue& q : queues_) {
    q.reset();
    q.size = device_->max_queue_size();
  }
  status_ = 0;
  driver_features_ = 0;
  device_features_sel_ = driver_features_sel_ = queue_sel_ = 0;
  activated_ = false;
  update_host_watch_locked();
  interrupt_status_.store(0);
}

void MmioTransport::fail_locked(const std::string& why) {
  if (status_ & kStatusDeviceNeedsReset) return;
  if (failure_log_.allow())
    spdlog::error("virtio device {}: {}; device needs reset ({} failures so far)",
                  device_->device_id(), why, failure_log_.events());
  status_ |= kStatusDeviceNeedsReset;
  activated_ = false;  // no queue or host work until the driver resets the device
  update_host_watch_locked();
  raise(kInterruptConfigChange);
}

void MmioTransport::raise(uint32_t bits) {
  interrupt_status_.fetch_or(bits);
  raise_irq_();
}

void MmioTransport::process_queue(size_t index) {
  std::lock_guard lock(mutex_);
  if (index >= queues_.size()) return;
  if (paused_) {
    deferred_kicks_[index] = true;  // re-signalled by resume()
    return;
  }
  if (!activated_ || !queues_[index].ready) return;
  Queue& q = queues_[index];
  const std::string error = device_->process_queue(index, q, mem_);
  if (!error.empty()) return fail_locked(error);
  if (q.needs_interrupt(mem_)) raise(kInterruptUsedRing);
}

void MmioTransport::process_host_events() {
  std::lock_guard lock(mutex_);
  if (!activated_ || paused_) return;  // a stale wake-up: the gate no longer holds the fd
  const std::string error = device_->process_host_events(queues_, mem_);
  if (!error.empty()) return fail_locked(error);
  bool interrupt = false;
  for (Queue& q : queues_)
    if (q.ready && q.needs_interrupt(mem_)) interrupt = true;
  if (interrupt) raise(kInterruptUsedRing);
}

void MmioTransport::pause() {
  std::lock_guard lock(mutex_);  // waits for queue or host work in progress
  paused_ = true;
  update_host_watch_locked();
}

void MmioTransport::resume() {
  std::lock_guard lock(mutex_);
  if (!paused_) return;
  paused_ = false;
  update_host_watch_locked();
  for (size_t i = 0; i < deferred_kicks_.size(); ++i) {
    if (!deferred_kicks_[i]) continue;
    deferred_kicks_[i] = false;
    queue_events_[i].signal();  // the event loop processes it as if the guest kicked now
  }
}

void MmioTransport::config_changed() {
  std::lock_guard lock(mutex_);
  ++config_generation_;
  if (status_ & kStatusDriverOk) raise(kInterruptConfigChange);
}

namespace {
constexpr uint16_t kStateVersion = 1;
constexpr size_t kMaxDeviceState = 64u << 20;  // a device's own (virtio-fs: its inodes' paths)
constexpr uint32_t kStatusBits = kStatusAcknowledge | kStatusDriver | kStatusDriverOk |
                                 kStatusFeaturesOk | kStatusDeviceNeedsReset | kStatusFailed;
}  // namespace

std::string MmioTransport::device_name() const {
  switch (device_->device_id()) {
    case kDeviceIdNet:
      return "virtio-net";
    case kDeviceIdBlock:
      return "virtio-blk";
    case kDeviceIdConsole:
      return "virtio-console";
    case kDeviceIdRng:
      return "virtio-rng";
    case kDeviceIdVsock:
      return "virtio-vsock";
    case kDeviceIdFs:
      return "virtio-fs";
    default:
      return "virtio device " + std::to_string(device_->device_id());
  }
}

std::vector<uint8_t> MmioTransport::save() const {
  std::lock_guard lock(mutex_);
  const std::optional<std::vector<uint8_t>> device_state = device_->save_state();
  if (!device_state) throw kiln::Error(device_name() + " cannot be snapshotted yet");
  snapshot::ByteWriter w;
  w.u16(kStateVersion);
  w.u32(device_->device_id());
  w.u32(status_);
  w.u32(device_features_sel_);
  w.u32(driver_features_sel_);
  w.u64(driver_features_);
  w.u32(queue_sel_);
  w.u32(config_generation_);
  w.u8(activated_ ? 1 : 0);
  w.u32(interrupt_status_.load());
  w.u32(static_cast<uint32_t>(queues_.size()));
  for (const Queue& q : queues_) q.save(w);
  w.blob(
      std::string_view(reinterpret_cast<const char*>(device_state->data()), device_state->size()));
  return w.take();
}

void MmioTransport::restore(std::span<const uint8_t> state) {
  const std::string what = device_name() + " state";
  snapshot::ByteReader r(state.data(), state.size(), what);
  r.expect_version(kStateVersion);
  if (const uint32_t id = r.u32(); id != device_->device_id())
    throw kiln::Error(what + ": saved from virtio device " + std::to_string(id) +
                      " (the configuration's devices differ from the snapshot's)");
  const uint32_t status = r.u32(), device_sel = r.u32(), driver_sel = r.u32();
  const uint64_t driver_features = r.u64();
  const uint32_t queue_sel = r.u32(), generation = r.u32();
  const uint8_t activated = r.u8();
  const uint32_t interrupts = r.u32();
  if (const uint32_t n = r.u32(); n != queues_.size())
    throw kiln::Error(what + ": " + std::to_string(n) + " queues, the device has " +
                      std::to_string(queues_.size()));
  std::vector<Queue> queues;
  for (size_t i = 0; i < queues_.size(); ++i)
    queues.push_back(
        Queue::restore(r, device_->max_queue_size(), mem_, what + ": queue " + std::to_string(i)));
  const std::string device_state = r.blob(kMaxDeviceState);
  r.finish();
  if ((status & ~kStatusBits) || (driver_features & ~device_->device_features()) || activated > 1 ||
      (interrupts & ~(kInterruptUsedRing | kInterruptConfigChange)) ||
      (activated && (!(status & kStatusDriverOk) || (status & kStatusDeviceNeedsReset))))
    throw kiln::Error(what + ": a status, feature or interrupt value the device never holds");
  std::lock_guard lock(mutex_);
  device_->restore_state(
      std::span(reinterpret_cast<const uint8_t*>(device_state.data()), device_state.size()),
      queues);
  queues_ = std::move(queues);
  status_ = status;
  device_features_sel_ = device_sel;
  driver_features_sel_ = driver_sel;
  driver_features_ = driver_features;
  queue_sel_ = queue_sel;
  config_generation_ = generation;
  activated_ = activated == 1;
  interrupt_status_.store(interrupts);
  if (activated_) device_->activate(driver_features_);
  update_host_watch_locked();
  // Whatever the driver added meanwhile (or a kick that waited in the paused VM) is looked at
  // once the VM runs.
  for (size_t i = 0; i < queues_.size(); ++i)
    if (queues_[i].ready) queue_events_[i].signal();
}

}  // namespace kiln::virtio
