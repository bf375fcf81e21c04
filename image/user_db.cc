#include "image/user_db.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <charconv>
#include <optional>
#include <string_view>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::image {
namespace {

constexpr size_t kMaxDbBytes = 4u << 20;

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t i = 0;
  for (;;) {
    const size_t j = s.find(sep, i);
    out.push_back(s.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i));
    if (j == std::string_view::npos) return out;
    i = j + 1;
  }
}

std::optional<uint32_t> parse_id(std::string_view s) {
  uint32_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v == UINT32_MAX) return std::nullopt;
  return v;
}

struct Entry {  // one line of passwd (name, uid, gid, home) or group (name, gid, members)
  std::string name;
  uint32_t id = 0, gid = 0;
  std::string home;
  std::vector<std::string> members;
};

std::vector<Entry> parse_db(const std::string& text, bool passwd) {
  std::vector<Entry> out;
  for (std::string_view line : split(text, '\n')) {
    if (line.empty() || line.front() == '#') continue;
    const auto f = split(line, ':');
    if (f.size() < (passwd ? 7u : 4u)) continue;  // malformed lines are skipped, as libc does
    const auto id = parse_id(f[2]);
    if (!id) continue;
    Entry e;
    e.name = f[0];
    e.id = *id;
    if (passwd) {
      const auto gid = parse_id(f[3]);
      if (!gid) continue;
      e.gid = *gid;
      e.home = f[5];
    } else if (!f[3].empty()) {
      for (auto m : split(f[3], ',')) e.members.emplace_back(m);
    }
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

bool read_in_root(const std::string& rootfs, const std::string& path, std::string& out) {
  UniqueFd root(::open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) throw_errno("cannot open " + rootfs);
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  UniqueFd fd(static_cast<int>(::syscall(SYS_openat2, root.get(), path.c_str(), &how, sizeof how)));
  if (!fd) {
    if (errno == ENOENT || errno == ENOTDIR) return false;
    throw UsageError(errno_message("cannot open " + path + " in the image " + rootfs));
  }
  out.clear();
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("cannot read " + path + " in " + rootfs);
    if (n == 0) return true;
    if (out.size() + static_cast<size_t>(n) > kMaxDbBytes)
      throw UsageError(path + " in " + rootfs + " is larger than " + std::to_string(kMaxDbBytes) +
                       " bytes");
    out.append(buf, static_cast<size_t>(n));
  }
}

ResolvedUser resolve_user(const std::string& rootfs, const std::string& spec,
                          const std::string& what) {
  const auto colon = spec.find(':');
  const std::string user = spec.empty() ? "0" : spec.substr(0, colon);
  const std::string group = colon == std::string::npos ? "" : spec.substr(colon + 1);
  if (user.empty() || (colon != std::string::npos && group.empty()))
    throw UsageError(what + ": '" + spec + "' is not USER[:GROUP]");
  std::string text;
  const auto passwd =
      read_in_root(rootfs, "/etc/passwd", text) ? parse_db(text, true) : std::vector<Entry>{};
  const auto groups =
      read_in_root(rootfs, "/etc/group", text) ? parse_db(text, false) : std::vector<Entry>{};
  ResolvedUser r;
  const auto uid = parse_id(user);
  const Entry* pw = nullptr;
  for (const auto& e : passwd)
    if (uid ? e.id == *uid : e.name == user) {
      pw = &e;
      break;
    }
  if (!uid && !pw) throw UsageError(what + ": no user '" + user + "' in the image's /etc/passwd");
  if (pw) {
    r.uid = pw->id;
    r.gid = pw->gid;
    r.name = pw->name;
    if (!pw->home.empty()) r.home = pw->home;
  } else {
    r.uid = *uid;
  }
  if (!group.empty()) {
    if (auto gid = parse_id(group)) {
      r.gid = *gid;
    } else {
      const Entry* gr = nullptr;
      for (const auto& e : groups)
        if (e.name == group) {
          gr = &e;
          break;
        }
      if (!gr) throw UsageError(what + ": no group '" + group + "' in the image's /etc/group");
      r.gid = gr->id;
    }
  }
  if (!r.name.empty())
    for (const auto& e : groups)
      for (const auto& m : e.members)
        if (m == r.name && e.id != r.gid) {
          r.groups.push_back(e.id);
          break;
        }
  return r;
}

}  // namespace kiln::image
