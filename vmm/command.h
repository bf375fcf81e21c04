// The one command type between Kiln's front ends and the VMM controller, and its reply. A
// command carries a request api/ has already parsed and checked on its own (types, shapes, the
// values each object allows: vmm/vm_config_ops.h); the controller does what needs its state
// (booted or not, the other drives and interfaces, files it can open). Replies are data too;
// api/ serializes them.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "vmm/vm_config.h"
#include "vmm/vm_config_ops.h"

namespace kiln {

namespace request {

struct GetInstanceInfo {};
struct GetVersion {};
struct GetVmConfig {};
struct GetMachineConfig {};
struct PutMachineConfig {
  MachineConfigUpdate update;
};
struct PatchMachineConfig {
  MachineConfigUpdate update;
};
struct PutBootSource {
  BootSourceConfig boot;
};
struct PutDrive {
  DriveConfig drive;
};
// After boot: a new image for drive `id` and/or new rate-limiter buckets.
struct PatchDrive {
  std::string id;
  std::optional<std::string> path;
  std::optional<RateLimiterUpdate> rate_limiter;
};
struct PutNetworkInterface {
  NetConfig net;
};
// After boot: new rate-limiter buckets for interface `id`.
struct PatchNetworkInterface {
  std::string id;
  RateLimiterUpdate rx_rate_limiter;
  RateLimiterUpdate tx_rate_limiter;
};
struct InstanceStart {};
struct SendCtrlAltDel {};
struct FlushMetrics {};
struct Pause {};
struct Resume {};
struct PutLogger {
  LoggerUpdate update;
};
struct PutMetrics {
  MetricsConfig metrics;
};
struct PutEntropy {
  EntropyConfig entropy;
};
struct PutSerial {
  std::string serial_out_path;  // empty: the console's output
};
struct PutVsock {
  VsockConfig vsock;
};
// virtio-balloon: PUT /balloon (before boot), PATCH /balloon {amount_mib} and PATCH
// /balloon/statistics {stats_polling_interval_s} and GET /balloon (any time after the PUT),
// GET /balloon/statistics (after boot).
struct PutBalloon {
  BalloonConfig balloon;
};
struct PatchBalloon {
  uint64_t amount_mib = 0;
};
struct PatchBalloonStats {
  uint32_t stats_polling_interval_s = 0;
};
struct GetBalloon {};
struct GetBalloonStats {};
// Kiln's own: a virtio-fs share (PUT /fs/{fs_id}).
struct PutFs {
  FsConfig fs;
};
// PUT /snapshot/create (the VM must be paused).
enum class SnapshotType { kFull, kDiff };
struct CreateSnapshot {
  SnapshotType type = SnapshotType::kFull;
  std::string snapshot_path;
  std::string mem_file_path;
};
// PUT /snapshot/load, on a fresh process (only logger and metrics configured), or
// `kiln --restore`. The memory backend is the memory file, or with `uffd` a page-fault
// handler listening on the Unix socket mem_file_path names (Firecracker's Uffd backend).
struct NetworkOverride {
  std::string iface_id;
  std::string host_dev_name;
};
// Kiln's own: drive `drive_id` restored on another image (a clone's copy of the disk; the same
// size as the snapshot's).
struct DriveOverride {
  std::string drive_id;
  std::string path_on_host;
};
// Kiln's own: virtio-fs share `fs_id` restored on another host directory (a clone's copy; the
// inodes the guest holds are opened again by their paths under it).
struct FsOverride {
  std::string fs_id;
  std::string path;
};
struct LoadSnapshot {
  std::string snapshot_path;
  std::string mem_file_path;
  bool uffd = false;
  bool track_dirty_pages = false;
  bool resume_vm = false;
  bool clock_realtime = false;  // kvmclock advanced by the wall-clock time since the snapshot
  std::vector<NetworkOverride> network_overrides;
  std::vector<DriveOverride> drive_overrides;
  std::vector<FsOverride> fs_overrides;
  std::optional<std::string> vsock_uds_path;  // vsock_override.uds_path
  // huge_pages: none given ("Snapshot"): the snapshot's own, which must then be None.
  std::optional<HugePages> huge_pages;
};
// A body api/ refused (wrong shape, a value the object does not allow). The controller answers
// it after its state checks, as for any request, so every request is logged and counted alike.
struct Invalid {
  std::string fault_message;
  bool shape_error = false;  // the body could not be read (so no Deprecation header)
  bool after_boot = false;   // the request is one for a running VM (PATCH /drives, ...)
};

}  // namespace request

using Request = std::variant<
    request::GetInstanceInfo, request::GetVersion, request::GetVmConfig, request::GetMachineConfig,
    request::PutMachineConfig, request::PatchMachineConfig, request::PutBootSource,
    request::PutDrive, request::PatchDrive, request::PutNetworkInterface,
    request::PatchNetworkInterface, request::InstanceStart, request::SendCtrlAltDel,
    request::FlushMetrics, request::Pause, request::Resume, request::PutLogger, request::PutMetrics,
    request::PutEntropy, request::PutSerial, request::PutVsock, request::PutFs,
    request::CreateSnapshot, request::LoadSnapshot, request::PutBalloon, request::PatchBalloon,
    request::PatchBalloonStats, request::GetBalloon, request::GetBalloonStats, request::Invalid>;

struct VmmCommand {
  Request request;
  // For the log, in Firecracker's words: "Put", "/drives/rootfs", the body as JSON text
  // (empty: none).
  std::string method;
  std::string path;
  std::string body;
  // Deprecated fields the body uses (machine-config's cpu_template, vsock's vsock_id): the
  // reply gets "Deprecation: true" once the body was read, whether the request succeeds or not.
  std::vector<std::string> deprecated;
};

// Replies' data.
struct InstanceInfo {
  std::string app_name;
  std::string id;
  std::string state;  // "Not started", "Running", "Paused"
  std::string vmm_version;
};
struct VersionInfo {
  std::string version;
};
struct MachineConfigInfo {
  uint32_t vcpus = 1;
  uint64_t memory_mib = 0;
  bool smt = false;
  bool track_dirty_pages = false;
  HugePages huge_pages = HugePages::kNone;
};
// GET /balloon/statistics: the device's target and actual pages and the guest's latest figures
// (tag -> value; tags it did not send are absent).
struct BalloonStatsInfo {
  uint64_t target_pages = 0;
  uint64_t actual_pages = 0;
  std::map<uint16_t, uint64_t> values;
};
using ReplyBody = std::variant<std::monostate, InstanceInfo, VersionInfo, VmConfig,
                               MachineConfigInfo, BalloonConfig, BalloonStatsInfo>;

struct VmmReply {
  int status = 204;           // HTTP status
  ReplyBody body;             // monostate: no body
  std::string fault_message;  // for status >= 400: {"fault_message": "..."}
  // Extra response headers, e.g. {"Deprecation", "true"} when the request used a deprecated
  // field. Names and values are the API's own constants, never request data.
  std::vector<std::pair<std::string, std::string>> headers;

  static VmmReply ok(ReplyBody body) { return {200, std::move(body), "", {}}; }
  static VmmReply no_content() { return {}; }
  static VmmReply fault(int status, const std::string& message) {
    return {status, std::monostate{}, message, {}};
  }
};

}  // namespace kiln
