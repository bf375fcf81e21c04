// virtio-fs (device id 26): one host directory shared with the guest, served in Kiln's own
// process by a FUSE server (fuse_server.h) that treats every request as hostile. Queue 0 is
// the high-priority queue (FORGET, INTERRUPT), queues 1..num_request_queues carry requests.
//
// INTERFACE CONTRACT (fixed; devices/virtio/fs/ implements it, vmm/virtio_devices.cc uses it).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "devices/virtio/device.h"

namespace kiln::virtio {

// How long the guest may cache what it learnt (FUSE entry/attribute timeouts, open flags):
// never (0 s, FOPEN_DIRECT_IO), auto (1 s, the page cache kept while the file is unchanged),
// always (a day, FOPEN_KEEP_CACHE).
enum class FsCache { kNever, kAuto, kAlways };

struct FsOptions {
  static constexpr size_t kMaxTagBytes = 36;  // virtio_fs_config.tag
  std::string tag;                            // 1..36 bytes, what `mount -t virtiofs TAG DIR` names
  std::string path;                           // the host directory (must exist and be a directory)
  bool read_only = false;
  FsCache cache = FsCache::kAuto;
  // Off by default: the guest cannot create set-uid/set-gid files or device nodes on the host.
  bool allow_setid_and_devices = false;
  uint32_t num_request_queues = 1;
};

class FuseServer;

class FsDevice : public VirtioDevice {
 public:
  // Opens the shared directory; throws UsageError (naming `path`) if it is missing or not a
  // directory, or if `tag` is empty or longer than kMaxTagBytes.
  explicit FsDevice(const FsOptions& options);
  ~FsDevice() override;

  uint32_t device_id() const override { return kDeviceIdFs; }
  uint64_t device_features() const override;
  size_t num_queues() const override;
  std::span<const uint8_t> config_bytes() const override;
  void reset() override;
  std::string process_queue(size_t index, Queue& queue, const GuestMemory& mem) override;
  // The FUSE session with its inodes and open files by path under the share (FuseServer::save;
  // a file the guest holds that was deleted on the host refuses the snapshot).
  std::optional<std::vector<uint8_t>> save_state() const override;
  void restore_state(std::span<const uint8_t> state, std::span<Queue> queues) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::virtio
