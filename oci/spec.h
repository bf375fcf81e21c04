// A bundle's config.json (the OCI runtime spec) read into what `kiln sandbox run` boots: the
// root shared over virtio-fs (read-only if root.readonly), the process as the agent's Start,
// the hostname, the mounts (the guest's own file systems, bind mounts as shares), and the
// machine's size from linux.resources. Every field Kiln reads is checked; a value it cannot
// honour is refused with a message naming the field (kiln::UsageError), never ignored.
// What the VM boundary replaces (namespaces, capabilities, seccomp, masked paths, cgroups
// inside the guest) is listed in README.md, "kiln-oci".
#pragma once

#include <map>
#include <string>

#include "sandbox/commands.h"

namespace kiln::oci {

struct Bundle {
  std::string dir;     // absolute
  std::string rootfs;  // absolute
  bool terminal = false;
  bool read_only = false;  // root.readonly
  std::string netns;       // linux.namespaces' network path ("" : none given)
  std::map<std::string, std::string> annotations;
  agent::Start process;     // read_spec's; load_bundle moves it into run.planned
  sandbox::RunOptions run;  // the root, the process, the shares, cpus and memory
};

// Guest memory for a memory limit: the limit plus this much for the guest kernel and agent.
inline constexpr unsigned kMemoryOverheadMiB = 64;

// The JSON alone (oci/spec.cc, with no file but the host paths it checks: the fuzz target's
// surface). A process object's text (runc exec --process), `what` naming it in errors.
agent::Start read_process_text(const std::string& text, const std::string& what);
// config.json's text read into a Bundle for the bundle directory `dir` (absolute): all but
// run.planned, the process in `process`. Text over 4 MiB or nested over 64 levels is refused.
Bundle read_spec(const std::string& text, const std::string& dir,
                 const sandbox::RunOptions& defaults);

// runc update's --resources text (the spec's linux.resources object) against a container of
// `current`'s size: an update that keeps the size is the container as it is; one that would
// resize the microVM, or sets a host cgroup limit, is refused with UsageError naming the field.
sandbox::RunOptions resources_update(const std::string& text, const sandbox::RunOptions& current);

// The files (oci/bundle.cc). runc update's --resources: FILE, or "-" for stdin (4 MiB at most),
// checked with resources_update.
sandbox::RunOptions load_resources_update(const std::string& file,
                                          const sandbox::RunOptions& current);
// A process.json (runc exec --process): the spec's `process`
// object alone.
agent::Start load_process(const std::string& path);
// Reads `dir`/config.json (at most 4 MiB) and plans the root's workload. `defaults` gives the
// kernel, initramfs, vCPUs and memory when the spec does not set them.
Bundle load_bundle(const std::string& dir, const sandbox::RunOptions& defaults);

}  // namespace kiln::oci
