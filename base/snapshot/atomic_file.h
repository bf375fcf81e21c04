// Writing a snapshot file so that a crash never leaves one that loads half-written: the
// content goes to a temporary file beside `path` (mode 0600), is fsynced, renamed over `path`,
// and the directory is fsynced. On any failure `path` is as it was and the temporary is gone.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>

namespace kiln::snapshot {

// `fill` writes the content to the open temporary fd (`what` names it for errors). Throws
// kiln::Error naming `what` (e.g. "snapshot FILE") and the step that failed.
void replace_file_atomically(const std::string& path, const std::string& what,
                             const std::function<void(int fd)>& fill);

// write(2) until all of `bytes` is written at the fd's offset (or pwrite at `offset` >= 0).
void write_all(int fd, std::span<const uint8_t> bytes, const std::string& what,
               int64_t offset = -1);

}  // namespace kiln::snapshot
