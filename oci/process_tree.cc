#include "oci/process_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "base/error.h"
#include "base/unique_fd.h"

extern char** environ;

namespace kiln::oci {

namespace {

// The parent of process `pid` from /proc/PID/stat (its fourth field, after the name in
// parentheses, which may itself hold spaces and parentheses); 0 if it is gone.
pid_t parent_of(const std::string& pid) {
  std::ifstream f("/proc/" + pid + "/stat");
  std::string stat;
  if (!std::getline(f, stat)) return 0;
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 1));
  std::string state;
  long ppid = 0;
  rest >> state >> ppid;
  return static_cast<pid_t>(ppid);
}

}  // namespace

std::vector<pid_t> process_tree(pid_t root) {
  std::multimap<pid_t, pid_t> children;
  bool alive = false;
  std::unique_ptr<DIR, int (*)(DIR*)> proc(opendir("/proc"), closedir);
  if (!proc) throw_errno("list /proc");
  while (dirent* e = readdir(proc.get())) {
    std::string name = e->d_name;
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit) || name.size() > 9)
      continue;
    pid_t pid = static_cast<pid_t>(std::atol(name.c_str()));
    if (pid == root) alive = true;
    if (pid_t parent = parent_of(name)) children.emplace(parent, pid);
  }
  std::vector<pid_t> tree;
  if (!alive) return tree;
  std::set<pid_t> seen{root};
  tree.push_back(root);
  for (size_t i = 0; i < tree.size(); ++i) {
    auto [from, to] = children.equal_range(tree[i]);
    for (auto it = from; it != to; ++it)
      if (seen.insert(it->second).second) tree.push_back(it->second);
  }
  return tree;
}

std::string ps_table(const std::vector<pid_t>& pids, const std::vector<std::string>& args) {
  std::vector<std::string> argv{"ps"};
  if (args.empty())
    argv.push_back("-ef");
  else
    argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> c_argv;
  for (auto& a : argv) c_argv.push_back(a.data());
  c_argv.push_back(nullptr);
  int p[2];
  if (pipe2(p, O_CLOEXEC) < 0) throw_errno("pipe");
  UniqueFd in(p[0]), out(p[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out.get(), STDOUT_FILENO);
  pid_t child;
  int err = posix_spawnp(&child, "ps", &actions, nullptr, c_argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err) throw kiln::Error(std::string("run ps: ") + std::strerror(err));
  out.reset();
  std::string text;
  char buf[8192];
  ssize_t n;
  while (text.size() < (16u << 20) && (n = read(in.get(), buf, sizeof buf)) > 0)
    text.append(buf, static_cast<size_t>(n));
  int st = 0;
  waitpid(child, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) throw kiln::Error("ps failed (its arguments?)");

  std::istringstream lines(text);
  std::string header;
  std::getline(lines, header);
  std::istringstream columns(header);
  int pid_column = -1, i = 0;
  for (std::string c; columns >> c; ++i)
    if (c == "PID") pid_column = i;
  if (pid_column < 0) throw kiln::Error("ps printed no PID column (its arguments?)");
  std::string table = header + "\n";
  std::set<pid_t> wanted(pids.begin(), pids.end());
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    for (std::string field; static_cast<int>(f.size()) <= pid_column && fields >> field;)
      f.push_back(field);
    if (static_cast<int>(f.size()) <= pid_column) continue;
    const std::string& pid = f[static_cast<size_t>(pid_column)];
    if (pid.size() < 10 && std::all_of(pid.begin(), pid.end(), ::isdigit) &&
        wanted.count(static_cast<pid_t>(std::atol(pid.c_str()))))
      table += line + "\n";
  }
  return table;
}

}  // namespace kiln::oci
