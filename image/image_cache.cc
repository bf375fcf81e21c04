#include "image/image_cache.h"

#include <spdlog/spdlog.h>
#include <stdio.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>

#include "base/error.h"
#include "image/json_doc.h"
#include "image/temp_dir.h"

namespace kiln::image {
namespace {

bool is_dir(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void write_file(const std::string& path, const std::string& data) {
  FILE* f = ::fopen(path.c_str(), "wxe");
  if (!f) throw_errno("cannot create " + path);
  const bool ok = ::fwrite(data.data(), 1, data.size(), f) == data.size();
  if (::fclose(f) != 0 || !ok) throw_errno("cannot write " + path);
}

void check_platform(const ImageConfig& c, const CacheOptions& o, const std::string& what) {
  if ((!c.os.empty() && c.os != o.os) ||
      (!c.architecture.empty() && c.architecture != o.architecture))
    throw UsageError(what + ": the image is for " + c.os + "/" + c.architecture + ", not " + o.os +
                     "/" + o.architecture);
}

void verify_layer(const ImageSource& src, const LayerBlob& l) {
  const std::string file = src.local_path(l.path);
  if (l.digest) verify_file(file, *l.digest, l.size, l.what);
  if (l.diff_id) {
    const Digest got = layer_diff_id(file, l.what);
    if (got != *l.diff_id)
      throw UsageError(l.what + ": its uncompressed content does not match the config's " +
                       "rootfs.diff_ids entry " + l.diff_id->str() + " (it hashes to " + got.str() +
                       ")");
  }
}

}  // namespace

std::string default_cache_dir() {
  if (const char* c = std::getenv("KILN_CACHE"); c && *c) return c;
  const char* home = std::getenv("HOME");
  if (!home || !*home) throw UsageError("no cache directory: set KILN_CACHE or HOME");
  return std::string(home) + "/.cache/kiln";
}

UnpackedImage open_image(const std::string& text, const CacheOptions& options) {
  const std::string images =
      (options.cache_dir.empty() ? default_cache_dir() : options.cache_dir) + "/images";
  ImageSource src(parse_image_ref(text), options.os, options.architecture);
  const ImagePlan plan = src.plan();

  UnpackedImage out;
  out.config_digest = plan.config_digest;
  out.format = plan.format;
  out.dir = images + "/sha256-" + plan.config_digest.hex;
  out.rootfs = out.dir + "/rootfs";
  const std::string cwhat = "config " + plan.config_digest.str();
  out.config = parse_image_config(plan.config_text, cwhat);
  check_platform(out.config, options, cwhat);
  if (is_dir(out.rootfs) && is_dir(out.dir)) {
    const std::string cached = out.dir + "/config.json";
    if (read_file_bounded(cached, kMaxJsonBytes, "cached config") == plan.config_text) {
      spdlog::debug("image {}: cached in {}", text, out.dir);
      return out;
    }
    throw UsageError("image cache entry " + out.dir + " is damaged (its config.json differs " +
                     "from the image's config): remove it and try again");
  }

  const std::string tmp = images + "/tmp";
  TempDir work(tmp, "unpack-");
  src.stage(plan, tmp, options.limits.max_bytes);
  for (const auto& l : plan.layers) verify_layer(src, l);
  const std::string rootfs = work.path() + "/rootfs";
  if (::mkdir(rootfs.c_str(), 0755) != 0) throw_errno("cannot create " + rootfs);
  LayerUnpacker unpacker(rootfs, options.limits);
  for (const auto& l : plan.layers) unpacker.apply(src.local_path(l.path), l.what);
  write_file(work.path() + "/config.json", plan.config_text);
  if (::chmod(work.path().c_str(), 0755) != 0) throw_errno("cannot chmod " + work.path());
  if (::rename(work.path().c_str(), out.dir.c_str()) != 0) {
    if (errno != EEXIST && errno != ENOTEMPTY) throw_errno("cannot move the image to " + out.dir);
    // Another open of the same image finished first: use its entry (ours is removed).
    spdlog::debug("image {}: {} appeared while unpacking; using it", text, out.dir);
    return out;
  }
  work.release();
  out.unpacked = true;
  out.stats = unpacker.stats();
  if (out.stats.skipped_devices)
    spdlog::warn("image {}: {} device node(s) not created (creating them needs root)", text,
                 out.stats.skipped_devices);
  spdlog::info("image {}: {} layer(s), {} entries, {} bytes unpacked into {}", text,
               plan.layers.size(), out.stats.entries, out.stats.bytes, out.rootfs);
  return out;
}

}  // namespace kiln::image
