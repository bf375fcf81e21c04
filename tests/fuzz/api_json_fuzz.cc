// libFuzzer target for the API's JSON bodies: routes an arbitrary request body to every
// endpoint's parser (the same functions the controller and config files use) and checks that a
// body is either refused with a UsageError or leaves a configuration that holds its invariants.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <variant>

#include "api/fs_json.h"
#include "api/routes.h"
#include "api/vm_json.h"
#include "base/error.h"

namespace {

struct Endpoint {
  const char* method;
  const char* path;
};
constexpr Endpoint kEndpoints[] = {
    {"PUT", "/machine-config"}, {"PATCH", "/machine-config"},
    {"PUT", "/boot-source"},    {"PUT", "/drives/rootfs"},
    {"PUT", "/drives/data_1"},  {"PATCH", "/drives/rootfs"},
    {"PUT", "/actions"},        {"PATCH", "/vm"},
    {"PUT", "/logger"},         {"PUT", "/metrics"},
    {"PUT", "/entropy"},        {"PUT", "/serial"},
    {"PUT", "/vsock"},          {"PUT", "/network-interfaces/eth0"},
    {"PUT", "/fs/share0"},      {"PUT", "/fs/root"},
    {"PUT", "/config-file"},  // not a route: exercises the whole-configuration parser
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
  for (const kiln::FsConfig& s : c.fs)
    if (s.tag.empty() || s.tag.size() > kiln::FsConfig::kMaxTagBytes || s.path.empty() ||
        s.num_request_queues < 1 || s.num_request_queues > kiln::FsConfig::kMaxRequestQueues)
      abort();
}

void apply(kiln::VmConfig& config, const kiln::VmmCommand& c) {
  using K = kiln::VmmCommand::Kind;
  switch (c.kind) {
    case K::kPutMachineConfig:
      kiln::api::apply_machine_config(config, c.body, false);
      break;
    case K::kPatchMachineConfig:
      kiln::api::apply_machine_config(config, c.body, true);
      break;
    case K::kPutBootSource:
      kiln::api::apply_boot_source(config, c.body);
      break;
    case K::kPutDrive:
      kiln::api::apply_drive(config, c.id, c.body);
      break;
    case K::kPutLogger:
      kiln::api::apply_logger(config, c.body);
      break;
    case K::kPutMetrics:
      kiln::api::apply_metrics(config, c.body);
      break;
    case K::kPutEntropy:
      kiln::api::apply_entropy(config, c.body);
      break;
    case K::kPutSerial:
      kiln::api::apply_serial(config, c.body);
      break;
    case K::kPutVsock:
      kiln::api::apply_vsock(config, c.body);
      break;
    case K::kPutNetworkInterface:
      kiln::api::apply_network_interface(config, c.id, c.body);
      break;
    case K::kPutFs:
      kiln::api::apply_fs(config, c.id, c.body);
      break;
    default:
      break;
  }
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
    if (std::string(e.path) == "/config-file") {
      auto doc = nlohmann::json::parse(body, nullptr, false);
      if (!doc.is_discarded()) kiln::api::apply_full_config(config, doc);
    } else {
      kiln::api::HttpRequest request;
      request.method = e.method;
      request.path = e.path;
      request.body = body;
      auto routed = kiln::api::route(request);
      if (auto* command = std::get_if<kiln::VmmCommand>(&routed))
        apply(config, *command);
      else if (std::get<kiln::VmmReply>(routed).status < 400)
        abort();
    }
  } catch (const kiln::UsageError&) {
    return 0;  // refused with a message: fine
  }
  check_invariants(config);
  return 0;
}
