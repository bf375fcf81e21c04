// `kiln sandbox ls`, `kill` and `rm`: the registry's sandboxes, listed, signalled, removed.
#include <signal.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <thread>

#include "base/error.h"
#include "base/signals.h"
#include "sandbox/commands.h"
#include "sandbox/control.h"
#include "sandbox/registry.h"

namespace kiln::sandbox {

using namespace std::chrono_literals;

namespace {

std::string joined(const std::vector<std::string>& words, size_t max = 40) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out.size() > max ? out.substr(0, max - 3) + "..." : out;
}

std::string status_text(const Record& r) {
  std::string s = status_name(r);
  return s == "exited" ? s + " (" + std::to_string(r.exit_status) + ")" : s;
}

// A sandbox that is running now: its record, or UsageError.
Record running(const Registry& reg, const std::string& name) {
  Record r = reg.read(name);
  if (r.status == Status::kExited || !Registry::alive(r))
    throw kiln::UsageError("sandbox " + name + " is not running (" + status_text(r) + ")");
  return r;
}

}  // namespace

int list(bool all, bool quiet, bool as_json) {
  Registry reg;
  nlohmann::json out = nlohmann::json::array();
  if (!quiet && !as_json)
    std::printf("%-20s %-12s %-8s %-21s %-24s %s\n", "NAME", "STATUS", "PID", "CREATED", "ROOT",
                "COMMAND");
  for (const Record& r : reg.list()) {
    bool live = r.status != Status::kExited && Registry::alive(r);
    if (!all && !live) continue;
    if (quiet) {
      std::printf("%s\n", r.name.c_str());
    } else if (as_json) {
      out.push_back({{"name", r.name},
                     {"status", status_name(r)},
                     {"exit_status", r.status == Status::kExited ? nlohmann::json(r.exit_status)
                                                                 : nlohmann::json(nullptr)},
                     {"pid", live ? nlohmann::json(r.pid) : nlohmann::json(nullptr)},
                     {"created", r.created},
                     {"root", r.root},
                     {"command", r.command}});
    } else {
      std::printf("%-20s %-12s %-8s %-21s %-24s %s\n", r.name.c_str(), status_text(r).c_str(),
                  live ? std::to_string(r.pid).c_str() : "-", r.created.c_str(),
                  joined({r.root}, 24).c_str(), joined(r.command).c_str());
    }
  }
  if (as_json)
    std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return 0;
}

int kill(const std::string& name, const std::string& signal) {
  int sig = parse_signal(signal, "SIGNAL");
  Registry reg;
  running(reg, name);
  request_signal((reg.dir(name) / "control").string(), sig);
  return 0;
}

int remove(const std::vector<std::string>& names, bool force) {
  Registry reg;
  int rc = 0;
  for (const auto& name : names) {
    try {
      check_name(name);
      // A directory without a readable record (a run that died as it began, a damaged file)
      // is removed too: it only holds the name.
      std::optional<Record> rec;
      try {
        rec = reg.read(name);
      } catch (const kiln::UsageError&) {
        if (!std::filesystem::is_directory(reg.dir(name))) throw;
      } catch (const kiln::Error&) {
      }
      if (rec && rec->status != Status::kExited && Registry::alive(*rec)) {
        const Record& r = *rec;
        if (!force)
          throw kiln::UsageError("sandbox " + name +
                                 " is running (kiln sandbox kill it, or rm -f)");
        request_signal((reg.dir(name) / "control").string(), SIGKILL);
        // Its run process records the end and exits (it stops the VM 10 s after SIGKILL).
        auto deadline = std::chrono::steady_clock::now() + 20s;
        while (Registry::alive(r) && std::chrono::steady_clock::now() < deadline)
          std::this_thread::sleep_for(20ms);
        if (Registry::alive(r))
          throw kiln::Error("sandbox " + name + " did not stop within 20 s of SIGKILL");
      }
      reg.remove(name);
      std::printf("%s\n", name.c_str());
    } catch (const kiln::UsageError& e) {
      std::fprintf(stderr, "kiln sandbox rm: %s\n", e.what());
      rc = 2;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "kiln sandbox rm: %s\n", e.what());
      if (rc == 0) rc = 1;
    }
  }
  return rc;
}

}  // namespace kiln::sandbox
