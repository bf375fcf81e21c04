// The one command type between Kiln's front ends (HTTP API, config files, CLI) and the VMM
// controller, and its reply. Bodies are the API's JSON objects; the controller validates them.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

namespace kiln {

struct VmmCommand {
  enum class Kind {
    kGetInstanceInfo,
    kGetVersion,
    kGetVmConfig,
    kGetMachineConfig,
    kPutMachineConfig,
    kPatchMachineConfig,
    kPutBootSource,
    kPutDrive,
    kPatchDrive,
    kPutNetworkInterface,
    kPatchNetworkInterface,
    kInstanceStart,
    kSendCtrlAltDel,
    kFlushMetrics,
    kPauseVm,
    kResumeVm,
    kPutLogger,
    kPutMetrics,
    kPutEntropy,
    kPutSerial,
    kPutVsock,
    kPutFs,  // Kiln's own: a virtio-fs share
  };
  Kind kind;
  std::string id;  // {drive_id} / {iface_id} / {fs_id} from the path
  nlohmann::json body;
  std::string text;  // the body as received: error messages give positions in it
};

struct VmmReply {
  int status = 204;     // HTTP status
  nlohmann::json body;  // null: no body; errors: {"fault_message": "..."}
  // Extra response headers, e.g. {"Deprecation", "true"} when the request used a deprecated
  // field. Names and values are the API's own constants, never request data.
  std::vector<std::pair<std::string, std::string>> headers;

  static VmmReply ok(nlohmann::json body) { return {200, std::move(body), {}}; }
  static VmmReply no_content() { return {204, nullptr, {}}; }
  static VmmReply fault(int status, const std::string& message) {
    return {status, nlohmann::json{{"fault_message", message}}, {}};
  }
};

}  // namespace kiln
