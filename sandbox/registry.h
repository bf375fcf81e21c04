// Where Kiln records its sandboxes, so `kiln sandbox ls/exec/kill/rm` find them by name: one
// directory per sandbox under the state root, holding its record (sandbox.json, replaced
// atomically), the vsock socket (exec reaches the agent through it), the control socket (kill)
// and the console log. A sandbox's name is reserved from `run` until `rm` (or --rm).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace kiln::sandbox {

// starting: booting; created: the agent is ready and the workload waits for a start request
// (kiln-oci create); running: the workload was started; exited: `exit_status` is its status.
enum class Status { kStarting, kCreated, kRunning, kExited };

struct Record {
  std::string name;
  pid_t pid = 0;           // the `kiln sandbox run` process
  uint64_t pid_start = 0;  // its start time (/proc/PID/stat): pids are reused
  std::string root;        // ROOT as given
  std::vector<std::string> command;
  std::string created;  // RFC 3339, UTC
  Status status = Status::kStarting;
  int exit_status = 0;  // when exited
  // exec's defaults: the workload's environment, working directory and user; `user_root` (a
  // directory or an image's unpacked root) resolves exec's -u names, empty for a disk root.
  std::vector<std::string> env;
  std::string cwd = "/";
  uint32_t uid = 0, gid = 0;
  std::vector<uint32_t> groups;
  std::string user_root;
};

// Sandbox names as Docker's container names: [A-Za-z0-9][A-Za-z0-9_.-]*, at most 64 bytes.
// Throws kiln::UsageError naming --name otherwise.
void check_name(const std::string& name);
// A fresh name: 12 random hex digits.
std::string random_name();

// The start time of process `pid` (field 22 of /proc/PID/stat), 0 if it does not exist.
uint64_t process_start_time(pid_t pid);

class Registry {
 public:
  // $KILN_SANDBOX_DIR; else $XDG_RUNTIME_DIR/kiln/sandboxes; else /run/kiln/sandboxes for root
  // and /tmp/kiln-UID/sandboxes for others.
  static std::filesystem::path default_root();
  explicit Registry(std::filesystem::path root = default_root());

  std::filesystem::path dir(const std::string& name) const { return root_ / name; }
  // Reserves `name` (its directory, mode 0700); kiln::UsageError if it is taken.
  std::filesystem::path create(const std::string& name);
  // Writes the record (a temporary file renamed over the old one).
  void write(const Record& r) const;
  // The record of `name`; kiln::UsageError if there is none.
  Record read(const std::string& name) const;
  // Every readable record, by name; unreadable ones are skipped with a warning.
  std::vector<Record> list() const;
  void remove(const std::string& name) const;

  // Whether the record's `kiln sandbox run` still runs (same pid, same start time).
  static bool alive(const Record& r);

 private:
  std::filesystem::path root_;
};

// "starting", "created", "running", "exited", or "dead" (its run process is gone unrecorded).
const char* status_name(const Record& r);

}  // namespace kiln::sandbox
