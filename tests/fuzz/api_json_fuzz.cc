// libFuzzer target for the API's JSON bodies: routes an arbitrary request body to every
// endpoint's typed parser (api/vm_json.cc, as the API and the config files use it; also the
// body as a whole JSON configuration and as a TOML file, api/config_files.cc), applies the
// typed request with the controller's state-apply functions (vmm/vm_config_ops.cc) and checks
// that a body is either refused (a UsageError, an Invalid request, a FieldProblem) or leaves a
// configuration that holds its invariants.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <variant>

#include "api/config_files.h"
#include "api/routes.h"
#include "api/vm_json.h"
#include "base/error.h"
#include "vmm/vm_config_ops.h"

namespace {

struct Endpoint {
  const char* method;
  const char* path;
};
constexpr Endpoint kEndpoints[] = {
    {"PUT", "/machine-config"},
    {"PATCH", "/machine-config"},
    {"PUT", "/boot-source"},
    {"PUT", "/drives/rootfs"},
    {"PUT", "/drives/data_1"},
    {"PATCH", "/drives/rootfs"},
    {"PUT", "/actions"},
    {"PATCH", "/vm"},
    {"PUT", "/logger"},
    {"PUT", "/metrics"},
    {"PUT", "/entropy"},
    {"PUT", "/serial"},
    {"PUT", "/vsock"},
    {"PUT", "/network-interfaces/eth0"},
    {"PUT", "/fs/share0"},
    {"PUT", "/fs/root"},
    {"PUT", "/config-file"},  // not a route: exercises the whole-configuration parser
    {"PUT", "/balloon"},
    {"PATCH", "/balloon"},
    {"PATCH", "/balloon/statistics"},
    {"PUT", "/config-toml"},  // not a route: the body as a `kiln run --config` TOML file
};

void check_invariants(const kiln::VmConfig& c) {
  if (c.vcpus < 1 || c.vcpus > 1024 || c.memory_mib < 16 || c.memory_mib > (1u << 20)) abort();
  int roots = 0;
  for (size_t i = 0; i < c.drives.size(); ++i) {
    if (c.drives[i].is_root && i != 0) abort();
    roots += c.drives[i].is_root;
    if (c.drives[i].path.empty() || c.drives[i].id.empty()) abort();
  }
  if (roots > 1) abort();
  if (c.balloon && (c.balloon->amount_mib > c.memory_mib ||
                    c.balloon->stats_polling_interval_s > kiln::BalloonConfig::kMaxStatsIntervalS))
    abort();
  for (const kiln::FsConfig& s : c.fs)
    if (s.tag.empty() || s.tag.size() > kiln::FsConfig::kMaxTagBytes || s.path.empty() ||
        s.num_request_queues < 1 || s.num_request_queues > kiln::FsConfig::kMaxRequestQueues)
      abort();
}

// What the controller does with a configuration request before boot: the same state-apply
// functions (vmm/vm_config_ops.h). A problem they report is a refusal, as a UsageError would be.
void apply_request(kiln::VmConfig& config, const kiln::Request& r) {
  namespace rq = kiln::request;
  std::optional<kiln::FieldProblem> problem;
  if (auto* p = std::get_if<rq::PutMachineConfig>(&r))
    problem = kiln::apply_machine_config(config, p->update, false);
  else if (auto* p = std::get_if<rq::PatchMachineConfig>(&r))
    problem = kiln::apply_machine_config(config, p->update, true);
  else if (auto* p = std::get_if<rq::PutBootSource>(&r))
    problem = kiln::apply_boot_source(config, p->boot);
  else if (auto* p = std::get_if<rq::PutDrive>(&r))
    problem = kiln::add_drive(config, p->drive);
  else if (auto* p = std::get_if<rq::PutLogger>(&r))
    kiln::apply_logger(config, p->update);
  else if (auto* p = std::get_if<rq::PutMetrics>(&r))
    problem = kiln::set_metrics(config, p->metrics);
  else if (auto* p = std::get_if<rq::PutEntropy>(&r))
    kiln::set_entropy(config, p->entropy);
  else if (auto* p = std::get_if<rq::PutSerial>(&r))
    kiln::set_serial(config, p->serial_out_path);
  else if (auto* p = std::get_if<rq::PutVsock>(&r))
    problem = kiln::set_vsock(config, p->vsock);
  else if (auto* p = std::get_if<rq::PutNetworkInterface>(&r))
    problem = kiln::add_network_interface(config, p->net);
  else if (auto* p = std::get_if<rq::PutFs>(&r))
    problem = kiln::add_fs(config, p->fs);
  else if (auto* p = std::get_if<rq::PutBalloon>(&r)) {
    if (!(problem = kiln::validate(p->balloon, config.memory_mib))) config.balloon = p->balloon;
  } else if (auto* p = std::get_if<rq::Invalid>(&r); p && p->fault_message.empty())
    abort();  // a refusal always says why
  if (problem && (problem->field.empty() || problem->problem.empty())) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const Endpoint& e = kEndpoints[data[0] % std::size(kEndpoints)];
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  kiln::VmConfig config;
  // A configuration with a root drive already, so replacement and second-root paths run too.
  config.drives.push_back({"/root.img", false, "rootfs", true});
  try {
    if (std::string(e.path) == "/config-toml") {
      // A memfd named by its /proc path: a regular file, as the TOML reader wants.
      const int fd = ::memfd_create("kiln-fuzz-toml", MFD_CLOEXEC);
      if (fd < 0 || ::write(fd, body.data(), body.size()) != static_cast<ssize_t>(body.size()))
        abort();
      try {
        kiln::api::apply_toml_config_file(config, "/proc/self/fd/" + std::to_string(fd));
      } catch (...) {
        ::close(fd);
        throw;
      }
      ::close(fd);
    } else if (std::string(e.path) == "/config-file") {
      auto doc = nlohmann::json::parse(body, nullptr, false);
      if (!doc.is_discarded()) kiln::api::apply_full_config(config, doc);
    } else {
      kiln::api::HttpRequest request;
      request.method = e.method;
      request.path = e.path;
      request.body = body;
      auto routed = kiln::api::route(request);
      if (auto* command = std::get_if<kiln::VmmCommand>(&routed))
        apply_request(config, command->request);
      else if (std::get<kiln::VmmReply>(routed).status < 400)
        abort();
    }
  } catch (const kiln::UsageError&) {
    return 0;  // refused with a message: fine
  }
  check_invariants(config);
  return 0;
}
