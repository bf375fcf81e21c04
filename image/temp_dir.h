// A directory made with mkdtemp(3) and removed with everything in it when its owner goes,
// unless released (after it was renamed into place). Removal never follows symlinks.
#pragma once

#include <string>

namespace kiln::image {

class TempDir {
 public:
  TempDir() = default;
  // Makes PARENT/PREFIXXXXXXX (PARENT is created if missing).
  TempDir(const std::string& parent, const std::string& prefix);
  ~TempDir();
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // The directory is no longer removed (it was renamed, or is kept on purpose).
  void release() { path_.clear(); }

 private:
  std::string path_;
};

// Removes `path` and, if a directory, everything below it, without following symlinks; a
// missing path is not an error. Returns false if something could not be removed.
bool remove_tree(const std::string& path);

}  // namespace kiln::image
