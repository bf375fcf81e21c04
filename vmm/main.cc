// kiln: entry point. Parses the command line, starts the API server if asked, hands the
// configuration to the VMM controller and turns the way the VM stopped into an exit status.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string_view>
#include <variant>

#include "api/cli.h"
#include "api/http/api_server.h"
#include "api/routes.h"
#include "api/snapshot_cli.h"
#include "api/snapshot_json.h"
#include "base/error.h"
#include "base/fd_limit.h"
#include "base/stop.h"
#include "jail/cli.h"
#include "oci/cli.h"
#include "sandbox/cli.h"
#include "vmm/controller.h"
#include "vmm/terminal.h"

int main(int argc, char** argv) {
  // A console, log or socket reader that went away must not kill the VM: writes fail with
  // EPIPE instead, and each writer handles that (console output is dropped, a socket closed).
  ::signal(SIGPIPE, SIG_IGN);
  if (argc > 1 && std::string_view(argv[1]) == "sandbox")  // workloads: sandbox/cli.cc
    return kiln::sandbox::sandbox_main(argc - 1, argv + 1);
  if (argc > 1 && std::string_view(argv[1]) == "jail")  // Firecracker's jailer: jail/cli.cc
    return kiln::jail::jail_main(argc - 1, argv + 1);
  // The OCI runtime (oci/cli.cc): as `kiln-oci` (a link to kiln) or `kiln oci`.
  if (std::string_view name = argv[0]; name.substr(name.rfind('/') + 1) == "kiln-oci")
    return kiln::oci::oci_main(argc, argv);
  if (argc > 1 && std::string_view(argv[1]) == "oci")
    return kiln::oci::oci_main(argc - 1, argv + 1);
  kiln::CliCommand cmd;
  try {
    cmd = kiln::parse_cli(argc, argv);
  } catch (const std::exception& e) {  // parse_cli reports its own errors; this is a backstop
    std::fprintf(stderr, "kiln: %s\n", e.what());
    return kiln::kExitUsage;
  }
  if (cmd.action == kiln::CliCommand::Action::kExit) return cmd.exit_code;
  if (cmd.action == kiln::CliCommand::Action::kRebase)
    return kiln::api::snapshot_rebase(cmd.rebase_base_file, cmd.rebase_diff_file);
  if (cmd.action == kiln::CliCommand::Action::kSnapshotCreate)
    return kiln::api::snapshot_create(cmd.snapshot_create);

  auto logger = spdlog::stderr_color_mt("kiln");
  logger->set_pattern("kiln: %^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(cmd.log_level));
  kiln::raise_fd_limit();  // vsock budgets its connections from this (devices/virtio/vsock)

  try {
    // The console is the terminal when the VM boots from the command line or a config file.
    kiln::VmmController controller(cmd.config, kiln::ConsoleFds{STDIN_FILENO, STDOUT_FILENO},
                                   kiln::api::snapshot_config_codec());
    std::unique_ptr<kiln::api::ApiServer> server;
    if (!cmd.api_socket.empty()) {
      server = std::make_unique<kiln::api::ApiServer>(
          cmd.api_socket,
          [&controller](kiln::api::HttpRequest request, kiln::api::ApiServer::Respond respond) {
            auto routed = kiln::api::route(request);
            if (auto* reply = std::get_if<kiln::VmmReply>(&routed)) {
              respond(kiln::api::to_http(*reply));
              return;
            }
            controller.submit(
                std::get<kiln::VmmCommand>(std::move(routed)),
                [respond](kiln::VmmReply reply) { respond(kiln::api::to_http(reply)); });
          });
      server->start();
    }
    kiln::RawTerminal raw(STDIN_FILENO);
    return controller.run(cmd.start_now, cmd.restore ? &*cmd.restore : nullptr);
  } catch (const kiln::UsageError& e) {
    spdlog::error("{}", e.what());
    return kiln::kExitUsage;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return kiln::kExitVmError;
  }
}
