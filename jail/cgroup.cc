#include "jail/cgroup.h"

#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::jail {

namespace {

struct Mount {
  std::string dir;
  std::string type;               // cgroup or cgroup2
  std::set<std::string> options;  // v1: the controllers are options
};

std::vector<Mount> cgroup_mounts() {
  std::ifstream in("/proc/self/mounts");
  if (!in) throw Error("cgroup: cannot read /proc/self/mounts");
  std::vector<Mount> mounts;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string source, dir, type, options;
    if (!(fields >> source >> dir >> type >> options)) continue;
    if (type != "cgroup" && type != "cgroup2") continue;
    Mount m{dir, type, {}};
    std::istringstream opts(options);
    for (std::string o; std::getline(opts, o, ',');) m.options.insert(o);
    mounts.push_back(std::move(m));
  }
  return mounts;
}

std::string controller_of(const std::string& file) {
  return file.substr(0, file.find('.'));
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Writes `value` to an existing cgroup file (cgroup files are not created by writes).
void write_cgroup_file(const std::string& path, const std::string& value, const std::string& what) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT)
      throw UsageError(what + ": " + path + " does not exist (is its controller enabled there?)");
    throw_errno(what + ": open " + path);
  }
  if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
    throw_errno(what + ": write '" + value + "' to " + path);
}

void make_dirs(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error("cgroup: mkdir " + dir + ": " + ec.message());
}

// The hierarchy's cgroup for the VM: made, its values written, this process moved in.
void fill(const std::string& root, const CgroupRequest& r,
          const std::vector<std::pair<std::string, std::string>>& values) {
  const std::string dir = root + "/" + r.parent + "/" + r.id;
  make_dirs(dir);
  for (const auto& [file, value] : values)
    write_cgroup_file(dir + "/" + file, value, "--cgroup " + file + "=" + value);
  write_cgroup_file(dir + "/cgroup.procs", std::to_string(::getpid()), "cgroup: moving the jail");
}

void enter_v1(const std::vector<Mount>& mounts, const CgroupRequest& r) {
  // Values by the hierarchy their controller is mounted at (several controllers may share one).
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> by_root;
  for (const auto& v : r.values) {
    const std::string controller = controller_of(v.first);
    const Mount* found = nullptr;
    for (const Mount& m : mounts)
      if (m.type == "cgroup" && m.options.count(controller)) found = &m;
    if (!found)
      throw UsageError("--cgroup " + v.first + ": no cgroup v1 hierarchy has the controller '" +
                       controller + "' (a host with cgroup v2 only: --cgroup-version 2)");
    by_root[found->dir].push_back(v);
  }
  for (const auto& [root, values] : by_root) fill(root, r, values);
}

void enter_v2(const std::vector<Mount>& mounts, const CgroupRequest& r) {
  const Mount* unified = nullptr;
  for (const Mount& m : mounts)
    if (m.type == "cgroup2") unified = &m;
  if (!unified) throw UsageError("--cgroup-version 2: this host mounts no cgroup v2 hierarchy");
  const std::string& root = unified->dir;
  std::set<std::string> controllers;
  for (const auto& v : r.values)
    if (controller_of(v.first) != "cgroup") controllers.insert(controller_of(v.first));
  std::string available = read_text(root + "/cgroup.controllers");
  while (!available.empty() && std::isspace(static_cast<unsigned char>(available.back())))
    available.pop_back();
  std::set<std::string> have;
  std::istringstream words(available);
  for (std::string w; words >> w;) have.insert(w);
  // Each controller enabled from the root down to the VM's parent cgroup.
  std::vector<std::string> chain = {root};
  std::istringstream parts(r.parent);
  for (std::string p; std::getline(parts, p, '/');) chain.push_back(chain.back() + "/" + p);
  make_dirs(chain.back());
  for (const std::string& c : controllers) {
    if (!have.count(c))
      throw UsageError("--cgroup: the cgroup v2 controller '" + c + "' is not available in " +
                       root + " (cgroup.controllers: " + available + ")");
    for (const std::string& dir : chain) {
      std::istringstream enabled(read_text(dir + "/cgroup.subtree_control"));
      bool on = false;
      for (std::string w; enabled >> w;) on = on || w == c;
      if (!on) write_cgroup_file(dir + "/cgroup.subtree_control", "+" + c, "cgroup: enabling " + c);
    }
  }
  fill(root, r, r.values);
}

}  // namespace

void enter_cgroup(const CgroupRequest& request) {
  const std::vector<Mount> mounts = cgroup_mounts();
  if (request.version == 1)
    enter_v1(mounts, request);
  else
    enter_v2(mounts, request);
}

}  // namespace kiln::jail
