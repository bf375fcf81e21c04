#include "vmm/virtio_devices.h"

#include <sys/epoll.h>

#include <algorithm>

#include "base/error.h"
#include "devices/virtio/balloon/balloon_device.h"
#include "devices/virtio/fs/fs_device.h"
#include "devices/virtio/net/net_device.h"
#include "devices/virtio/rng/rng_device.h"
#include "devices/virtio/vsock/vsock_device.h"

namespace kiln {

namespace {

constexpr uint64_t kPagesPerMib = 256;  // the balloon counts 4 KiB pages

std::optional<BucketSpec> bucket_spec(const std::optional<TokenBucketConfig>& b) {
  if (!b) return std::nullopt;
  return BucketSpec{b->size, std::chrono::milliseconds(b->refill_time_ms), b->one_time_burst};
}

BucketUpdate bucket_update(const std::optional<std::optional<TokenBucketConfig>>& u) {
  if (!u) return BucketUpdate::keep();
  if (!*u) return BucketUpdate::disable();
  return BucketUpdate::set(*bucket_spec(*u));
}

}  // namespace

VirtioDevices::VirtioDevices(const VmConfig& config, const GuestMemory& mem, Metrics& metrics,
                             ConsoleHooks console) {
  for (size_t i = 0; i < config.drives.size(); ++i) {
    const DriveConfig& d = config.drives[i];
    if (d.is_root && i != 0) throw UsageError("the root drive must be the first drive");
    root_drive_ |= d.is_root;
    auto block = std::make_shared<virtio::BlockDevice>(
        virtio::BlockOptions{d.path, d.read_only, d.id, bucket_spec(d.rate_limiter.bandwidth),
                             bucket_spec(d.rate_limiter.ops)});
    block->set_metrics(&metrics);
    auto transport = add(block, mem);
    drives_.push_back({d.id, std::move(block), std::move(transport)});
  }
  for (const NetConfig& n : config.nets) {
    auto net = std::make_shared<virtio::NetDevice>(virtio::NetOptions{
        n.host_dev_name, n.guest_mac, n.mtu, bucket_spec(n.rx_rate_limiter.bandwidth),
        bucket_spec(n.rx_rate_limiter.ops), bucket_spec(n.tx_rate_limiter.bandwidth),
        bucket_spec(n.tx_rate_limiter.ops)});
    net->set_metrics(&metrics);
    auto transport = add(net, mem);
    nets_.push_back({n.iface_id, std::move(net), std::move(transport)});
  }
  if (config.entropy) {
    std::optional<TokenBucket> limit;
    if (const auto& b = config.entropy->bandwidth)
      limit.emplace(b->size, std::chrono::milliseconds(b->refill_time_ms), b->one_time_burst);
    add(std::make_shared<virtio::RngDevice>(std::move(limit), &metrics), mem);
  }
  if (config.vsock) {
    add(std::make_shared<virtio::VsockDevice>(
            virtio::VsockOptions{config.vsock->guest_cid, config.vsock->uds_path}),
        mem);
  }
  for (const FsConfig& f : config.fs) {
    const virtio::FsCache cache = f.cache == FsCacheMode::kNever    ? virtio::FsCache::kNever
                                  : f.cache == FsCacheMode::kAlways ? virtio::FsCache::kAlways
                                                                    : virtio::FsCache::kAuto;
    add(std::make_shared<virtio::FsDevice>(virtio::FsOptions{
            f.tag, f.path, f.read_only, cache, f.allow_setid_and_devices, f.num_request_queues}),
        mem);
  }
  if (const auto& b = config.balloon) {
    balloon_ = std::make_shared<virtio::BalloonDevice>(
        virtio::BalloonOptions{static_cast<uint32_t>(b->amount_mib * kPagesPerMib),
                               b->deflate_on_oom, b->stats_polling_interval_s,
                               b->free_page_reporting},
        &metrics);
    balloon_transport_ = add(balloon_, mem);
  }
  if (config.console == ConsoleMode::kVirtio) {
    console_ = std::make_shared<virtio::ConsoleDevice>(
        std::move(console.write), std::move(console.rx_space), console.cols, console.rows);
    console_transport_ = add(console_, mem);
  }
}

std::shared_ptr<virtio::MmioTransport> VirtioDevices::add(
    std::shared_ptr<virtio::VirtioDevice> device, const GuestMemory& mem) {
  Slot slot;
  slot.resources = allocator_.allocate_mmio(virtio::MmioTransport::kWindowSize);
  slot.irq = std::make_shared<EventFd>();
  slot.transport = std::make_shared<virtio::MmioTransport>(std::move(device), mem,
                                                           [irq = slot.irq] { irq->signal(); });
  slots_.push_back(std::move(slot));
  return slots_.back().transport;
}

std::string VirtioDevices::kernel_parameters() const {
  std::string params;
  for (const Slot& s : slots_)
    params += (params.empty() ? "" : " ") + s.resources.kernel_parameter();
  if (root_drive_) params += " root=/dev/vda rw";
  return params;
}

void VirtioDevices::attach(VmFd& vm, Bus& mmio_bus, EventLoop& loop) {
  for (const Slot& s : slots_) {
    vm.register_irqfd(s.irq->fd(), s.resources.irq);
    mmio_bus.insert(s.resources.base, s.resources.size, s.transport);
    const auto& events = s.transport->queue_events();
    for (size_t q = 0; q < events.size(); ++q) {
      vm.register_ioeventfd(events[q].fd(),
                            s.resources.base + virtio::MmioTransport::kQueueNotifyOffset, 4, q);
      loop.add(events[q].fd(), EPOLLIN, [transport = s.transport, q](uint32_t) {
        transport->queue_events()[q].consume();
        transport->process_queue(q);
      });
    }
    // The transport's gate over the device's host fd: readable only while the device is live.
    if (const int fd = s.transport->host_event_fd(); fd >= 0) {
      loop.add(fd, EPOLLIN,
               [transport = s.transport](uint32_t) { transport->process_host_events(); });
    }
  }
}

}  // namespace kiln

namespace kiln {

void VirtioDevices::pause() {
  for (const Slot& s : slots_) s.transport->pause();
}

void VirtioDevices::resume() {
  for (const Slot& s : slots_) s.transport->resume();
}

void VirtioDevices::console_resized(uint16_t cols, uint16_t rows) {
  if (!console_) return;
  console_->set_size(cols, rows);
  console_transport_->config_changed();
}

const VirtioDevices::Drive* VirtioDevices::find_drive(const std::string& id) const {
  for (const Drive& d : drives_)
    if (!d.id.empty() && d.id == id) return &d;
  return nullptr;
}

std::shared_ptr<virtio::BlockDevice> VirtioDevices::drive(const std::string& id) const {
  const Drive* d = find_drive(id);
  return d ? d->device : nullptr;
}

void VirtioDevices::replace_drive(const std::string& id, const std::string& path) {
  const Drive* d = find_drive(id);
  if (!d) throw UsageError("no drive with id " + id);
  virtio::BlockDevice& block = *d->device;
  // Opening, checking and locking the new image can take a while (a slow file system): it runs
  // without the transport lock, so the guest's I/O goes on meanwhile. Only the swap excludes
  // queue processing; the old image is closed after it.
  virtio::BlockBacking next = block.open_replacement(path);
  virtio::BlockBacking old;
  d->transport->with_device(
      [&](virtio::VirtioDevice&) { old = block.swap_backing(std::move(next)); });
  old = {};
  d->transport->config_changed();
}

void VirtioDevices::set_balloon_target(uint64_t amount_mib) {
  if (!balloon_) throw UsageError("there is no balloon device");
  balloon_transport_->with_device([&](virtio::VirtioDevice&) {
    balloon_->set_target_pages(static_cast<uint32_t>(amount_mib * kPagesPerMib));
  });
  balloon_transport_->config_changed();
}

void VirtioDevices::set_balloon_stats_interval(uint32_t seconds) {
  if (!balloon_) throw UsageError("there is no balloon device");
  balloon_transport_->with_device(
      [&](virtio::VirtioDevice&) { balloon_->set_stats_interval(seconds); });
}

BalloonStatsInfo VirtioDevices::balloon_stats() const {
  if (!balloon_) throw UsageError("there is no balloon device");
  BalloonStatsInfo info;
  balloon_transport_->with_device([&](virtio::VirtioDevice&) {
    info.target_pages = balloon_->target_pages();
    info.actual_pages = balloon_->actual_pages();
    const auto& values = balloon_->stats().values;
    for (size_t tag = 0; tag < values.size(); ++tag)
      if (values[tag]) info.values[static_cast<uint16_t>(tag)] = *values[tag];
  });
  return info;
}

void VirtioDevices::update_drive_rate_limiter(const std::string& id,
                                              const RateLimiterUpdate& update) {
  const Drive* d = find_drive(id);
  if (!d) throw UsageError("no drive with id " + id);
  d->transport->with_device([&](virtio::VirtioDevice&) {
    d->device->update_rate_limiter(bucket_update(update.bandwidth), bucket_update(update.ops));
  });
}

void VirtioDevices::update_net_rate_limiters(const std::string& iface_id,
                                             const RateLimiterUpdate& rx,
                                             const RateLimiterUpdate& tx) {
  auto it = std::find_if(nets_.begin(), nets_.end(),
                         [&](const Net& n) { return n.iface_id == iface_id; });
  if (it == nets_.end()) throw UsageError("no network interface with id " + iface_id);
  it->transport->with_device([&](virtio::VirtioDevice&) {
    it->device->update_rate_limiters(bucket_update(rx.bandwidth), bucket_update(rx.ops),
                                     bucket_update(tx.bandwidth), bucket_update(tx.ops));
  });
}

namespace {
std::string virtio_section(size_t slot) {
  return "device/virtio/" + std::to_string(slot);
}
}  // namespace

void VirtioDevices::save(snapshot::StateWriter& writer) const {
  // Every device's state first: a device that cannot be snapshotted refuses before any is added.
  std::vector<std::vector<uint8_t>> states;
  for (const Slot& slot : slots_) {
    try {
      states.push_back(slot.transport->save());
    } catch (const Error& e) {
      throw UsageError(std::string("snapshot: ") + e.what());
    }
  }
  for (size_t i = 0; i < states.size(); ++i) writer.add(virtio_section(i), std::move(states[i]));
}

void VirtioDevices::restore(const snapshot::StateFile& state) {
  if (state.has(virtio_section(slots_.size())))
    throw UsageError("snapshot: it has more virtio devices than its configuration");
  for (size_t i = 0; i < slots_.size(); ++i) {
    const std::string name = virtio_section(i);
    if (!state.has(name))
      throw UsageError("snapshot: it has no " + slots_[i].transport->device_name() + " (section " +
                       name + ")");
    slots_[i].transport->restore(state.section(name));
  }
}

}  // namespace kiln
