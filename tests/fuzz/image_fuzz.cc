// libFuzzer target for a container image's JSON documents (image/manifest.h,
// image/image_config.h): the first byte picks the parser (OCI index, OCI manifest, docker
// manifest.json, image config), the rest is the document. Each input is either refused with a
// UsageError or yields values that hold the parsers' promises (sha256 digests, bounded lists,
// docker paths that stay inside the archive). Layer tars are not fuzzed here: unpacking writes
// files, and the unit tests cover hostile layers.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "base/error.h"
#include "image/image_config.h"
#include "image/manifest.h"

namespace {

using namespace kiln::image;

void check_digest(const Digest& d) {
  if (!is_sha256_hex(d.hex)) abort();
}

// An accepted path is relative, without NUL, and no component of it is "..": a name that only
// starts with dots ("...a.json") is a file name like any other.
void check_path(const std::string& p) {
  if (p.empty() || p.front() == '/' || p.find('\0') != std::string::npos) abort();
  for (size_t start = 0; start <= p.size();) {
    const size_t end = std::min(p.find('/', start), p.size());
    if (p.compare(start, end - start, "..") == 0) abort();
    start = end + 1;
  }
}

void fuzz(uint8_t selector, const std::string& text) {
  switch (selector % 4) {
    case 0: {
      const OciIndex index = parse_oci_index(text, "index.json");
      if (index.manifests.size() > kMaxManifests) abort();
      for (const auto& d : index.manifests) check_digest(d.digest);
      try {
        const Descriptor& d = select_descriptor(index, "latest", "linux", "amd64", "index.json");
        check_digest(d.digest);
      } catch (const kiln::UsageError&) {
      }
      try {
        select_descriptor(index, "", "linux", "amd64", "index.json");
      } catch (const kiln::UsageError&) {
      }
      break;
    }
    case 1: {
      const OciManifest m = parse_oci_manifest(text, "manifest");
      check_digest(m.config.digest);
      if (m.layers.size() > kMaxLayers) abort();
      for (const auto& l : m.layers) {
        check_digest(l.digest);
        if (!is_supported_layer_type(l.media_type)) abort();
      }
      break;
    }
    case 2: {
      const auto images = parse_docker_manifest(text, "manifest.json");
      if (images.empty()) abort();
      for (const auto& e : images) {
        check_path(e.config);
        for (const auto& l : e.layers) check_path(l);
      }
      try {
        select_docker_image(images, "latest", "manifest.json");
      } catch (const kiln::UsageError&) {
      }
      break;
    }
    case 3: {
      const ImageConfig c = parse_image_config(text, "config");
      for (const auto& d : c.diff_ids) check_digest(d);
      for (const auto& e : c.env)
        if (e.find('=') == std::string::npos || e.front() == '=') abort();
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    fuzz(data[0], text);
  } catch (const kiln::UsageError&) {
  }
  return 0;
}
