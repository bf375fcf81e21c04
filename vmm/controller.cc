#include "vmm/controller.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

#include <cstring>

#include "api/fs_json.h"
#include "api/json_fields.h"
#include "api/vm_json.h"
#include "base/error.h"

namespace kiln {

namespace {

constexpr int kMetricsPeriodSeconds = 60;
// Firecracker's id for an instance started without --id (Kiln has no --id).
constexpr const char* kInstanceId = "anonymous-instance";

constexpr const char* kNotAfterBoot =
    "The requested operation is not supported after starting the microVM.";
constexpr const char* kNotBeforeBoot =
    "The requested operation is not supported before starting the microVM.";

// Signals taken through the controller's signalfd: the stop signals, and SIGWINCH (the
// terminal was resized: a virtio-console passes the size on).
sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH}) sigaddset(&set, sig);
  return set;
}

// "No such file or directory (os error 2)": strerror with the number, as Firecracker words it.
std::string os_error(int err) {
  return std::string(std::strerror(err)) + " (os error " + std::to_string(err) + ")";
}

// Empty, or why `path` cannot be opened with `flags`. Non-blocking, as Firecracker opens its
// files: a named pipe without a reader fails (ENXIO) instead of stalling the controller.
std::string cannot_open(const std::string& path, int flags) {
  UniqueFd fd(::open(path.c_str(), flags | O_CLOEXEC | O_NONBLOCK, 0600));
  return fd ? "" : os_error(errno);
}

// Requests whose body can use a deprecated field, by the object vm_json knows them as.
const char* deprecatable_object(VmmCommand::Kind kind) {
  using K = VmmCommand::Kind;
  switch (kind) {
    case K::kPutMachineConfig:
    case K::kPatchMachineConfig:
      return "machine-config";
    case K::kPutVsock:
      return "vsock";
    default:
      return nullptr;
  }
}

// The request a command came from, in Firecracker's log wording: {"Put", "/drives/rootfs"}.
std::pair<const char*, std::string> request_of(const VmmCommand& c) {
  using K = VmmCommand::Kind;
  switch (c.kind) {
    case K::kGetInstanceInfo:
      return {"Get", "/"};
    case K::kGetVersion:
      return {"Get", "/version"};
    case K::kGetVmConfig:
      return {"Get", "/vm/config"};
    case K::kGetMachineConfig:
      return {"Get", "/machine-config"};
    case K::kPutMachineConfig:
      return {"Put", "/machine-config"};
    case K::kPatchMachineConfig:
      return {"Patch", "/machine-config"};
    case K::kPutBootSource:
      return {"Put", "/boot-source"};
    case K::kPutDrive:
      return {"Put", "/drives/" + c.id};
    case K::kPatchDrive:
      return {"Patch", "/drives/" + c.id};
    case K::kPutNetworkInterface:
      return {"Put", "/network-interfaces/" + c.id};
    case K::kPatchNetworkInterface:
      return {"Patch", "/network-interfaces/" + c.id};
    case K::kInstanceStart:
    case K::kSendCtrlAltDel:
    case K::kFlushMetrics:
      return {"Put", "/actions"};
    case K::kPauseVm:
    case K::kResumeVm:
      return {"Patch", "/vm"};
    case K::kPutLogger:
      return {"Put", "/logger"};
    case K::kPutMetrics:
      return {"Put", "/metrics"};
    case K::kPutEntropy:
      return {"Put", "/entropy"};
    case K::kPutSerial:
      return {"Put", "/serial"};
    case K::kPutVsock:
      return {"Put", "/vsock"};
    case K::kPutFs:
      return {"Put", "/fs/" + c.id};
  }
  return {"?", "?"};
}

spdlog::level::level_enum spdlog_level(const std::string& level) {
  if (level == "Error") return spdlog::level::err;
  if (level == "Warning") return spdlog::level::warn;
  if (level == "Info") return spdlog::level::info;
  if (level == "Debug") return spdlog::level::debug;
  if (level == "Trace") return spdlog::level::trace;
  return spdlog::level::off;
}

}  // namespace

VmmController::VmmController(VmConfig config, ConsoleFds console)
    : config_(std::move(config)), console_(console) {
  // Stop signals arrive through a signalfd on this loop; every thread started from here on
  // inherits the blocked mask.
  const sigset_t set = handled_signals();
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal_fd_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd_) throw_errno("signalfd");
  loop_.add(signal_fd_.get(), EPOLLIN, [this](uint32_t) {
    signalfd_siginfo info{};
    if (::read(signal_fd_.get(), &info, sizeof(info)) != sizeof(info)) return;
    if (info.ssi_signo == SIGWINCH) {
      if (vmm_) vmm_->console_resized();
      return;
    }
    stop({kExitUserStop, fmt::format("stopped by signal {}", strsignal(info.ssi_signo))});
  });
  loop_.add(commands_ready_.fd(), EPOLLIN, [this](uint32_t) {
    commands_ready_.consume();
    for (;;) {
      std::pair<VmmCommand, Done> item;
      {
        std::lock_guard lock(queue_mutex_);
        if (queue_.empty()) return;
        item = std::move(queue_.front());
        queue_.pop_front();
      }
      run_command(item);
      if (stopped_) return;
    }
  });
}

VmmController::~VmmController() {
  if (vmm_) vmm_->shutdown();
}

void VmmController::submit(VmmCommand command, Done done) {
  {
    std::lock_guard lock(queue_mutex_);
    queue_.emplace_back(std::move(command), std::move(done));
  }
  commands_ready_.signal();
}

int VmmController::run(bool start_now) {
  if (start_now) {
    apply_logger();
    VmmReply reply = start_instance();
    if (reply.status >= 400) throw UsageError(reply.body["fault_message"].get<std::string>());
  }
  while (!stopped_) loop_.run_once();
  spdlog::log(stopped_->exit_code == kExitGuestStopped ? spdlog::level::info : spdlog::level::err,
              "{}", stopped_->message);
  return stopped_->exit_code;
}

void VmmController::stop(StopReason reason) {
  if (stopped_) return;
  if (vmm_) {
    vmm_->stop_signal().request(reason);
    reason = vmm_->shutdown();  // the first reason wins: a guest reset racing a signal
  }
  flush_metrics();
  stopped_ = std::move(reason);
}

// The command loop's boundary: nothing a command or its reply does may escape, or the event
// loop would drop this handler and every later command would wait forever.
void VmmController::run_command(std::pair<VmmCommand, Done>& item) noexcept {
  try {
    Metrics::add(metrics_.api_requests);
    VmmReply reply;
    try {
      reply = handle(item.first);
    } catch (const UsageError& e) {
      reply = VmmReply::fault(400, e.what());
    } catch (const std::exception& e) {
      reply = VmmReply::fault(500, e.what());
    } catch (...) {
      reply = VmmReply::fault(500, "internal error");
    }
    if (reply.status >= 400) Metrics::add(metrics_.api_errors);
    // The front end serializes the reply here; if that fails, its Respond answers 500.
    item.second(std::move(reply));
  } catch (const std::exception& e) {
    spdlog::error("api: passing a reply to its client failed: {}", e.what());
  } catch (...) {
    spdlog::error("api: passing a reply to its client failed");
  }
}

VmmReply VmmController::handle(const VmmCommand& c) {
  // Requests and refusals are logged (at Info and Error) as Firecracker logs them.
  const auto [method, path] = request_of(c);
  if (c.body.is_null())
    spdlog::info("The API server received a {} request on \"{}\".", method, path);
  else
    spdlog::info("The API server received a {} request on \"{}\" with body {}.", method, path,
                 c.body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  VmmReply reply;
  bool body_read = true;  // the body had its object's shape (parsed as Firecracker would)
  try {
    reply = dispatch(c);
  } catch (const api::FieldError& e) {
    // A body of the wrong shape reads as in Firecracker, whose clients match on these words.
    reply = VmmReply::fault(400, api::api_fault_message(e, c.text));
    body_read = !e.is_shape_error();
  } catch (const UsageError& e) {
    reply = VmmReply::fault(400, e.what());
  }
  // As Firecracker: a body that was read and uses a deprecated field is answered with
  // "Deprecation: true", whether the request then succeeds or not.
  const char* object = deprecatable_object(c.kind);
  const std::vector<std::string> deprecated =
      object && body_read ? api::deprecated_fields(object, c.body) : std::vector<std::string>{};
  for (const std::string& field : deprecated)
    spdlog::warn("{} {}: {} field is deprecated.", method == std::string("Put") ? "PUT" : "PATCH",
                 path, field);
  if (!deprecated.empty()) reply.headers.emplace_back("Deprecation", "true");
  if (reply.status >= 400)
    spdlog::error("Received Error. Status code: {} {}. Message: {}", reply.status,
                  reply.status == 400 ? "Bad Request" : "Error",
                  reply.body.value("fault_message", ""));
  return reply;
}

VmmReply VmmController::dispatch(const VmmCommand& c) {
  using K = VmmCommand::Kind;
  const bool booted = state_ != State::kNotStarted;
  switch (c.kind) {
    case K::kGetInstanceInfo: {
      const char* state = state_ == State::kNotStarted ? "Not started"
                          : state_ == State::kRunning  ? "Running"
                                                       : "Paused";
      return VmmReply::ok({{"app_name", "Kiln"},
                           {"id", kInstanceId},
                           {"state", state},
                           {"vmm_version", KILN_VERSION}});
    }
    case K::kGetVersion:
      return VmmReply::ok({{"firecracker_version", KILN_VERSION}});
    case K::kGetVmConfig:
      return VmmReply::ok(api::vm_config_json(config_));
    case K::kGetMachineConfig:
      return VmmReply::ok(api::machine_config_json(config_));
    case K::kPatchDrive:
      if (!booted) return VmmReply::fault(400, kNotBeforeBoot);
      return patch_drive(c);
    case K::kPatchNetworkInterface:
      if (!booted) return VmmReply::fault(400, kNotBeforeBoot);
      // Firecracker only updates rate limiters here; Kiln accepts and ignores them.
      api::check_network_interface_patch(config_, c.id, c.body);
      return VmmReply::no_content();
    case K::kSendCtrlAltDel:
      if (!booted) return VmmReply::fault(400, kNotBeforeBoot);
      return send_ctrl_alt_del();
    case K::kFlushMetrics:
      // As Firecracker: only a running VM has metrics to flush; without PUT /metrics there is
      // nothing to write and the answer is still 204.
      if (!booted) return VmmReply::fault(400, kNotBeforeBoot);
      flush_metrics();
      return VmmReply::no_content();
    case K::kPauseVm:
    case K::kResumeVm:
      if (!booted) return VmmReply::fault(400, kNotBeforeBoot);
      return set_paused(c.kind == K::kPauseVm);
    default:
      break;
  }
  // Everything else configures the VM: only before it starts.
  if (booted) return VmmReply::fault(400, kNotAfterBoot);
  VmConfig next = config_;  // apply to a copy: a rejected request changes nothing
  switch (c.kind) {
    case K::kPutMachineConfig:
      api::apply_machine_config(next, c.body, false);
      break;
    case K::kPatchMachineConfig:
      api::apply_machine_config(next, c.body, true);
      break;
    case K::kPutBootSource:
      api::apply_boot_source(next, c.body);
      break;
    case K::kPutDrive:
      api::apply_drive(next, c.id, c.body);
      break;
    case K::kPutNetworkInterface:
      api::apply_network_interface(next, c.id, c.body);
      break;
    case K::kPutLogger:
      api::apply_logger(next, c.body);
      break;
    case K::kPutMetrics:
      api::apply_metrics(next, c.body);
      break;
    case K::kPutEntropy:
      api::apply_entropy(next, c.body);
      break;
    case K::kPutSerial:
      api::apply_serial(next, c.body);
      break;
    case K::kPutVsock:
      api::apply_vsock(next, c.body);
      break;
    case K::kPutFs:  // the directory is checked here (api::fs_problem) and opened at boot
      api::apply_fs(next, c.id, c.body);
      break;
    case K::kInstanceStart:
      return start_instance();
    default:
      return VmmReply::fault(400, "unsupported request");
  }
  if (auto problem = check_files(c, next); !problem.empty()) return VmmReply::fault(400, problem);
  config_ = std::move(next);
  if (c.kind == K::kPutLogger) apply_logger();
  return VmmReply::no_content();
}

std::string VmmController::check_files(const VmmCommand& c, const VmConfig& next) const {
  // Files named by a request are checked when it arrives (as Firecracker does), not only at
  // InstanceStart; the devices open them again then.
  using K = VmmCommand::Kind;
  constexpr int kAppend = O_WRONLY | O_APPEND | O_CREAT;
  std::string why;
  switch (c.kind) {
    case K::kPutBootSource:
      if (!(why = cannot_open(next.kernel_path, O_RDONLY)).empty())
        return "Boot source error: The kernel file cannot be opened: " + why +
               " (kernel_image_path " + next.kernel_path + ")";
      if (!next.initrd_path.empty() && !(why = cannot_open(next.initrd_path, O_RDONLY)).empty())
        return "Boot source error: The initrd file cannot be opened: " + why + " (initrd_path " +
               next.initrd_path + ")";
      return "";
    case K::kPutDrive:
      for (const DriveConfig& d : next.drives) {
        if (d.id != c.id) continue;
        if (!(why = cannot_open(d.path, d.read_only ? O_RDONLY : O_RDWR)).empty())
          return "Drive config error: Cannot open the drive file: " + why + " (path_on_host " +
                 d.path + ")";
      }
      return "";
    case K::kPutLogger:
      if (!next.logger.path.empty() && !(why = cannot_open(next.logger.path, kAppend)).empty())
        return "Logger error: Cannot open the log file: " + why + " (log_path " + next.logger.path +
               ")";
      return "";
    case K::kPutMetrics:
      if (!(why = cannot_open(next.metrics.path, kAppend)).empty())
        return "Metrics error: Cannot open the metrics file: " + why + " (metrics_path " +
               next.metrics.path + ")";
      return "";
    default:
      return "";
  }
}

VmmReply VmmController::start_instance() {
  if (config_.kernel_path.empty())
    return VmmReply::fault(400, "Cannot start microvm without kernel configuration.");
  ConsoleFds console = console_;
  UniqueFd serial_out;
  if (!config_.serial_out_path.empty()) {
    serial_out.reset(
        ::open(config_.serial_out_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
    if (!serial_out) return VmmReply::fault(400, errno_message("serial_out_path"));
    console.out = serial_out.get();
  }
  vmm_ = std::make_unique<Vmm>(config_, console, &metrics_);
  vmm_->adopt_fd(std::move(serial_out));
  loop_.add(vmm_->stop_signal().fd(), EPOLLIN,
            [this](uint32_t) { stop(vmm_->stop_signal().wait()); });
  if (!config_.metrics.path.empty()) {
    metrics_timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    itimerspec period{{kMetricsPeriodSeconds, 0}, {kMetricsPeriodSeconds, 0}};
    ::timerfd_settime(metrics_timer_.get(), 0, &period, nullptr);
    loop_.add(metrics_timer_.get(), EPOLLIN, [this](uint32_t) {
      uint64_t expirations;
      [[maybe_unused]] ssize_t n = ::read(metrics_timer_.get(), &expirations, sizeof(expirations));
      flush_metrics();
    });
  }
  vmm_->start();
  state_ = State::kRunning;
  return VmmReply::no_content();
}

VmmReply VmmController::set_paused(bool paused) {
  if (paused && state_ == State::kRunning) {
    vmm_->pause();
    state_ = State::kPaused;
  } else if (!paused && state_ == State::kPaused) {
    vmm_->resume();
    state_ = State::kRunning;
  }
  return VmmReply::no_content();
}

VmmReply VmmController::send_ctrl_alt_del() {
  // Keys reach a paused guest when it resumes; they wait in the keyboard's buffer.
  switch (vmm_->send_ctrl_alt_del()) {
    case I8042::KeyResult::kSent:
      return VmmReply::no_content();
    case I8042::KeyResult::kKeyboardDisabled:
      return VmmReply::fault(
          400,
          "SendCtrlAltDel: the guest has disabled its i8042 keyboard (a kernel "
          "without an i8042/atkbd driver cannot receive it; use its own reboot)");
    case I8042::KeyResult::kQueueFull:
      break;
  }
  return VmmReply::fault(400,
                         "SendCtrlAltDel: the guest is not reading its keyboard (earlier key "
                         "presses are still queued); try again later");
}

VmmReply VmmController::patch_drive(const VmmCommand& c) {
  api::JsonFields f(c.body, "drive");
  auto drive_id = f.required<std::string>("drive_id");
  auto path = f.optional<std::string>("path_on_host");
  auto limiter = f.optional<nlohmann::json>("rate_limiter");
  f.reject_unknown();
  api::check_path_id("drive", "drive_id", drive_id, c.id);
  auto it = std::find_if(config_.drives.begin(), config_.drives.end(),
                         [&](const DriveConfig& d) { return d.id == c.id; });
  if (it == config_.drives.end())
    return VmmReply::fault(400, "Drive config error: drive \"" + c.id + "\" not found");
  if (limiter) api::refuse_rate_limiter(*limiter, "drive.rate_limiter", "drives");
  if (!path && !limiter)
    return VmmReply::fault(400,
                           "Drive config error: the request changes nothing: a virtio-block "
                           "drive is updated with path_on_host (or an empty rate_limiter)");
  if (path) {
    // Firecracker's words for an image that cannot be opened; the device reopens and checks it.
    const std::string why = cannot_open(*path, it->read_only ? O_RDONLY : O_RDWR);
    if (!why.empty())
      return VmmReply::fault(
          400, "Drive config error: Error manipulating the backing file: " + why + " " + *path);
    vmm_->replace_drive(c.id, *path);
    it->path = *path;
  }
  return VmmReply::no_content();
}

void VmmController::flush_metrics() {
  const MetricsConfig& m = config_.metrics;
  if (m.path.empty()) return;
  UniqueFd fd(::open(m.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) {
    spdlog::warn("metrics: {}", errno_message("cannot open " + m.path));
    return;
  }
  const std::string line = metrics_.to_json_line(m.emit_id ? kInstanceId : "", m.properties);
  if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    spdlog::warn("metrics: {}", errno_message("cannot write " + m.path));
}

void VmmController::apply_logger() {
  if (!config_.logger.path.empty()) {
    auto logger = spdlog::basic_logger_mt("kiln-file-" + std::to_string(++logger_generation_),
                                          config_.logger.path);
    std::string pattern = "[%Y-%m-%dT%H:%M:%S.%e]";
    if (config_.logger.show_level) pattern += " %l";
    if (config_.logger.show_log_origin) pattern += " %s:%#";
    logger->set_pattern(pattern + " %v");
    logger->flush_on(spdlog::level::info);
    spdlog::set_default_logger(logger);
  }
  spdlog::set_level(spdlog_level(config_.logger.level));
}

}  // namespace kiln
