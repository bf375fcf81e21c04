#include "api/snapshot_cli.h"

#include <nlohmann/json.hpp>

#include <cstdio>

#include "base/error.h"
#include "base/snapshot/memory_file.h"
#include "base/stop.h"
#include "base/vmm_api.h"

namespace kiln::api {

namespace {

// The fault message of an error reply, or its body.
std::string fault_of(const ApiReply& reply) {
  try {
    const auto body = nlohmann::json::parse(reply.body);
    if (body.is_object() && body.contains("fault_message") && body["fault_message"].is_string())
      return body["fault_message"].get<std::string>();
  } catch (const nlohmann::json::exception&) {
  }
  return reply.body;
}

}  // namespace

int snapshot_create(const CliCommand::SnapshotCreate& c) {
  const std::string type = c.create.type == request::SnapshotType::kDiff ? "Diff" : "Full";
  const nlohmann::json body = {{"snapshot_type", type},
                               {"snapshot_path", c.create.snapshot_path},
                               {"mem_file_path", c.create.mem_file_path}};
  struct Step {
    const char* what;
    const char* method;
    const char* path;
    std::string body;
  };
  std::vector<Step> steps = {{"pause", "PATCH", "/vm", R"({"state": "Paused"})"},
                             {"snapshot", "PUT", "/snapshot/create", body.dump()}};
  if (c.resume) steps.push_back({"resume", "PATCH", "/vm", R"({"state": "Resumed"})"});
  for (const Step& s : steps) {
    ApiReply reply;
    try {
      // Writing a large guest's memory takes a while: no short deadline on the snapshot.
      reply = vmm_api_call(c.api_socket, s.method, s.path, s.body, 600'000);
    } catch (const Error& e) {
      std::fprintf(stderr, "kiln snapshot create: %s: %s\n", s.what, e.what());
      return kExitVmError;
    }
    if (reply.status >= 300) {
      std::fprintf(stderr, "kiln snapshot create: %s: HTTP %d: %s\n", s.what, reply.status,
                   fault_of(reply).c_str());
      return kExitUsage;
    }
  }
  return 0;
}

int snapshot_rebase(const std::string& base_file, const std::string& diff_file) {
  try {
    snapshot::rebase_memory_file(base_file, diff_file);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln snapshot rebase: %s\n", e.what());
    return kExitUsage;
  }
}

}  // namespace kiln::api
