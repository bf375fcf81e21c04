// kiln: entry point. Parses the command line, builds the VMM, runs the guest, and turns the way
// it stopped into one line and an exit status.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "api/cli.h"
#include "vmm/error.h"
#include "vmm/stop.h"
#include "vmm/terminal.h"
#include "vmm/vmm.h"

int main(int argc, char** argv) {
  kiln::CliCommand cmd = kiln::parse_cli(argc, argv);
  if (cmd.action == kiln::CliCommand::Action::kExit) return cmd.exit_code;

  auto logger = spdlog::stderr_color_mt("kiln");
  logger->set_pattern("kiln: %^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(cmd.log_level));

  try {
    kiln::Vmm vmm(cmd.config, kiln::ConsoleFds{STDIN_FILENO, STDOUT_FILENO});
    kiln::StopReason reason;
    {
      kiln::RawTerminal raw(STDIN_FILENO);
      reason = vmm.run();
    }
    if (reason.exit_code == kiln::kExitGuestStopped) {
      spdlog::info("{}", reason.message);
    } else {
      spdlog::error("{}", reason.message);
    }
    return reason.exit_code;
  } catch (const kiln::UsageError& e) {
    spdlog::error("{}", e.what());
    return kiln::kExitUsage;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return kiln::kExitVmError;
  }
}
