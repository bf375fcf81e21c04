#include "sandbox/registry.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::sandbox {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr size_t kMaxRecord = 16 << 20;

const char* kStatus[] = {"starting", "created", "running", "exited"};

}  // namespace

// sandbox.json: every field of Record (all required when read back).
NLOHMANN_JSON_SERIALIZE_ENUM(Status, {{Status::kStarting, "starting"},
                                      {Status::kCreated, "created"},
                                      {Status::kRunning, "running"},
                                      {Status::kExited, "exited"}})
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(Record, name, pid, pid_start, root, command, created, status,
                                   exit_status, env, cwd, uid, gid, groups, user_root)

void check_name(const std::string& name) {
  auto ok = [](char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (!first && (c == '_' || c == '.' || c == '-'));
  };
  bool good = !name.empty() && name.size() <= 64;
  for (size_t i = 0; good && i < name.size(); ++i) good = ok(name[i], i == 0);
  if (!good)
    throw kiln::UsageError("--name '" + name.substr(0, 80) +
                           "': a name is 1 to 64 of [A-Za-z0-9_.-], starting with a letter or "
                           "digit");
}

std::string random_name() {
  unsigned char b[6];
  if (getrandom(b, sizeof b, 0) != static_cast<ssize_t>(sizeof b)) throw_errno("getrandom");
  char out[13];
  for (size_t i = 0; i < sizeof b; ++i) std::snprintf(out + 2 * i, 3, "%02x", b[i]);
  return out;
}

uint64_t process_start_time(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  // "pid (comm) state ppid ...": comm may hold spaces and ')', so fields count from the last ')'.
  auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i)
    if (i == 22) return std::stoull(field);
  return 0;
}

fs::path Registry::default_root() {
  if (const char* d = getenv("KILN_SANDBOX_DIR"); d && *d) return d;
  if (const char* x = getenv("XDG_RUNTIME_DIR"); x && *x) return fs::path(x) / "kiln" / "sandboxes";
  if (geteuid() == 0) return "/run/kiln/sandboxes";
  return fs::path("/tmp") / ("kiln-" + std::to_string(geteuid())) / "sandboxes";
}

Registry::Registry(fs::path root) : root_(std::move(root)) {}

fs::path Registry::create(const std::string& name) {
  check_name(name);
  std::error_code ec;
  fs::create_directories(root_, ec);
  if (ec)
    throw kiln::Error("cannot create the sandbox directory " + root_.string() + ": " +
                      ec.message() + " (set KILN_SANDBOX_DIR)");
  fs::path d = dir(name);
  if (mkdir(d.c_str(), 0700) < 0) {
    if (errno == EEXIST)
      throw kiln::UsageError("--name " + name + ": a sandbox of that name exists (" +
                             (fs::exists(d / "sandbox.json") ? "see kiln sandbox ls -a; " : "") +
                             "kiln sandbox rm " + name + " removes it)");
    throw_errno("mkdir " + d.string());
  }
  return d;
}

void Registry::write(const Record& r) const {
  fs::path tmp = dir(r.name) / "sandbox.json.tmp", final = dir(r.name) / "sandbox.json";
  {
    UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd) throw_errno("write " + tmp.string());
    std::string text = json(r).dump(2, ' ', false, json::error_handler_t::replace) + "\n";
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
      throw_errno("write " + tmp.string());
  }
  if (rename(tmp.c_str(), final.c_str()) < 0) throw_errno("rename " + tmp.string());
}

Record Registry::read(const std::string& name) const {
  check_name(name);
  fs::path p = dir(name) / "sandbox.json";
  std::ifstream f(p);
  if (!f)
    throw kiln::UsageError("no sandbox named '" + name + "' (kiln sandbox ls -a lists them; in " +
                           root_.string() + ")");
  std::error_code ec;
  if (fs::file_size(p, ec) > kMaxRecord) throw kiln::Error(p.string() + " is too large");
  try {
    return json::parse(f).get<Record>();
  } catch (const std::exception& e) {
    throw kiln::Error("the record " + p.string() + " is damaged: " + e.what() +
                      " (kiln sandbox rm " + name + " removes it)");
  }
}

std::vector<Record> Registry::list() const {
  std::vector<Record> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root_, ec)) {
    std::string name = e.path().filename().string();
    try {
      out.push_back(read(name));
    } catch (const std::exception& ex) {
      spdlog::warn("sandbox {}: {}", name, ex.what());
    }
  }
  std::sort(out.begin(), out.end(),
            [](const Record& a, const Record& b) { return a.name < b.name; });
  return out;
}

void Registry::remove(const std::string& name) const {
  check_name(name);
  std::error_code ec;
  fs::remove_all(dir(name), ec);
  if (ec) throw kiln::Error("remove " + dir(name).string() + ": " + ec.message());
}

bool Registry::alive(const Record& r) {
  return r.pid > 0 && kill(r.pid, 0) == 0 && process_start_time(r.pid) == r.pid_start;
}

const char* status_name(const Record& r) {
  if (r.status == Status::kExited) return "exited";
  return Registry::alive(r) ? kStatus[static_cast<int>(r.status)] : "dead";
}

}  // namespace kiln::sandbox
