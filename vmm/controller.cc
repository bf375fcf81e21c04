#include "vmm/controller.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

#include <cstring>

#include "base/error.h"
#include "base/snapshot/state_file.h"

namespace kiln {

namespace {

constexpr int kMetricsPeriodSeconds = 60;
// Firecracker's id for an instance started without --id (Kiln has no --id).
constexpr const char* kInstanceId = "anonymous-instance";

constexpr int kAppendFlags = O_WRONLY | O_APPEND | O_CREAT;

// The state file's section with the VM's configuration (ConfigCodec's text).
constexpr const char* kConfigSection = "config";

constexpr const char* kNotAfterBoot =
    "The requested operation is not supported after starting the microVM.";
constexpr const char* kNotBeforeBoot =
    "The requested operation is not supported before starting the microVM.";
constexpr const char* kNoBalloon =
    "balloon: there is no balloon device (PUT /balloon before InstanceStart adds one)";

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

// "drive: is_root_device: A root block device already exists! ...": the object, then the
// problem as a FieldError reads in api/.
std::string fault_of(const char* object, const FieldProblem& p) {
  return std::string(object) + ": " + p.field + ": " + p.problem;
}

// Overloaded lambdas for std::visit.
template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

// The item of `items` whose `key` member is `id`, or null.
template <typename T>
T* find_by(std::vector<T>& items, const std::string& id, std::string T::*key) {
  auto it = std::find_if(items.begin(), items.end(), [&](const T& t) { return t.*key == id; });
  return it == items.end() ? nullptr : &*it;
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

VmmController::VmmController(VmConfig config, ConsoleFds console, ConfigCodec codec)
    : config_(std::move(config)), console_(console), codec_(std::move(codec)) {
  boot_resources_set_ = !config_.kernel_path.empty() || !config_.drives.empty() ||
                        !config_.nets.empty() || config_.vsock || !config_.fs.empty() ||
                        config_.entropy;
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

void VmmController::prepare_vm_in_background() {
  prepared_shape_ = PreparedShape::of(config_);
  prepared_ = std::async(std::launch::async, [shape = prepared_shape_] {
    try {
      auto vm = std::make_unique<PreparedVm>();
      vm->prepare(shape);
      return vm;
    } catch (const std::exception& e) {
      // No /dev/kvm here (yet): the start makes its own and reports why it cannot.
      spdlog::debug("preparing a KVM VM ahead of InstanceStart: {}", e.what());
      return std::unique_ptr<PreparedVm>();
    }
  });
}

void VmmController::prepare_again_if_changed() {
  PreparedShape shape = PreparedShape::of(config_);
  if (!prepared_.valid() || shape == prepared_shape_) return;
  prepared_shape_ = shape;
  // After the preparation before it, in the background too: the controller waits for neither.
  prepared_ = std::async(
      std::launch::async, [before = std::move(prepared_), shape = std::move(shape)]() mutable {
        std::unique_ptr<PreparedVm> vm = before.get();
        try {
          if (vm) vm->prepare(shape);
          return vm;
        } catch (const std::exception& e) {
          spdlog::debug("preparing the KVM VM again for the configuration: {}", e.what());
          return std::unique_ptr<PreparedVm>();
        }
      });
}

std::unique_ptr<PreparedVm> VmmController::take_prepared_vm() {
  return prepared_.valid() ? prepared_.get() : nullptr;
}

int VmmController::run(bool start_now, const request::LoadSnapshot* restore) {
  if (!start_now && !restore) prepare_vm_in_background();
  if (start_now || restore) {
    apply_logger();
    VmmReply reply = restore ? load_snapshot(*restore) : start_instance();
    if (reply.status >= 400) throw UsageError(reply.fault_message);
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
  if (c.body.empty())
    spdlog::info("The API server received a {} request on \"{}\".", c.method, c.path);
  else
    spdlog::info("The API server received a {} request on \"{}\" with body {}.", c.method, c.path,
                 c.body);
  bool body_read = true;  // the body had its object's shape (parsed as Firecracker would)
  VmmReply reply;
  try {
    reply = dispatch(c.request, body_read);
  } catch (const UsageError& e) {
    reply = VmmReply::fault(400, e.what());
  }
  // As Firecracker: a body that was read and uses a deprecated field is answered with
  // "Deprecation: true", whether the request then succeeds or not.
  if (body_read) {
    for (const std::string& field : c.deprecated)
      spdlog::warn("{} {}: {} field is deprecated.", c.method == "Put" ? "PUT" : "PATCH", c.path,
                   field);
    if (!c.deprecated.empty()) reply.headers.emplace_back("Deprecation", "true");
  }
  if (reply.status >= 400)
    spdlog::error("Received Error. Status code: {} {}. Message: {}", reply.status,
                  reply.status == 400 ? "Bad Request" : "Error", reply.fault_message);
  return reply;
}

VmmReply VmmController::dispatch(const Request& r, bool& body_read) {
  namespace rq = request;
  const bool booted = state_ != State::kNotStarted;
  // Requests for a running VM; the rest configure it and are only taken before it starts.
  const bool after_boot =
      std::holds_alternative<rq::PatchDrive>(r) ||
      std::holds_alternative<rq::PatchNetworkInterface>(r) ||
      std::holds_alternative<rq::SendCtrlAltDel>(r) ||
      std::holds_alternative<rq::FlushMetrics>(r) || std::holds_alternative<rq::Pause>(r) ||
      std::holds_alternative<rq::Resume>(r) || std::holds_alternative<rq::CreateSnapshot>(r) ||
      std::holds_alternative<rq::GetBalloonStats>(r) ||
      (std::holds_alternative<rq::Invalid>(r) && std::get<rq::Invalid>(r).after_boot);
  const bool any_time =
      std::holds_alternative<rq::GetInstanceInfo>(r) || std::holds_alternative<rq::GetVersion>(r) ||
      std::holds_alternative<rq::GetVmConfig>(r) ||
      std::holds_alternative<rq::GetMachineConfig>(r) ||
      std::holds_alternative<rq::GetBalloon>(r) || std::holds_alternative<rq::PatchBalloon>(r) ||
      std::holds_alternative<rq::PatchBalloonStats>(r);
  if (after_boot && !booted) return VmmReply::fault(400, kNotBeforeBoot);
  if (!after_boot && !any_time && booted) return VmmReply::fault(400, kNotAfterBoot);

  VmConfig next = config_;  // configuration requests apply to a copy: a refusal changes nothing
  // The outcome of a configuration request: its problem (named with `object`), or applied.
  auto applied = [&](const char* object, const std::optional<FieldProblem>& problem,
                     std::string file_problem = "") {
    if (problem) return VmmReply::fault(400, fault_of(object, *problem));
    if (!file_problem.empty()) return VmmReply::fault(400, file_problem);
    config_ = std::move(next);
    if (std::string_view(object) != "logger" && std::string_view(object) != "metrics")
      boot_resources_set_ = true;
    return VmmReply::no_content();
  };
  return std::visit(
      Overloaded{
          [&](const rq::GetInstanceInfo&) {
            const char* state = state_ == State::kNotStarted ? "Not started"
                                : state_ == State::kRunning  ? "Running"
                                                             : "Paused";
            return VmmReply::ok(InstanceInfo{"Kiln", kInstanceId, state, KILN_VERSION});
          },
          [&](const rq::GetVersion&) { return VmmReply::ok(VersionInfo{KILN_VERSION}); },
          [&](const rq::GetVmConfig&) { return VmmReply::ok(config_); },
          [&](const rq::GetMachineConfig&) {
            return VmmReply::ok(MachineConfigInfo{config_.vcpus, config_.memory_mib, config_.smt,
                                                  config_.track_dirty_pages, config_.huge_pages});
          },
          [&](const rq::PatchDrive& p) { return patch_drive(p); },
          [&](const rq::PatchNetworkInterface& p) { return patch_network_interface(p); },
          [&](const rq::SendCtrlAltDel&) { return send_ctrl_alt_del(); },
          [&](const rq::FlushMetrics&) {
            // As Firecracker: only a running VM has metrics to flush; without PUT /metrics
            // there is nothing to write and the answer is still 204.
            flush_metrics();
            return VmmReply::no_content();
          },
          [&](const rq::Pause&) { return set_paused(true); },
          [&](const rq::Resume&) { return set_paused(false); },
          [&](const rq::Invalid& invalid) {
            body_read = !invalid.shape_error;
            return VmmReply::fault(400, invalid.fault_message);
          },
          [&](const rq::InstanceStart&) { return start_instance(); },
          [&](const rq::CreateSnapshot& c) { return create_snapshot(c); },
          [&](const rq::LoadSnapshot& l) { return load_snapshot(l); },
          [&](const rq::PutMachineConfig& p) {
            VmmReply reply = applied("machine-config", apply_machine_config(next, p.update, false));
            prepare_again_if_changed();
            return reply;
          },
          [&](const rq::PatchMachineConfig& p) {
            VmmReply reply = applied("machine-config", apply_machine_config(next, p.update, true));
            prepare_again_if_changed();
            return reply;
          },
          [&](const rq::PutBootSource& p) {
            auto problem = kiln::apply_boot_source(next, p.boot);
            VmmReply reply =
                applied("boot-source", problem, problem ? "" : boot_source_file_problem(next));
            prepare_again_if_changed();
            return reply;
          },
          [&](const rq::PutDrive& p) {
            auto problem = add_drive(next, p.drive);
            return applied("drive", problem, problem ? "" : drive_file_problem(p.drive));
          },
          [&](const rq::PutNetworkInterface& p) {
            return applied("network-interface", add_network_interface(next, p.net));
          },
          [&](const rq::PutLogger& p) {
            kiln::apply_logger(next, p.update);
            VmmReply reply = applied("logger", std::nullopt, logger_file_problem(next.logger));
            if (reply.status < 400) apply_logger();
            return reply;
          },
          [&](const rq::PutMetrics& p) {
            auto problem = set_metrics(next, p.metrics);
            return applied("metrics", problem, problem ? "" : metrics_file_problem(p.metrics));
          },
          [&](const rq::PutEntropy& p) {
            set_entropy(next, p.entropy);
            return applied("entropy", std::nullopt);
          },
          [&](const rq::PutSerial& p) {
            set_serial(next, p.serial_out_path);
            return applied("serial", std::nullopt);
          },
          [&](const rq::PutVsock& p) { return applied("vsock", set_vsock(next, p.vsock)); },
          // The directory is checked here and opened by the device at InstanceStart.
          [&](const rq::PutFs& p) { return applied("fs", add_fs(next, p.fs)); },
          [&](const rq::PutBalloon& p) {
            next.balloon = p.balloon;
            return applied("balloon", validate(p.balloon, next.memory_mib));
          },
          [&](const rq::GetBalloon&) {
            if (!config_.balloon) return VmmReply::fault(400, kNoBalloon);
            return VmmReply::ok(*config_.balloon);
          },
          [&](const rq::PatchBalloon& p) { return patch_balloon(p); },
          [&](const rq::PatchBalloonStats& p) { return patch_balloon_stats(p); },
          [&](const rq::GetBalloonStats&) {
            if (!config_.balloon) return VmmReply::fault(400, kNoBalloon);
            if (config_.balloon->stats_polling_interval_s == 0)
              return VmmReply::fault(400,
                                     "balloon: statistics are not enabled (PUT /balloon with "
                                     "stats_polling_interval_s > 0 before boot)");
            return VmmReply::ok(vmm_->virtio().balloon_stats());
          },
      },
      r);
}

// Files named by a request are checked when it arrives (as Firecracker does), not only at
// InstanceStart; the devices open them again then. Each returns empty, or the fault message.
std::string VmmController::boot_source_file_problem(const VmConfig& next) {
  std::string why;
  if (!(why = cannot_open(next.kernel_path, O_RDONLY)).empty())
    return "Boot source error: The kernel file cannot be opened: " + why + " (kernel_image_path " +
           next.kernel_path + ")";
  if (!next.initrd_path.empty() && !(why = cannot_open(next.initrd_path, O_RDONLY)).empty())
    return "Boot source error: The initrd file cannot be opened: " + why + " (initrd_path " +
           next.initrd_path + ")";
  return "";
}

std::string VmmController::drive_file_problem(const DriveConfig& d) {
  const std::string why = cannot_open(d.path, d.read_only ? O_RDONLY : O_RDWR);
  if (why.empty()) return "";
  return "Drive config error: Cannot open the drive file: " + why + " (path_on_host " + d.path +
         ")";
}

std::string VmmController::logger_file_problem(const LoggerConfig& logger) {
  if (logger.path.empty()) return "";
  const std::string why = cannot_open(logger.path, kAppendFlags);
  if (why.empty()) return "";
  return "Logger error: Cannot open the log file: " + why + " (log_path " + logger.path + ")";
}

std::string VmmController::metrics_file_problem(const MetricsConfig& metrics) {
  const std::string why = cannot_open(metrics.path, kAppendFlags);
  if (why.empty()) return "";
  return "Metrics error: Cannot open the metrics file: " + why + " (metrics_path " + metrics.path +
         ")";
}

VmmReply VmmController::start_instance() {
  if (config_.kernel_path.empty())
    return VmmReply::fault(400, "Cannot start microvm without kernel configuration.");
  // machine-config may have shrunk the guest after PUT /balloon.
  if (config_.balloon)
    if (auto problem = validate(*config_.balloon, config_.memory_mib))
      return VmmReply::fault(400, fault_of("balloon", *problem));
  start_vmm(nullptr, false);
  return VmmReply::no_content();
}

void VmmController::start_vmm(VmmRestore* restore, bool paused) {
  ConsoleFds console = console_;
  UniqueFd serial_out;
  if (!config_.serial_out_path.empty()) {
    serial_out.reset(
        ::open(config_.serial_out_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
    if (!serial_out) throw UsageError(errno_message("serial_out_path"));
    console.out = serial_out.get();
  }
  try {
    vmm_ = std::make_unique<Vmm>(config_, console, &metrics_, restore, take_prepared_vm());
  } catch (...) {
    if (!restore) prepare_vm_in_background();  // the VM stays configurable: another start
    throw;
  }
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
  if (paused) vmm_->pause();  // the vCPU threads start parked
  vmm_->start();
  state_ = paused ? State::kPaused : State::kRunning;
}

VmmReply VmmController::create_snapshot(const request::CreateSnapshot& c) {
  if (state_ != State::kPaused)
    return VmmReply::fault(400,
                           "Create snapshot error: the microVM must be paused first (PATCH /vm "
                           "{\"state\": \"Paused\"})");
  if (!codec_.encode) return VmmReply::fault(400, "Create snapshot error: not supported here");
  try {
    snapshot::StateWriter writer;
    const std::string config = codec_.encode(config_);
    writer.add(kConfigSection, std::vector<uint8_t>(config.begin(), config.end()));
    vmm_->save_snapshot(writer, c.snapshot_path, c.mem_file_path,
                        c.type == request::SnapshotType::kDiff);
  } catch (const Error& e) {
    return VmmReply::fault(400, std::string("Create snapshot error: ") + e.what());
  }
  spdlog::info("snapshot: {} state in {}, memory in {}",
               c.type == request::SnapshotType::kDiff ? "Diff" : "Full", c.snapshot_path,
               c.mem_file_path);
  return VmmReply::no_content();
}

VmmReply VmmController::load_snapshot(const request::LoadSnapshot& l) {
  if (boot_resources_set_)
    return VmmReply::fault(
        400, "Loading a microVM snapshot not allowed after configuring boot-specific resources.");
  if (!codec_.decode) return VmmReply::fault(400, "Load snapshot error: not supported here");
  auto fault = [](const std::string& why) {
    return VmmReply::fault(400, "Load snapshot error: " + why);
  };
  try {
    const snapshot::StateFile state = snapshot::StateFile::load(l.snapshot_path);
    const std::vector<uint8_t>& text = state.section(kConfigSection);
    VmConfig next = codec_.decode(std::string(text.begin(), text.end()), l);
    // The process's own logger and metrics stay; the rest is the snapshot's.
    next.logger = config_.logger;
    next.metrics = config_.metrics;
    next.track_dirty_pages = l.track_dirty_pages;
    if (l.huge_pages) next.huge_pages = *l.huge_pages;
    VmConfig before = std::exchange(config_, std::move(next));
    try {
      VmmRestore restore{state, l.mem_file_path, l.uffd, l.clock_realtime};
      start_vmm(&restore, !l.resume_vm);
    } catch (...) {
      vmm_.reset();
      config_ = std::move(before);
      throw;
    }
  } catch (const Error& e) {
    return fault(e.what());
  }
  boot_resources_set_ = true;
  spdlog::info("snapshot: restored {} ({})", l.snapshot_path, l.resume_vm ? "running" : "paused");
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

VmmReply VmmController::patch_drive(const request::PatchDrive& p) {
  DriveConfig* it = find_by(config_.drives, p.id, &DriveConfig::id);
  if (!it) return VmmReply::fault(400, "Drive config error: drive \"" + p.id + "\" not found");
  if (!p.path && !p.rate_limiter)
    return VmmReply::fault(400,
                           "Drive config error: the request changes nothing: a virtio-block "
                           "drive is updated with path_on_host and/or rate_limiter");
  if (p.path) {
    // Firecracker's words for an image that cannot be opened; the device reopens and checks it.
    const std::string why = cannot_open(*p.path, it->read_only ? O_RDONLY : O_RDWR);
    if (!why.empty())
      return VmmReply::fault(
          400, "Drive config error: Error manipulating the backing file: " + why + " " + *p.path);
    vmm_->replace_drive(p.id, *p.path);
    it->path = *p.path;
  }
  if (p.rate_limiter) {
    vmm_->update_drive_rate_limiter(p.id, *p.rate_limiter);
    it->rate_limiter = p.rate_limiter->applied_to(it->rate_limiter);
  }
  return VmmReply::no_content();
}

VmmReply VmmController::patch_balloon(const request::PatchBalloon& p) {
  if (!config_.balloon) return VmmReply::fault(400, kNoBalloon);
  BalloonConfig next = *config_.balloon;
  next.amount_mib = p.amount_mib;
  if (auto problem = validate(next, config_.memory_mib))
    return VmmReply::fault(400, fault_of("balloon", *problem));
  if (vmm_) vmm_->virtio().set_balloon_target(p.amount_mib);
  config_.balloon = next;
  return VmmReply::no_content();
}

VmmReply VmmController::patch_balloon_stats(const request::PatchBalloonStats& p) {
  if (!config_.balloon) return VmmReply::fault(400, kNoBalloon);
  BalloonConfig next = *config_.balloon;
  if (vmm_ && (next.stats_polling_interval_s == 0) != (p.stats_polling_interval_s == 0))
    return VmmReply::fault(400,
                           "balloon: stats_polling_interval_s: statistics cannot be turned on or "
                           "off after boot (only the interval changes)");
  next.stats_polling_interval_s = p.stats_polling_interval_s;
  if (auto problem = validate(next, config_.memory_mib))
    return VmmReply::fault(400, fault_of("balloon", *problem));
  if (vmm_) vmm_->virtio().set_balloon_stats_interval(p.stats_polling_interval_s);
  config_.balloon = next;
  return VmmReply::no_content();
}

VmmReply VmmController::patch_network_interface(const request::PatchNetworkInterface& p) {
  NetConfig* it = find_by(config_.nets, p.id, &NetConfig::iface_id);
  if (!it)
    return VmmReply::fault(
        400, "network-interface: iface_id: no network interface with id \"" + p.id + "\"");
  vmm_->update_net_rate_limiters(p.id, p.rx_rate_limiter, p.tx_rate_limiter);
  it->rx_rate_limiter = p.rx_rate_limiter.applied_to(it->rx_rate_limiter);
  it->tx_rate_limiter = p.tx_rate_limiter.applied_to(it->tx_rate_limiter);
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
