// The command line: `kiln run --kernel ... [flags]` and `kiln --version`, parsed with CLI11
// into the shared VmConfig.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "vmm/command.h"
#include "vmm/vm_config.h"

namespace kiln {

struct CliCommand {
  // kRebase: `kiln snapshot rebase` (merge a Diff memory file onto its base, then exit);
  // kSnapshotCreate: `kiln snapshot create` (pause and snapshot a running VM over its API).
  enum class Action { kRun, kExit, kRebase, kSnapshotCreate };
  Action action = Action::kExit;
  int exit_code = 0;  // for kExit: 0 after --help/--version, kExitUsage after an error
  VmConfig config;
  std::string log_level = "warn";
  std::string api_socket;  // empty: no API server
  bool start_now = true;   // boot at once (kiln run, --config-file) or wait for InstanceStart
  // --restore SNAPSHOT --mem FILE: start from a snapshot instead (PUT /snapshot/load's fields).
  std::optional<request::LoadSnapshot> restore;
  std::string rebase_base_file, rebase_diff_file;  // kRebase
  struct SnapshotCreate {
    std::string api_socket;
    request::CreateSnapshot create;
    bool resume = false;  // PATCH /vm Resumed afterwards
  } snapshot_create;      // kSnapshotCreate
};

// Parses a --disk value "PATH[,ro][,id=NAME]". Throws kiln::UsageError naming the bad part.
DriveConfig parse_drive_spec(const std::string& spec);

// Adds the drive of a --disk value; an id another drive has already is refused.
void add_disk_spec(VmConfig& config, const std::string& spec);

// Parses a --vsock value "cid=N,uds=PATH". Throws kiln::UsageError naming the flag and field.
VsockConfig parse_vsock_spec(const std::string& spec);
// Parses a --balloon value "MIB[,deflate_on_oom][,stats=SECONDS][,reporting]" for a guest of
// `memory_mib`. Throws kiln::UsageError naming the flag and the bad part.
BalloonConfig parse_balloon_spec(const std::string& spec, uint64_t memory_mib);
// Adds the interface of a --net value "tap=NAME[,mac=MAC][,id=ID]" (default id: net<N>).
// Throws kiln::UsageError naming the flag and the bad part.
void add_net_spec(VmConfig& config, const std::string& spec);

// Adds the share of a --fs value "tag=NAME,path=DIR[,ro][,cache=MODE][,id=ID][,queues=N]
// [,allow-setid-and-devices]" (default id: fs<N>). Throws kiln::UsageError naming the flag and
// the bad part.
void add_fs_spec(VmConfig& config, const std::string& spec);

// Parses argv. Help, version and errors are printed here (to stdout / stderr).
CliCommand parse_cli(int argc, const char* const* argv);

}  // namespace kiln
