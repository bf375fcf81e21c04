#include "api/cli.h"

#include <CLI/CLI.hpp>

#include "vmm/stop.h"

namespace kiln {

namespace {

constexpr const char* kRunFooter = R"(Console:
  The guest's serial console (COM1, ttyS0) is this terminal. When stdin is a terminal it is put
  in raw mode, so Ctrl-C goes to the guest. Press Ctrl-A then x to stop Kiln; Ctrl-A Ctrl-A
  sends one Ctrl-A to the guest.

Exit status:
  0  the guest reset or powered off (Linux: `reboot`/`poweroff` with reboot=k)
  1  the VM failed (triple fault, KVM error, unhandled exit); the reason is printed
  2  bad flags or files; nothing ran
  3  stopped from the console (Ctrl-A x) or by SIGINT/SIGTERM/SIGHUP)";

}  // namespace

CliCommand parse_cli(int argc, const char* const* argv) {
  CliCommand cmd;
  CLI::App app{"Kiln: a KVM virtual machine monitor for microVMs", "kiln"};
  app.set_version_flag("--version", std::string("kiln ") + KILN_VERSION);
  app.require_subcommand(1);
  app.add_option("--log-level", cmd.log_level, "Log level: error, warn, info, debug, trace")
      ->check(CLI::IsMember({"off", "error", "warn", "info", "debug", "trace"}))
      ->capture_default_str();

  CLI::App* run =
      app.add_subcommand("run", "Boot a guest kernel with its console on this terminal");
  run->footer(kRunFooter);
  VmConfig& c = cmd.config;
  run->add_option("--kernel", c.kernel_path,
                  "Guest kernel: an ELF vmlinux or a bzImage (64-bit boot protocol >= 2.12)")
      ->required()
      ->check(CLI::ExistingFile);
  run->add_option("--initrd", c.initrd_path, "Initial ramdisk loaded next to the kernel")
      ->check(CLI::ExistingFile);
  run->add_option("--cmdline", c.cmdline, "Kernel command line")->capture_default_str();
  run->add_option("--cpus", c.vcpus, "Number of vCPUs (1 to the host's KVM limit)")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  run->add_option("--memory", c.memory_mib, "Guest RAM in MiB (16 to 1048576)")
      ->check(CLI::Range(uint64_t{16}, uint64_t{1} << 20))
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);  // prints help, version or the error
    cmd.action = CliCommand::Action::kExit;
    cmd.exit_code = rc == 0 ? 0 : kExitUsage;
    return cmd;
  }
  cmd.action = CliCommand::Action::kRun;
  return cmd;
}

}  // namespace kiln
