// Container images unpacked into a cache keyed by the image's config digest (its image ID):
//   ${KILN_CACHE:-~/.cache/kiln}/images/sha256-<hex>/rootfs       the root file system
//   ${KILN_CACHE:-~/.cache/kiln}/images/sha256-<hex>/config.json  the image's config blob
// An image is unpacked into images/tmp/ and renamed into place when complete, so an
// interrupted or failed unpack leaves no entry (and its temporary directory is removed); a
// second open of the same image finds the entry and unpacks nothing.
#pragma once

#include <string>

#include "image/digest.h"
#include "image/image_config.h"
#include "image/image_source.h"
#include "image/layer_unpack.h"

namespace kiln::image {

struct CacheOptions {
  std::string cache_dir;  // empty: default_cache_dir()
  UnpackLimits limits;
  std::string os = "linux", architecture = "amd64";
};

struct UnpackedImage {
  Digest config_digest;
  std::string dir;     // the cache entry
  std::string rootfs;  // dir + "/rootfs"
  ImageConfig config;
  ImageFormat format = ImageFormat::kOciLayout;
  bool unpacked = false;  // false: found in the cache
  UnpackStats stats;      // of this unpack (zero when found in the cache)
};

// ${KILN_CACHE}, else ${HOME}/.cache/kiln.
std::string default_cache_dir();

// Opens the image `ref` ("PATH" or "PATH:TAG": image_source.h), unpacking it unless cached.
// Bad images (a digest mismatch, a missing blob, a hostile layer, ...) are UsageErrors naming
// the blob or entry, and leave nothing in the cache.
UnpackedImage open_image(const std::string& ref, const CacheOptions& options = {});

}  // namespace kiln::image
