// The one VM configuration model. The CLI, TOML files and the HTTP API all fill this struct;
// the VMM is built only from it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/huge_pages.h"

#include "base/mac_address.h"

namespace kiln {

inline constexpr const char* kDefaultCmdline = "console=ttyS0 reboot=k panic=1";
inline constexpr const char* kDefaultVirtioConsoleCmdline = "console=hvc0 reboot=k panic=1";

// Firecracker's cache_type. Kiln's virtio-blk always offers VIRTIO_BLK_F_FLUSH and runs
// fdatasync(2) on a guest flush, which is Writeback; Unsafe (the default) is kept and reported
// as set, and gets the same, safer, behaviour.
enum class CacheType { kUnsafe, kWriteback };

// Firecracker's TokenBucket: `size` tokens (bytes or operations) refill every `refill_time_ms`;
// `one_time_burst` extra tokens are spent first.
// Bounds (checked where the object is read): size 1..kMaxTokens, one_time_burst 0..kMaxTokens,
// refill_time_ms 1..kMaxRefillTimeMs (the longest whose nanoseconds fit a signed 64-bit count).
struct TokenBucketConfig {
  static constexpr uint64_t kMaxTokens = (uint64_t{1} << 63) - 1;
  static constexpr uint64_t kMaxRefillTimeMs = 9'223'372'036'854;  // about 292 years
  uint64_t size = 0;
  uint64_t one_time_burst = 0;
  uint64_t refill_time_ms = 0;
  bool one_time_burst_set = false;  // given (GET /vm/config shows null otherwise)
};

// Firecracker's RateLimiter: independent byte and operation buckets; none set: no limit.
struct RateLimiterConfig {
  std::optional<TokenBucketConfig> bandwidth;
  std::optional<TokenBucketConfig> ops;
  bool limits() const { return bandwidth || ops; }
};

// PATCH of a RateLimiter: per bucket, nullopt keeps it; a nullopt inside removes it (a bucket
// sent with size or refill_time 0, as in Firecracker); a bucket replaces it (full again).
struct RateLimiterUpdate {
  std::optional<std::optional<TokenBucketConfig>> bandwidth;
  std::optional<std::optional<TokenBucketConfig>> ops;
  // `limiter` with this update applied.
  RateLimiterConfig applied_to(RateLimiterConfig limiter) const {
    if (bandwidth) limiter.bandwidth = *bandwidth;
    if (ops) limiter.ops = *ops;
    return limiter;
  }
};

struct DriveConfig {
  std::string path;
  bool read_only = false;
  std::string id;        // serial the guest reads with GET_ID; default: the file name
  bool is_root = false;  // add root=/dev/vda to the command line (must be the first drive)
  CacheType cache_type = CacheType::kUnsafe;
  RateLimiterConfig rate_limiter{};  // bytes of data read and written, and requests
};

// virtio-rng (PUT /entropy, --rng[=BYTES_PER_SEC], [entropy] in TOML).
struct EntropyConfig {
  std::optional<TokenBucketConfig> bandwidth;  // bytes; none: unlimited
};

// Which device carries the console (stdin/stdout, or the serial_out_path file): the UART
// (ttyS0, the default), virtio-console (hvc0), or neither.
enum class ConsoleMode { kSerial, kVirtio, kNone };

// virtio-vsock with Firecracker's host side: the guest's connections to port P reach the Unix
// socket `<uds_path>_P`; host clients connect to `uds_path` and write `CONNECT <port>\n`.
struct VsockConfig {
  uint64_t guest_cid = 3;  // >= 3 (0-2 are reserved)
  std::string uds_path;
  std::string vsock_id;  // Firecracker's deprecated id; kept and shown, unused
};

// A virtio-net device on a host TAP (Firecracker's NetworkInterface).
struct NetConfig {
  std::string iface_id;
  std::string host_dev_name;            // the TAP's name (opened, or created, at boot)
  std::optional<MacAddress> guest_mac;  // none: VIRTIO_NET_F_MAC not offered
  std::optional<uint16_t> mtu;          // VIRTIO_NET_F_MTU when set (68 to 65535)
  RateLimiterConfig rx_rate_limiter{};  // frame bytes and frames the guest receives
  RateLimiterConfig tx_rate_limiter{};  // ... and sends
};

// A host directory shared with the guest over virtio-fs (--fs, [[fs]], "fs", PUT /fs/{fs_id};
// Kiln's own, modelled on Cloud Hypervisor's `fs`). Checked by validate() and add_fs()
// (vm_config_ops.h) for every front end; the guest mounts it with `mount -t virtiofs TAG DIR`.
enum class FsCacheMode { kNever, kAuto, kAlways };  // see virtio::FsCache
struct FsConfig {
  static constexpr size_t kMaxTagBytes = 36;  // virtio_fs_config.tag
  // Each request queue is an ioeventfd and a virtqueue the guest may fill; Linux 6.1 uses one.
  static constexpr uint32_t kMaxRequestQueues = 16;
  std::string fs_id;  // the API's resource id (default fs0, fs1, ...)
  std::string tag;    // 1..36 bytes, unique
  std::string path;   // an existing host directory
  bool read_only = false;
  FsCacheMode cache = FsCacheMode::kAuto;
  bool allow_setid_and_devices = false;  // set-uid/set-gid files and device nodes on the host
  uint32_t num_request_queues = 1;
};

// virtio-balloon (PUT /balloon, "balloon" in the config files).
struct BalloonConfig {
  static constexpr uint32_t kMaxStatsIntervalS = 24 * 3600;
  uint64_t amount_mib = 0;  // the target: at most the guest's memory
  bool deflate_on_oom = false;
  uint32_t stats_polling_interval_s = 0;  // 0: no statistics
  bool free_page_reporting = false;
};

// PUT /metrics: the file and what each line carries besides the counters.
struct MetricsConfig {
  std::string path;                               // empty: no metrics
  bool emit_id = false;                           // a top-level "id" (the instance id)
  std::map<std::string, std::string> properties;  // a top-level "properties" object when set
};

struct LoggerConfig {
  std::string path;               // empty: stderr
  std::string level = "Warning";  // Error, Warning, Info, Debug, Trace, Off
  bool show_level = false;
  bool show_log_origin = false;
};

struct VmConfig {
  uint32_t vcpus = 1;
  uint64_t memory_mib = 128;
  bool smt = false;  // accepted for API compatibility; vCPUs are single-threaded cores
  bool track_dirty_pages = false;           // KVM logs written pages (KVM_MEM_LOG_DIRTY_PAGES)
  HugePages huge_pages = HugePages::kNone;  // how guest RAM is backed
  std::string kernel_path;
  std::string initrd_path;  // empty: none
  std::string cmdline = kDefaultCmdline;
  std::vector<DriveConfig> drives;       // virtio-blk, in guest order (vda, vdb, ...)
  std::vector<NetConfig> nets;           // virtio-net, after the drives on the virtio-mmio bus
  MetricsConfig metrics;                 // metrics.path empty: no metrics
  std::string serial_out_path;           // empty: the console's output fd
  std::optional<EntropyConfig> entropy;  // a virtio-rng device when set
  ConsoleMode console = ConsoleMode::kSerial;
  std::optional<VsockConfig> vsock;  // PUT /vsock, --vsock
  std::vector<FsConfig> fs;          // virtio-fs shares, after the other devices but the console
  std::optional<BalloonConfig> balloon;
  LoggerConfig logger;
};

// Console wiring: where the guest's serial output goes and where its input comes from.
struct ConsoleFds {
  int in = 0;  // -1: no input
  int out = 1;
};

}  // namespace kiln
