// The VMM controller: owns the configuration before boot and the Vmm after it, and executes
// VmmCommands one at a time on its own thread (the main thread). Front ends submit commands
// from their threads and get the reply through a callback; nothing they do waits on the VM.
//
// The controller's event loop also takes SIGINT/SIGTERM/SIGHUP/SIGQUIT (signalfd), the VM's
// stop signal and, when metrics are configured, a periodic flush timer.
#pragma once

#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>

#include "base/event_loop.h"
#include "base/metrics.h"
#include "base/stop.h"
#include "vmm/command.h"
#include "vmm/vm_config.h"
#include "vmm/vmm.h"

namespace kiln {

// How a snapshot carries its VM's configuration: as text in the front end's form (api/ gives
// the JSON of GET /vm/config and reads it back as a --config-file). Without one, snapshots are
// refused.
struct ConfigCodec {
  std::function<std::string(const VmConfig&)> encode;
  // The configuration with a load's overrides in place (a clone's paths replace the snapshot's
  // before anything checks them: the original vsock directory may be gone). Throws UsageError
  // naming the field or the override.
  std::function<VmConfig(const std::string&, const request::LoadSnapshot&)> decode;
};

class VmmController {
 public:
  using Done = std::function<void(VmmReply)>;

  VmmController(VmConfig config, ConsoleFds console, ConfigCodec codec = {});
  ~VmmController();

  // Thread-safe. `done` runs on the controller thread.
  void submit(VmmCommand command, Done done);
  // Runs commands until the VM (if one was started) stops or a stop signal arrives; returns
  // the exit status. With `start_now`, boots the configured VM first (errors are thrown).
  // With `restore`, the VM is that snapshot's instead (errors are thrown, UsageError for bad
  // input).
  int run(bool start_now, const request::LoadSnapshot* restore = nullptr);

  Metrics& metrics() { return metrics_; }

 private:
  enum class State { kNotStarted, kRunning, kPaused };
  void run_command(std::pair<VmmCommand, Done>& item) noexcept;
  VmmReply handle(const VmmCommand& command);
  // `body_read` is cleared for a body api/ could not read (no Deprecation header then).
  VmmReply dispatch(const Request& request, bool& body_read);
  // Empty, or the fault message for a file a request names that cannot be opened.
  static std::string boot_source_file_problem(const VmConfig& next);
  static std::string drive_file_problem(const DriveConfig& drive);
  static std::string logger_file_problem(const LoggerConfig& logger);
  static std::string metrics_file_problem(const MetricsConfig& metrics);
  VmmReply start_instance();
  // Builds and starts the Vmm from config_ (restored from `restore` when given; paused when
  // `paused`: no vCPU runs until PATCH /vm Resumed).
  void start_vmm(VmmRestore* restore, bool paused);
  // While the API configures the VM: a KVM VM made on another thread for the start to take.
  void prepare_vm_in_background();
  // machine-config or boot-source changed what the prepared VM is prepared for: it is prepared
  // again (after the preparation in progress, in the background).
  void prepare_again_if_changed();
  std::unique_ptr<PreparedVm> take_prepared_vm();
  VmmReply create_snapshot(const request::CreateSnapshot& create);
  VmmReply load_snapshot(const request::LoadSnapshot& load);
  VmmReply set_paused(bool paused);
  VmmReply patch_drive(const request::PatchDrive& patch);
  VmmReply patch_network_interface(const request::PatchNetworkInterface& patch);
  VmmReply patch_balloon(const request::PatchBalloon& patch);
  VmmReply patch_balloon_stats(const request::PatchBalloonStats& patch);
  VmmReply send_ctrl_alt_del();
  void flush_metrics();
  void stop(StopReason reason);
  void apply_logger();

  VmConfig config_;
  ConsoleFds console_;
  ConfigCodec codec_;
  // A resource other than the logger and metrics was configured (from the command line or
  // the API): PUT /snapshot/load is then refused, as Firecracker refuses it.
  bool boot_resources_set_ = false;
  State state_ = State::kNotStarted;
  std::unique_ptr<Vmm> vmm_;
  std::future<std::unique_ptr<PreparedVm>> prepared_;
  PreparedShape prepared_shape_;  // what prepared_ is (being) prepared for
  EventLoop loop_;
  EventFd commands_ready_;
  std::mutex queue_mutex_;
  std::deque<std::pair<VmmCommand, Done>> queue_;
  UniqueFd signal_fd_;
  UniqueFd metrics_timer_;
  std::optional<StopReason> stopped_;
  Metrics metrics_;
  int logger_generation_ = 0;
};

}  // namespace kiln
