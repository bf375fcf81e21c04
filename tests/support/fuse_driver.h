// Host-side FUSE-over-virtio driver for tests and benchmarks: a virtio-fs device behind its
// mmio transport, driven through the host-side virtqueue driver (virtqueue_driver.h) the way
// Linux's virtiofs driver does: one chain per request, the readable part fuse_in_header +
// arguments (+ WRITE data in separate buffers), the writable part fuse_out_header + reply.
//
// Header-only so that both tests/ and bench/ can use it.
#pragma once

#include <linux/fuse.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/guest_memory.h"
#include "devices/virtio/fs/fs_device.h"
#include "devices/virtio/mmio_transport.h"
#include "tests/support/virtqueue_driver.h"

namespace kiln::testsupport {

// Request arguments, built in order: structs and NUL-terminated strings.
class FuseArgs {
 public:
  template <typename T>
  FuseArgs& obj(const T& v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    bytes_.insert(bytes_.end(), p, p + sizeof(T));
    return *this;
  }
  FuseArgs& str(std::string_view s) {
    bytes_.insert(bytes_.end(), s.begin(), s.end());
    bytes_.push_back(0);
    return *this;
  }
  FuseArgs& raw(std::span<const uint8_t> b) {
    bytes_.insert(bytes_.end(), b.begin(), b.end());
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

struct FuseReply {
  bool completed = false;  // the chain came back through the used ring
  uint32_t used = 0;       // used length
  fuse_out_header h{};     // zero when used < 16
  std::vector<uint8_t> data;
  int error() const { return h.error; }
  template <typename T>
  T as() const {
    T v{};
    std::memcpy(&v, data.data(), std::min(sizeof(T), data.size()));
    return v;
  }
  std::string text() const { return std::string(data.begin(), data.end()); }
};

class FuseDriver {
 public:
  static constexpr uint64_t kMiB = 1 << 20;
  static constexpr uint32_t kChunk = 64 * 1024;  // bytes per data descriptor

  explicit FuseDriver(const virtio::FsOptions& options, uint64_t mem_bytes = 64 * kMiB)
      : mem_({{0, mem_bytes}}),
        dev_(std::make_shared<virtio::FsDevice>(options)),
        transport_(dev_, mem_, [this] { ++irqs_; }),
        drv_(transport_),
        hiprio_(mem_, 0x1000, 64, 1 * kMiB, 1 * kMiB),
        req_(mem_, 0x10000, 256, 2 * kMiB, mem_bytes - 2 * kMiB) {
    const VirtqueueDriver* queues[] = {&hiprio_, &req_};
    drv_.init(~uint64_t{0}, queues);
  }

  virtio::FsDevice& device() { return *dev_; }
  MmioDriver& mmio() { return drv_; }
  const GuestMemory& mem() const { return mem_; }
  VirtqueueDriver& queue(size_t index) { return index == 0 ? hiprio_ : req_; }

  fuse_in_header header(uint32_t opcode, uint64_t nodeid, size_t args_len) {
    fuse_in_header h{};
    h.len = static_cast<uint32_t>(sizeof(h) + args_len);
    h.opcode = opcode;
    h.unique = ++unique_;
    h.nodeid = nodeid;
    return h;
  }

  // One request: header + `args` in one readable buffer, `data` (WRITE) in kChunk buffers, a
  // 16-byte writable buffer for the out header and `out_size` bytes for the reply in kChunk
  // buffers. `copy_out`: copy the reply into FuseReply::data (benchmarks skip it).
  FuseReply call(uint32_t opcode, uint64_t nodeid, const FuseArgs& args, uint32_t out_size = 4096,
                 std::span<const uint8_t> data = {}, size_t queue_index = 1, bool copy_out = true) {
    fuse_in_header h = header(opcode, nodeid, args.bytes().size() + data.size());
    std::vector<uint8_t> head(sizeof(h));
    std::memcpy(head.data(), &h, sizeof(h));
    head.insert(head.end(), args.bytes().begin(), args.bytes().end());
    return raw(head, data, out_size, queue_index, copy_out);
  }

  // The same with the readable bytes given whole (a header of the caller's making).
  FuseReply raw(std::span<const uint8_t> head, std::span<const uint8_t> data, uint32_t out_size,
                size_t queue_index = 1, bool copy_out = true, bool with_out_header = true) {
    VirtqueueDriver& q = queue(queue_index);
    q.reset_allocator();
    std::vector<DriverBuffer> bufs;
    if (!head.empty())
      bufs.push_back({q.alloc_bytes(head), static_cast<uint32_t>(head.size()), false});
    for (size_t off = 0; off < data.size(); off += kChunk) {
      const auto piece = data.subspan(off, std::min<size_t>(kChunk, data.size() - off));
      bufs.push_back({q.alloc_bytes(piece), static_cast<uint32_t>(piece.size()), false});
    }
    Gpa out_hdr = 0;
    if (with_out_header) {
      out_hdr = q.alloc(sizeof(fuse_out_header));
      mem_.fill(out_hdr, 0, sizeof(fuse_out_header));
      bufs.push_back({out_hdr, sizeof(fuse_out_header), true});
    }
    const Gpa reply = q.alloc(out_size ? out_size : 1, 4096);
    for (uint32_t off = 0; off < out_size; off += kChunk)
      bufs.push_back({reply + off, std::min(kChunk, out_size - off), true});
    FuseReply r;
    if (bufs.empty()) return r;
    const bool indirect = bufs.size() > 8;
    const uint16_t head_id = q.submit(bufs, indirect);
    drv_.kick(queue_index);
    auto e = q.pop_used();
    if (!e || e->id != head_id) return r;
    r.completed = true;
    r.used = e->len;
    if (with_out_header && r.used >= sizeof(fuse_out_header)) {
      r.h = *mem_.read_obj<fuse_out_header>(out_hdr);
      const size_t n = std::min<size_t>(r.used - sizeof(fuse_out_header), out_size);
      if (copy_out) {
        r.data.resize(n);
        mem_.read(reply, r.data);
      }
    }
    return r;
  }

  // ---- Common calls ----
  FuseReply init(uint32_t minor = FUSE_KERNEL_MINOR_VERSION, uint32_t flags = ~0u) {
    fuse_init_in in{};
    in.major = FUSE_KERNEL_VERSION;
    in.minor = minor;
    in.max_readahead = 1 << 20;
    in.flags = flags;
    return call(FUSE_INIT, 0, FuseArgs().obj(in));
  }
  FuseReply lookup(uint64_t parent, std::string_view name) {
    return call(FUSE_LOOKUP, parent, FuseArgs().str(name));
  }
  FuseReply getattr(uint64_t node) {
    return call(FUSE_GETATTR, node, FuseArgs().obj(fuse_getattr_in{}));
  }
  FuseReply open(uint64_t node, uint32_t flags, bool dir = false) {
    fuse_open_in in{};
    in.flags = flags;
    return call(dir ? FUSE_OPENDIR : FUSE_OPEN, node, FuseArgs().obj(in));
  }
  FuseReply create(uint64_t parent, std::string_view name, uint32_t flags, uint32_t mode) {
    fuse_create_in in{};
    in.flags = flags;
    in.mode = mode;
    return call(FUSE_CREATE, parent, FuseArgs().obj(in).str(name));
  }
  FuseReply read(uint64_t node, uint64_t fh, uint64_t offset, uint32_t size, bool copy_out = true) {
    fuse_read_in in{};
    in.fh = fh;
    in.offset = offset;
    in.size = size;
    return call(FUSE_READ, node, FuseArgs().obj(in), size, {}, 1, copy_out);
  }
  FuseReply write(uint64_t node, uint64_t fh, uint64_t offset, std::span<const uint8_t> data) {
    fuse_write_in in{};
    in.fh = fh;
    in.offset = offset;
    in.size = static_cast<uint32_t>(data.size());
    return call(FUSE_WRITE, node, FuseArgs().obj(in), sizeof(fuse_write_out), data);
  }
  FuseReply release(uint64_t node, uint64_t fh, bool dir = false) {
    fuse_release_in in{};
    in.fh = fh;
    return call(dir ? FUSE_RELEASEDIR : FUSE_RELEASE, node, FuseArgs().obj(in));
  }
  FuseReply unlink(uint64_t parent, std::string_view name) {
    return call(FUSE_UNLINK, parent, FuseArgs().str(name));
  }
  FuseReply forget(uint64_t node, uint64_t n) {
    fuse_forget_in in{};
    in.nlookup = n;
    const fuse_in_header h = header(FUSE_FORGET, node, sizeof(in));
    const std::vector<uint8_t> head = FuseArgs().obj(h).obj(in).bytes();
    return raw(head, {}, 0, 0, true, /*with_out_header=*/false);  // no writable part, as Linux
  }

  uint64_t irqs() const { return irqs_; }

 private:
  GuestMemory mem_;
  std::shared_ptr<virtio::FsDevice> dev_;
  uint64_t irqs_ = 0;
  virtio::MmioTransport transport_;
  MmioDriver drv_;
  VirtqueueDriver hiprio_;
  VirtqueueDriver req_;
  uint64_t unique_ = 0;
};

}  // namespace kiln::testsupport
