#include "sandbox/cli.h"

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>

#include "agent/boot_config.h"
#include "base/error.h"
#include "image/image_source.h"
#include "sandbox/commands.h"

namespace kiln::sandbox {

namespace fs = std::filesystem;

namespace {

fs::path self_dir() {
  return fs::read_symlink("/proc/self/exe").parent_path();
}

// -e, -w, -u, -i, -t: what run and exec share.
void add_process_flags(CLI::App* c, std::vector<std::string>& env,
                       std::optional<std::string>& workdir, std::optional<std::string>& user,
                       AttachOptions& attach) {
  c->add_option("-e,--env", env, "K=V in the process's environment")
      ->check([](const std::string& v) {
        return v.find('=') == std::string::npos || v[0] == '=' ? "-e needs K=V" : "";
      })
      ->allow_extra_args(false);
  c->add_option("-w,--workdir", workdir, "the working directory (absolute)")
      ->check([](const std::string& v) {
        return v.empty() || v[0] != '/' ? "-w needs an absolute path" : "";
      });
  c->add_option("-u,--user", user,
                "UID[:GID] to run as (GID defaults to UID); with an image or a directory root "
                "also USER[:GROUP] from its /etc/passwd and /etc/group");
  c->add_flag("-i,--interactive", attach.interactive, "connect Kiln's stdin to the process");
  c->add_flag("-t,--tty", attach.tty,
              "give the process a terminal (stdout and stderr joined; the host terminal in raw "
              "mode with -i; its size, and SIGWINCH)");
}

void add_run(CLI::App& app, RunOptions& o, std::vector<std::string>& volumes,
             std::optional<std::string>& net) {
  CLI::App* r = app.add_subcommand("run", "Run CMD in a fresh microVM with ROOT as its root");
  r->add_option("--kernel", o.kernel, "guest kernel (default: guest-kernel/vmlinux beside kiln)");
  r->add_option("--initrd", o.initrd,
                "agent initramfs (default: agent/kiln-agent.cpio beside kiln)");
  add_process_flags(r, o.workload.env, o.workload.workdir, o.workload.user, o.attach);
  r->add_option("--name", o.name,
                "the sandbox's name for exec, kill, ls and rm (default: 12 random hex digits)");
  r->add_flag("--rm", o.remove,
              "remove the sandbox's record (and console log) when it exits; without it, ls -a "
              "shows it exited with its status until kiln sandbox rm");
  r->add_flag("--timings", o.timings,
              "print the phases' times on stderr: agent ready (with the agent's own report), "
              "workload started, exited (from Kiln's start)");
  r->add_option("--console-log", o.console_log,
                "write the guest's console (and kiln run's log) here instead of the sandbox's "
                "directory");
  r->add_flag("--warm", o.warm,
              "restore a snapshot of a booted guest (made on first use, kept in "
              "${KILN_CACHE:-~/.cache/kiln}/warm) instead of booting; not with a disk ROOT yet");
  r->add_option("--cpus", o.cpus, "vCPUs")->check(CLI::Range(1, 254));
  r->add_option("--memory", o.memory, "guest memory in MiB")->check(CLI::Range(32, 65536));
  r->add_option("--boot-timeout", o.boot_timeout, "seconds to wait for the agent")
      ->check(CLI::Range(1, 3600));
  r->add_option("-v,--volume", volumes,
                "HOSTDIR:GUESTDIR[:ro]: share a host directory at GUESTDIR (virtio-fs)")
      ->allow_extra_args(false);
  r->add_option("--tmpfs", o.tmpfs,
                "DIR[:OPTS]: a tmpfs at DIR, OPTS as mount(8)'s: size=64m,mode=1777,noexec,... "
                "and tmpcopyup (DIR's contents copied in)")
      ->allow_extra_args(false);
  r->add_option("--net", net,
                "tap=NAME[,mac=MAC][,ip=ADDR/PREFIX][,gw=ADDR][,mtu=N][,dns=ADDR]...: a NIC on "
                "host TAP NAME (made if missing, as kiln run does); with ip= the agent sets "
                "eth0's address, default route and MTU, with dns= /etc/resolv.conf");
  r->add_option("ROOT", o.workload.root,
                "the workload's root: a directory (shared over virtio-fs), an ext4 image (the "
                "disk /dev/vda), or a container image: an OCI layout directory or an "
                "oci-archive/docker-archive tar (PATH[:TAG]; unpacked once into the cache)")
      ->required();
  r->add_option("CMD", o.workload.command,
                "the command and its arguments (after --); an image's Entrypoint/Cmd by default");
}

// After parsing: the volumes, kernel and initramfs checked, defaults found beside kiln.
void finish_run(RunOptions& o, const std::vector<std::string>& volumes,
                const std::optional<std::string>& net) {
  if (net) o.nets.push_back(parse_net(*net));
  if (!fs::exists(o.workload.root) && !fs::exists(image::parse_image_ref(o.workload.root).path))
    throw kiln::Error("ROOT " + o.workload.root + " does not exist");
  if (volumes.size() > 16) throw kiln::Error("-v: at most 16 volumes");
  for (const auto& v : volumes) o.volumes.push_back(parse_volume(v));
  if (o.tmpfs.size() > 16) throw kiln::Error("--tmpfs: at most 16");
  for (const auto& t : o.tmpfs) {
    try {
      agent::parse_tmpfs(t);
    } catch (const std::runtime_error& e) {
      throw kiln::Error(std::string("--") + e.what());
    }
  }
  if (o.kernel.empty()) o.kernel = (self_dir() / "guest-kernel" / "vmlinux").string();
  if (o.initrd.empty()) o.initrd = (self_dir() / "agent" / "kiln-agent.cpio").string();
  for (const auto& [what, path] : {std::pair{"--kernel", o.kernel}, {"--initrd", o.initrd}})
    if (!fs::is_regular_file(path))
      throw kiln::Error(std::string(what) + " " + path +
                        " is not a file (the kernel: scripts/build-guest-kernel.sh --out "
                        "build/guest-kernel; the initramfs: ninja -C build)");
}

}  // namespace

int sandbox_main(int argc, char** argv) {
  CLI::App app{"Run workloads in microVMs booted with kiln-agent", "kiln sandbox"};
  app.require_subcommand(1);
  RunOptions run_opts;
  std::vector<std::string> volumes;
  std::optional<std::string> net;
  add_run(app, run_opts, volumes, net);

  ExecOptions exec_opts;
  CLI::App* e = app.add_subcommand("exec", "Run another process in a running sandbox");
  add_process_flags(e, exec_opts.env, exec_opts.workdir, exec_opts.user, exec_opts.attach);
  e->add_option("SANDBOX", exec_opts.target, "a sandbox's name, or its vsock socket's path")
      ->required();
  e->add_option("CMD", exec_opts.command, "the command and its arguments (after --)")->required();

  bool all = false, quiet = false, as_json = false;
  CLI::App* ls = app.add_subcommand("ls", "List running sandboxes");
  ls->add_flag("-a,--all", all, "also those that exited (until kiln sandbox rm)");
  ls->add_flag("-q,--quiet", quiet, "names only");
  ls->add_flag("--json", as_json, "a JSON array");

  std::string kill_name, kill_signal = "KILL";
  CLI::App* k = app.add_subcommand("kill", "Send a signal to a sandbox's workload");
  k->add_option("NAME", kill_name, "the sandbox")->required();
  k->add_option("SIGNAL", kill_signal, "a name (TERM, SIGKILL) or a number; default KILL");

  std::vector<std::string> rm_names;
  bool force = false;
  CLI::App* rm = app.add_subcommand("rm", "Remove exited sandboxes' records");
  rm->add_flag("-f,--force", force, "kill running ones first");
  rm->add_option("NAME", rm_names, "the sandboxes")->required();

  // Kiln's own info lines (an image unpacked, ...) would mix into the workload's stderr:
  // warnings and errors only.
  spdlog::set_level(spdlog::level::warn);
  bool workload = true;  // run and exec report failures as 125
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& err) {
    int rc = app.exit(err);
    bool wl = app.got_subcommand("run") || app.got_subcommand("exec");
    return rc == 0 ? 0 : wl ? kExitKiln : 2;
  }
  try {
    if (app.got_subcommand(ls)) return workload = false, list(all, quiet, as_json);
    if (app.got_subcommand(k)) return workload = false, kill(kill_name, kill_signal);
    if (app.got_subcommand(rm)) return workload = false, remove(rm_names, force);
    if (app.got_subcommand(e)) return exec(exec_opts);
    finish_run(run_opts, volumes, net);
    return run(run_opts);
  } catch (const kiln::UsageError& err) {
    std::fprintf(stderr, "kiln sandbox: %s\n", err.what());
    return workload ? kExitKiln : 2;
  } catch (const std::exception& err) {
    std::fprintf(stderr, "kiln sandbox: %s\n", err.what());
    return workload ? kExitKiln : 1;
  }
}

}  // namespace kiln::sandbox
