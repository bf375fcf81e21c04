#include "image/temp_dir.h"

#include <stdlib.h>

#include <filesystem>
#include <utility>
#include <vector>

#include "base/error.h"

namespace kiln::image {

TempDir::TempDir(const std::string& parent, const std::string& prefix) {
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) throw Error("cannot create " + parent + ": " + ec.message());
  std::string templ = parent + "/" + prefix + "XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (!::mkdtemp(buf.data())) throw_errno("cannot create a temporary directory in " + parent);
  path_ = buf.data();
}

TempDir::~TempDir() {
  if (!path_.empty()) remove_tree(path_);
}

TempDir::TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    if (!path_.empty()) remove_tree(path_);
    path_ = std::exchange(other.path_, {});
  }
  return *this;
}

bool remove_tree(const std::string& path) {
  std::error_code ec;
  // libstdc++'s remove_all looks at each entry with symlink_status: links are removed, never
  // followed.
  std::filesystem::remove_all(path, ec);
  if (!ec) return true;
  // Not root: an image's read-only directories (mode 0555, 0000) keep their entries. Make each
  // directory writable by its owner (never through a symlink: the iterator does not follow
  // them, and symlink_status sees links as links), then try again.
  namespace fs = std::filesystem;
  std::error_code walk;
  if (fs::is_directory(fs::symlink_status(path, walk)))
    fs::permissions(path, fs::perms::owner_all, fs::perm_options::add, walk);
  for (fs::recursive_directory_iterator it(path, walk), end; !walk && it != end;
       it.increment(walk)) {
    std::error_code e;
    if (fs::is_directory(it->symlink_status(e)))
      fs::permissions(it->path(), fs::perms::owner_all,
                      fs::perm_options::add | fs::perm_options::nofollow, e);
  }
  ec.clear();
  fs::remove_all(path, ec);
  return !ec;
}

}  // namespace kiln::image
