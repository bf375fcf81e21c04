#include "jail/cli.h"

#include <sys/resource.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdio>

#include "base/error.h"
#include "base/stop.h"
#include "jail/jailer.h"

namespace kiln::jail {

namespace {

bool is_number(const std::string& s, uint64_t max, uint64_t& out) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc() && end == s.data() + s.size() && out <= max;
}

void check_id(const std::string& id) {
  if (id.empty() || id.size() > 64)
    throw UsageError("--id '" + id + "': must be 1 to 64 characters");
  for (char c : id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-')
      throw UsageError("--id '" + id + "': only letters, digits and hyphens");
}

// A cgroup file name: <controller>.<name>, letters, digits, '_' and '.' (no path).
void check_cgroup_file(const std::string& spec, const std::string& file) {
  const size_t dot = file.find('.');
  bool ok = dot != std::string::npos && dot > 0 && dot + 1 < file.size();
  for (char c : file)
    ok = ok && (std::islower(static_cast<unsigned char>(c)) ||
                std::isdigit(static_cast<unsigned char>(c)) || c == '_' || c == '.');
  if (!ok)
    throw UsageError("--cgroup " + spec +
                     ": the file must be <controller>.<name> (e.g. cpu.max, pids.max)");
}

// A relative path of plain components (no '..', no empty part).
void check_parent_cgroup(const std::string& p) {
  if (p.empty() || p.front() == '/' || p.back() == '/')
    throw UsageError("--parent-cgroup '" + p + "': must be a relative path (a/b)");
  size_t start = 0;
  for (;;) {
    const size_t slash = p.find('/', start);
    const std::string part = p.substr(start, slash == std::string::npos ? slash : slash - start);
    if (part.empty() || part == "." || part == "..")
      throw UsageError("--parent-cgroup '" + p + "': '" + part + "' is not a directory name");
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
}

// The flags, and what they are read into (checked by finish()).
struct Flags {
  CLI::App app{
      "kiln jail: run a static kiln as an unprivileged user in an empty root of its own (a new "
      "mount namespace pivoted into <chroot-base-dir>/<exec name>/<id>/root, only the device "
      "nodes a VM needs, its cgroup and resource limits set, inherited fds closed, the "
      "environment cleared). Firecracker jailer's flags; the executable's own arguments follow "
      "`--`.",
      "kiln jail"};
  JailOptions o;
  std::string uid, gid, cgroup_version = "1";
  std::vector<std::string> cgroups, limits;
  Flags();
  JailOptions finish();
};

Flags::Flags() {
  app.add_option("--id", o.id, "The VM's id: 1 to 64 letters, digits and hyphens")->required();
  app.add_option("--exec-file", o.exec_file, "The executable copied into the jail and run")
      ->required();
  app.add_option("--uid", uid, "The user it runs as")->required();
  app.add_option("--gid", gid, "The group it runs as")->required();
  app.add_option("--chroot-base-dir", o.chroot_base, "Where jails are made")->capture_default_str();
  app.add_option("--netns", o.netns, "A network namespace to join (e.g. /var/run/netns/NAME)");
  app.add_flag("--daemonize", o.daemonize, "setsid() and standard I/O to /dev/null");
  app.add_flag("--new-pid-ns", o.new_pid_ns,
               "Run the executable as PID 1 of a new PID namespace (its host PID is written to "
               "<jail>/<exec name>.pid)");
  app.add_option("--cgroup-version", cgroup_version, "1 or 2")->capture_default_str();
  app.add_option("--cgroup", cgroups,
                 "FILE=VALUE written in the VM's cgroup (e.g. cpu.max=\"50000 100000\"; "
                 "repeatable)")
      ->allow_extra_args(false);
  app.add_option("--parent-cgroup", o.parent_cgroup,
                 "Where the VM's cgroup <id> is made, relative to the hierarchy's root (default: "
                 "the exec file's name)");
  app.add_option("--resource-limit", limits,
                 "RESOURCE=VALUE: fsize (bytes a file may grow to) or no-file (one more than "
                 "the highest fd; default 2048) (repeatable)")
      ->allow_extra_args(false);
  app.add_option("args", o.args, "After `--`: the executable's arguments");
}

JailOptions Flags::finish() {
  check_id(o.id);
  uint64_t n = 0;
  if (!is_number(uid, 0xfffffffeu, n)) throw UsageError("--uid '" + uid + "': not a user id");
  o.uid = static_cast<uid_t>(n);
  if (!is_number(gid, 0xfffffffeu, n)) throw UsageError("--gid '" + gid + "': not a group id");
  o.gid = static_cast<gid_t>(n);
  struct stat st {};
  if (::stat(o.exec_file.c_str(), &st) != 0)
    throw UsageError(errno_message("--exec-file " + o.exec_file));
  if (!S_ISREG(st.st_mode)) throw UsageError("--exec-file " + o.exec_file + ": not a regular file");
  if (o.chroot_base.empty() || o.chroot_base.front() != '/' ||
      o.chroot_base.find("/../") != std::string::npos)
    throw UsageError("--chroot-base-dir '" + o.chroot_base + "': must be an absolute path");
  while (o.chroot_base.size() > 1 && o.chroot_base.back() == '/') o.chroot_base.pop_back();
  if (!o.netns.empty() && ::stat(o.netns.c_str(), &st) != 0)
    throw UsageError(errno_message("--netns " + o.netns));
  if (cgroup_version != "1" && cgroup_version != "2")
    throw UsageError("--cgroup-version '" + cgroup_version + "': 1 or 2");
  o.cgroup_version = cgroup_version == "1" ? 1 : 2;
  for (const std::string& c : cgroups) {
    const size_t eq = c.find('=');
    if (eq == std::string::npos || eq + 1 == c.size() || c.find('\n') != std::string::npos)
      throw UsageError("--cgroup " + c + ": expected FILE=VALUE");
    check_cgroup_file(c, c.substr(0, eq));
    o.cgroups.emplace_back(c.substr(0, eq), c.substr(eq + 1));
  }
  if (!o.parent_cgroup.empty()) check_parent_cgroup(o.parent_cgroup);
  // cgroup v1 hierarchies are per controller: without a --cgroup there is none to place it in.
  if (!o.parent_cgroup.empty() && o.cgroup_version == 1 && o.cgroups.empty())
    throw UsageError(
        "--parent-cgroup with --cgroup-version 1 needs a --cgroup FILE=VALUE (a v1 "
        "cgroup lives in a controller's hierarchy), or use --cgroup-version 2");
  for (const std::string& l : limits) {
    const size_t eq = l.find('=');
    const std::string name = l.substr(0, eq);
    const int resource = name == "fsize" ? RLIMIT_FSIZE : name == "no-file" ? RLIMIT_NOFILE : -1;
    if (eq == std::string::npos || resource < 0)
      throw UsageError("--resource-limit " + l + ": expected fsize=BYTES or no-file=N");
    if (!is_number(l.substr(eq + 1), UINT64_MAX - 1, n) ||
        (resource == RLIMIT_NOFILE && (n < 16 || n > (1u << 20))))
      throw UsageError("--resource-limit " + l + ": " +
                       (resource == RLIMIT_NOFILE ? "no-file must be 16 to 1048576"
                                                  : "fsize must be a number of bytes"));
    o.rlimits.emplace_back(resource, n);
  }
  return o;
}

}  // namespace

JailOptions parse_jail_args(int argc, char** argv) {
  Flags f;
  f.app.parse(argc, argv);
  return f.finish();
}

int jail_main(int argc, char** argv) {
  JailOptions options;
  Flags f;
  try {
    f.app.parse(argc, argv);
    options = f.finish();
  } catch (const CLI::ParseError& e) {
    return f.app.exit(e) == 0 ? 0 : kExitUsage;  // prints the help or the error
  } catch (const UsageError& e) {
    std::fprintf(stderr, "kiln jail: %s\n", e.what());
    return kExitUsage;
  }
  try {
    run_jailed(options);  // returns only by throwing
  } catch (const UsageError& e) {
    std::fprintf(stderr, "kiln jail: %s\n", e.what());
    return kExitUsage;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln jail: %s\n", e.what());
    return 1;
  }
}

}  // namespace kiln::jail
