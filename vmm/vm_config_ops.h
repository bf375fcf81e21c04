// How each configuration object is checked and added to a VmConfig: one validator per object
// (shared by the CLI, the config files and the API) and one function per object that applies it
// with the checks that need the configuration it goes into (a second root drive, a TAP or MAC
// already used). The HTTP API (through the controller), --config-file, --config (TOML) and the
// CLI flags all use these; none of them knows JSON.
//
// A problem names the object's field in the API's words ("drive_id", "host_dev_name"); callers
// add the object ("drive", "drives[1]", "--net") when they report it. On a problem the
// configuration is left unchanged.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "vmm/vm_config.h"

namespace kiln {

struct FieldProblem {
  std::string field;
  std::string problem;
};

// machine-config: PUT sets (vcpus and memory given), PATCH updates what is set.
struct MachineConfigUpdate {
  std::optional<uint32_t> vcpus;
  std::optional<uint64_t> memory_mib;
  std::optional<bool> smt;
  std::optional<bool> track_dirty_pages;
  std::optional<HugePages> huge_pages;  // PUT without it: None
};

struct BootSourceConfig {
  std::string kernel_path;
  std::optional<std::string> cmdline;  // none: Kiln's default
  std::string initrd_path;             // empty: none
};

// PUT /logger: what is set replaces the current value.
struct LoggerUpdate {
  std::optional<std::string> path;
  std::optional<std::string> level;  // one of LoggerConfig's level names
  std::optional<bool> show_level;
  std::optional<bool> show_log_origin;
};

// An API resource id (drive_id, iface_id): 1 to 64 letters, digits or '_'.
std::optional<std::string> resource_id_problem(const std::string& id);

// What is wrong with an object on its own (no configuration needed), or nullopt.
std::optional<FieldProblem> validate(const MachineConfigUpdate& update);  // vcpu_count, ...
std::optional<FieldProblem> validate(const BootSourceConfig& boot);       // kernel_image_path
// drive_id (an empty id is "none given": --disk without id=; the API requires one) and
// path_on_host.
std::optional<FieldProblem> validate(const DriveConfig& drive);
std::optional<FieldProblem> validate(const NetConfig& net);      // iface_id, host_dev_name, ...
std::optional<FieldProblem> validate(const VsockConfig& vsock);  // guest_cid, uds_path
std::optional<FieldProblem> validate(const TokenBucketConfig& bucket);  // size, refill_time, ...
std::optional<FieldProblem> validate(const MetricsConfig& metrics);     // metrics_path
// The balloon against the guest's memory: amount_mib at most memory_mib, the interval bounded.
std::optional<FieldProblem> validate(const BalloonConfig& balloon, uint64_t memory_mib);
// fs_id, tag (1 to 36 bytes, no control characters; every front end has made it UTF-8 text),
// path not empty, num_request_queues (1 to FsConfig::kMaxRequestQueues).
std::optional<FieldProblem> validate(const FsConfig& fs);

// Each validates its object, then applies it to `config`.
// PATCH keeps the current huge_pages when none is given; 2M needs an even memory size.
std::optional<FieldProblem> apply_machine_config(VmConfig& config,
                                                 const MachineConfigUpdate& update, bool patch);
std::optional<FieldProblem> apply_boot_source(VmConfig& config, const BootSourceConfig& boot);
// Adds or replaces the drive with this id; a second root drive is refused. The root drive is
// kept first.
std::optional<FieldProblem> add_drive(VmConfig& config, const DriveConfig& drive);
// Adds or replaces the interface with this id; a TAP or MAC used by another one is refused.
std::optional<FieldProblem> add_network_interface(VmConfig& config, const NetConfig& net);
void apply_logger(VmConfig& config, const LoggerUpdate& update);
std::optional<FieldProblem> set_metrics(VmConfig& config, const MetricsConfig& metrics);
// The bucket is checked where it is read (validate(TokenBucketConfig), named by its object).
void set_entropy(VmConfig& config, const EntropyConfig& entropy);
void set_serial(VmConfig& config, const std::string& serial_out_path);
std::optional<FieldProblem> set_vsock(VmConfig& config, const VsockConfig& vsock);
// Adds or replaces the share with this fs_id; the path must be an existing directory and the tag
// must not be another share's.
std::optional<FieldProblem> add_fs(VmConfig& config, const FsConfig& fs);
// With virtio, a command line still at Kiln's default gets console=hvc0 instead of ttyS0.
void set_console(VmConfig& config, ConsoleMode mode);

}  // namespace kiln
