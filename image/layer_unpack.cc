#include "image/layer_unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <unordered_set>
#include <vector>

#include "base/error.h"
#include "image/manifest.h"
#include "image/temp_dir.h"

namespace kiln::image {
namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueWhiteout = ".wh..wh..opq";

struct ReadFree {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct WriteFree {
  void operator()(archive* a) const { archive_write_free(a); }
};
using ReadArchive = std::unique_ptr<archive, ReadFree>;
using WriteArchive = std::unique_ptr<archive, WriteFree>;

ReadArchive open_layer(const std::string& path, bool raw, const std::string& what) {
  ReadArchive a(archive_read_new());
  if (!a) throw Error("libarchive: out of memory");
  archive_read_support_filter_all(a.get());
  if (raw)
    archive_read_support_format_raw(a.get());
  else
    archive_read_support_format_tar(a.get());
  if (archive_read_open_filename(a.get(), path.c_str(), 1 << 20) != ARCHIVE_OK)
    throw UsageError(what + ": cannot open " + path + ": " + archive_error_string(a.get()));
  return a;
}

std::string dirname_of(const std::string& rel) {
  const auto slash = rel.rfind('/');
  return slash == std::string::npos ? std::string() : rel.substr(0, slash);
}

std::string basename_of(const std::string& rel) {
  const auto slash = rel.rfind('/');
  return slash == std::string::npos ? rel : rel.substr(slash + 1);
}

// Every existing ancestor of `rel` below the root must be a real directory: a symlink there
// would send the write elsewhere (possibly outside the root). Returns false when an ancestor
// does not exist yet (then nothing below it exists either).
bool check_ancestors(const std::string& root, const std::string& rel, const std::string& what) {
  std::string path = root;
  size_t i = 0;
  for (;;) {
    const size_t j = rel.find('/', i);
    if (j == std::string::npos) return true;
    path += "/" + rel.substr(i, j - i);
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) return false;
      throw UsageError(errno_message(what + ": cannot look at " + rel.substr(0, j)));
    }
    if (S_ISLNK(st.st_mode))
      throw UsageError(what + ": entry '" + rel + "' leads through the symlink '" +
                       rel.substr(0, j) + "'; refusing to write through it");
    if (!S_ISDIR(st.st_mode))
      throw UsageError(what + ": entry '" + rel + "' is below '" + rel.substr(0, j) +
                       "', which is not a directory");
    i = j + 1;
  }
}

void remove_or_throw(const std::string& root, const std::string& rel, const std::string& what) {
  if (!remove_tree(root + "/" + rel))
    throw UsageError(what + ": cannot remove '" + rel + "' of a lower layer (permissions?)");
}

// Removes what the lower layers put in directory `dir` (relative, "" for the root) except the
// paths this layer made.
void opaque(const std::string& root, const std::string& dir,
            const std::unordered_set<std::string>& own, const std::string& what) {
  const std::string path = dir.empty() ? root : root + "/" + dir;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(path.c_str()), ::closedir);
  if (!d) return;
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d.get())) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    names.push_back(name);
  }
  for (const auto& name : names) {
    const std::string rel = dir.empty() ? name : dir + "/" + name;
    if (own.count(rel)) {
      // This layer made the directory: only its lower content goes.
      struct stat st {};
      if (::lstat((root + "/" + rel).c_str(), &st) == 0 && S_ISDIR(st.st_mode))
        opaque(root, rel, own, what);
      continue;
    }
    remove_or_throw(root, rel, what);
  }
}

}  // namespace

LayerUnpacker::LayerUnpacker(const std::string& root, UnpackLimits limits)
    : limits_(limits), as_root_(::geteuid() == 0) {
  char resolved[PATH_MAX];
  if (!::realpath(root.c_str(), resolved)) throw_errno("cannot resolve " + root);
  root_ = resolved;
}

void LayerUnpacker::apply(const std::string& path, const std::string& what) {
  ReadArchive in = open_layer(path, false, what);
  WriteArchive out(archive_write_disk_new());
  if (!out) throw Error("libarchive: out of memory");
  // Absolute destination paths (the root prefixed here), so no NOABSOLUTEPATHS: the entry's
  // own path was refused above if absolute. SECURE_SYMLINKS re-checks what check_ancestors did.
  int flags = ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
              ARCHIVE_EXTRACT_SECURE_SYMLINKS;
  if (as_root_) flags |= ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_XATTR;
  archive_write_disk_set_options(out.get(), flags);
  // No archive_write_disk_set_standard_lookup: owners are the numeric ids of the image, not
  // names looked up in the host's /etc/passwd.

  std::unordered_set<std::string> own;  // paths (and their ancestors) this layer wrote
  auto mark_own = [&](const std::string& rel) {
    for (std::string p = rel; !p.empty(); p = dirname_of(p))
      if (!own.insert(p).second) break;
  };
  archive_entry* entry = nullptr;
  for (;;) {
    const int r = archive_read_next_header(in.get(), &entry);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN)
      throw UsageError(what + ": not a readable tar layer: " + archive_error_string(in.get()));
    if (++stats_.entries > limits_.max_entries)
      throw UsageError(what + ": the image has more than " + std::to_string(limits_.max_entries) +
                       " entries (the limit)");
    const char* raw_name = archive_entry_pathname(entry);
    if (!raw_name) throw UsageError(what + ": an entry without a path");
    const std::string name = raw_name;
    if (name == "." || name == "./" || name == "/") continue;  // the root itself
    const std::string rel = checked_relative_path(name, what + ": entry '" + name + "'");
    const std::string base = basename_of(rel);
    const std::string parent = dirname_of(rel);

    if (base.starts_with(kWhiteoutPrefix)) {
      if (!check_ancestors(root_, rel, what)) continue;  // nothing below to hide
      if (base == kOpaqueWhiteout) {
        opaque(root_, parent, own, what);
      } else {
        const std::string hidden =
            (parent.empty() ? "" : parent + "/") + base.substr(kWhiteoutPrefix.size());
        if (base.size() == kWhiteoutPrefix.size())
          throw UsageError(what + ": whiteout '" + rel + "' names no file");
        if (!own.count(hidden)) remove_or_throw(root_, hidden, what);
      }
      continue;
    }

    const mode_t type = archive_entry_filetype(entry);
    if ((type == AE_IFCHR || type == AE_IFBLK) && !as_root_) {
      ++stats_.skipped_devices;
      continue;
    }
    const char* hardlink = archive_entry_hardlink(entry);
    if (hardlink) {
      const std::string target =
          checked_relative_path(hardlink, what + ": hard link '" + rel + "' target");
      if (!check_ancestors(root_, target, what))
        throw UsageError(what + ": hard link '" + rel + "' points to '" + target +
                         "', which does not exist");
      struct stat st {};
      if (::lstat((root_ + "/" + target).c_str(), &st) != 0 || S_ISDIR(st.st_mode))
        throw UsageError(what + ": hard link '" + rel + "' points to '" + target +
                         "', which is missing or a directory");
      archive_entry_set_hardlink(entry, (root_ + "/" + target).c_str());
    }
    const std::string dest = root_ + "/" + rel;
    if (check_ancestors(root_, rel, what)) {
      struct stat st {};
      if (::lstat(dest.c_str(), &st) == 0 && !(S_ISDIR(st.st_mode) && type == AE_IFDIR) &&
          !(hardlink && dest == archive_entry_hardlink(entry)))
        remove_or_throw(root_, rel, what);  // replaced by this layer's entry
    }
    archive_entry_set_pathname(entry, dest.c_str());
    if (type == AE_IFREG && !hardlink && archive_entry_size(entry) > 0 &&
        static_cast<uint64_t>(archive_entry_size(entry)) > limits_.max_bytes - stats_.bytes)
      throw UsageError(what + ": the image unpacks to more than " +
                       std::to_string(limits_.max_bytes) + " bytes (the limit)");
    if (archive_write_header(out.get(), entry) < ARCHIVE_WARN)
      throw UsageError(what + ": cannot create '" + rel + "': " + archive_error_string(out.get()));
    const void* buf = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    for (;;) {
      const int rr = archive_read_data_block(in.get(), &buf, &size, &offset);
      if (rr == ARCHIVE_EOF) break;
      if (rr < ARCHIVE_WARN)
        throw UsageError(what + ": reading '" + rel + "': " + archive_error_string(in.get()));
      if (size > limits_.max_bytes - stats_.bytes)
        throw UsageError(what + ": the image unpacks to more than " +
                         std::to_string(limits_.max_bytes) + " bytes (the limit)");
      stats_.bytes += size;
      if (archive_write_data_block(out.get(), buf, size, offset) < ARCHIVE_WARN)
        throw UsageError(what + ": writing '" + rel + "': " + archive_error_string(out.get()));
    }
    if (archive_write_finish_entry(out.get()) < ARCHIVE_WARN)
      throw UsageError(what + ": finishing '" + rel + "': " + archive_error_string(out.get()));
    mark_own(rel);
  }
  // Directory modes and times are set last, as libarchive defers them.
  if (archive_write_close(out.get()) < ARCHIVE_WARN)
    throw UsageError(what + ": " + archive_error_string(out.get()));
}

Digest layer_diff_id(const std::string& path, const std::string& what) {
  ReadArchive in = open_layer(path, true, what);
  archive_entry* entry = nullptr;
  if (archive_read_next_header(in.get(), &entry) != ARCHIVE_OK)
    throw UsageError(what + ": cannot read " + path + ": " + archive_error_string(in.get()));
  Sha256 h;
  std::vector<char> buf(1 << 20);
  for (;;) {
    const la_ssize_t n = archive_read_data(in.get(), buf.data(), buf.size());
    if (n < 0) throw UsageError(what + ": reading " + path + ": " + archive_error_string(in.get()));
    if (n == 0) break;
    h.update(buf.data(), static_cast<size_t>(n));
  }
  return h.finish();
}

}  // namespace kiln::image
