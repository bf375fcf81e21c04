// virtio-fs, the virtio side: config space, queues, and each request chain handed to the FUSE
// server as iovecs over its readable and writable parts.
#include "devices/virtio/fs/fs_device.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "base/fd_limit.h"
#include "base/log_limiter.h"
#include "devices/virtio/chain_io.h"
#include "devices/virtio/fs/fuse_server.h"
#include "devices/virtio/queue_drain.h"
#include "devices/virtio/virtio_spec.h"

namespace kiln::virtio {

namespace {

// linux/virtio_fs.h
struct VirtioFsConfig {
  uint8_t tag[FsOptions::kMaxTagBytes];
  uint32_t num_request_queues;  // little-endian, as the host
} __attribute__((packed));
static_assert(sizeof(VirtioFsConfig) == 40);

constexpr uint32_t kMaxRequestQueues = 16;

FuseServerOptions server_options(const FsOptions& o) {
  FuseServerOptions s;
  s.read_only = o.read_only;
  s.cache = o.cache;
  s.allow_setid_and_devices = o.allow_setid_and_devices;
  // Each inode and each open handle is a host fd: half the fd limit for inodes, an eighth
  // for handles (vsock takes at most a quarter), within the protocol-side bounds.
  const uint64_t fds = fd_limit();
  s.max_inodes = static_cast<size_t>(std::clamp<uint64_t>(fds / 2, 64, uint64_t{1} << 20));
  s.max_handles = static_cast<size_t>(std::clamp<uint64_t>(fds / 8, 64, uint64_t{1} << 16));
  return s;
}

}  // namespace

struct FsDevice::Impl {
  Impl(const FsOptions& o) : options(o), server(o.path, server_options(o)) {}
  FsOptions options;
  FuseServer server;
  VirtioFsConfig config{};
  std::vector<QueueDrain> drains;
  std::vector<iovec> in, out;
  LogLimiter log_limit;
};

FsDevice::FsDevice(const FsOptions& options) {
  if (options.tag.empty() || options.tag.size() > FsOptions::kMaxTagBytes)
    throw UsageError("fs tag '" + options.tag + "': must be 1 to 36 bytes");
  if (options.num_request_queues < 1 || options.num_request_queues > kMaxRequestQueues)
    throw UsageError("fs num_request_queues " + std::to_string(options.num_request_queues) +
                     ": must be 1 to " + std::to_string(kMaxRequestQueues));
  impl_ = std::make_unique<Impl>(options);
  std::memcpy(impl_->config.tag, options.tag.data(), options.tag.size());
  impl_->config.num_request_queues = options.num_request_queues;
  impl_->drains.resize(num_queues());
}

FsDevice::~FsDevice() = default;

uint64_t FsDevice::device_features() const {
  return feature(kFVersion1) | feature(kFRingEventIdx) | feature(kFRingIndirectDesc);
}

size_t FsDevice::num_queues() const {
  return 1 + impl_->options.num_request_queues;  // hiprio + request queues
}

std::span<const uint8_t> FsDevice::config_bytes() const {
  return config_view(impl_->config);
}

void FsDevice::reset() {
  impl_->server.reset();
  for (QueueDrain& d : impl_->drains) d.reset();
}

std::string FsDevice::process_queue(size_t index, Queue& queue, const GuestMemory& mem) {
  Impl& s = *impl_;
  if (index >= s.drains.size()) return "queue index out of range";
  return s.drains[index]
      .drain(
          queue, mem,
          [&](const std::string& error) {
            if (s.log_limit.allow())
              spdlog::warn("virtio-fs {}: request failed ({} so far): {}", s.options.tag,
                           s.log_limit.events(), error);
          },
          [&](const DescriptorChain& chain) {
            s.in.clear();
            s.out.clear();
            chain_iovecs(mem, chain, false, 0, chain.readable_bytes, s.in);
            chain_iovecs(mem, chain, true, 0, chain.writable_bytes, s.out);
            return DrainStep::used(s.server.handle(s.in, s.out));
          })
      .error;
}

std::optional<std::vector<uint8_t>> FsDevice::save_state() const {
  snapshot::ByteWriter w;
  impl_->server.save(w);
  return w.take();
}

void FsDevice::restore_state(std::span<const uint8_t> state, std::span<Queue>) {
  snapshot::ByteReader r(state.data(), state.size(), "virtio-fs " + impl_->options.tag + " state");
  impl_->server.restore(r);
  for (QueueDrain& d : impl_->drains) d.reset();
}

}  // namespace kiln::virtio
