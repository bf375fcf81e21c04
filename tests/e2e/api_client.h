// Test helpers for the management API: a background `kiln` process, a minimal HTTP client on a
// Unix socket, and a checker that holds every reply to Kiln's own description, api/openapi.json.
#pragma once

#include <nlohmann/json.hpp>

#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kiln::e2e {

// `kiln` running in the background; output collected on a thread.
class KilnProcess {
 public:
  // `kiln` with `args`, or `program` instead when given.
  explicit KilnProcess(const std::vector<std::string>& args, const std::string& program = "");
  ~KilnProcess();  // SIGKILL if still running
  // Waits up to `seconds` for exit; returns the exit code, -1 on timeout (process killed).
  int wait(int seconds);
  void write_stdin(const std::string& data);
  void signal(int sig);
  std::string out();
  std::string err();
  // Waits until stdout contains `text`; false after `seconds`.
  bool wait_for_output(const std::string& text, int seconds);
  int pid() const { return pid_; }

 private:
  int pid_ = -1;
  int stdin_fd_ = -1;
  std::thread reader_;
  std::mutex mutex_;
  std::string out_, err_;
  int exit_code_ = -2;
};

struct ApiResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names in lower case
  std::string raw_body;
  nlohmann::json body;  // parsed when JSON, else null
  const std::string* header(const std::string& name) const {
    for (const auto& [k, v] : headers)
      if (k == name) return &v;
    return nullptr;
  }
};

// $TMPDIR, else /tmp; and a fresh socket path there: PREFIX-PID-RANDOM.sock.
std::string temp_dir();
std::string temp_socket_path(const std::string& prefix);
// Waits until `socket_path` accepts connections (up to `seconds`).
bool wait_for_socket(const std::string& socket_path, int seconds);
// One request on a fresh connection.
ApiResponse api_request(const std::string& socket_path, const std::string& method,
                        const std::string& path, const std::string& body = "");
// Raw bytes in, raw response out (for malformed requests).
std::string raw_exchange(const std::string& socket_path, const std::string& bytes);

// Holds responses to the OpenAPI description (env KILN_OPENAPI): the operation exists, the
// status is documented, the body matches the documented schema. Returns "" or the mismatch.
class OpenApi {
 public:
  OpenApi();
  std::string check(const std::string& method, const std::string& path_template,
                    const ApiResponse& response) const;
  std::string check_request(const std::string& method, const std::string& path_template,
                            const nlohmann::json& body) const;
  std::vector<std::pair<std::string, std::string>> operations() const;  // (method, path)

 private:
  std::string match(const nlohmann::json& schema, const nlohmann::json& value,
                    const std::string& where) const;
  nlohmann::json doc_;
};

}  // namespace kiln::e2e
