// kiln-image-open [--cache DIR] IMAGE [-- CMD...]: opens a container image with image/ (the
// library behind `kiln sandbox run IMAGE`) and prints what it found, one KEY=VALUE a line, for
// tests/image/podman-image.sh. Exit 2 with the error on a bad image.
#include <cstdio>
#include <string>

#include "base/error.h"
#include "image/image_cache.h"
#include "image/run_spec.h"

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : " ") + s;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kiln::image;
  CacheOptions options;
  int i = 1;
  if (i + 1 < argc && std::string(argv[i]) == "--cache") {
    options.cache_dir = argv[i + 1];
    i += 2;
  }
  if (i >= argc) {
    std::fprintf(stderr, "usage: %s [--cache DIR] IMAGE [-- CMD...]\n", argv[0]);
    return 2;
  }
  const std::string ref = argv[i++];
  RunOverrides overrides;
  if (i < argc && std::string(argv[i]) == "--") ++i;
  for (; i < argc; ++i) overrides.command.push_back(argv[i]);
  try {
    const UnpackedImage img = open_image(ref, options);
    const RunSpec spec = make_run_spec(img.config, overrides, img.rootfs);
    std::printf("format=%s\ndigest=%s\nunpacked=%d\nrootfs=%s\nentries=%llu\nbytes=%llu\n",
                format_name(img.format), img.config_digest.str().c_str(), img.unpacked ? 1 : 0,
                img.rootfs.c_str(), static_cast<unsigned long long>(img.stats.entries),
                static_cast<unsigned long long>(img.stats.bytes));
    std::printf("argv=%s\nenv=%s\ncwd=%s\nuid=%u\ngid=%u\n", join(spec.argv).c_str(),
                join(spec.env).c_str(), spec.cwd.c_str(), spec.user.uid, spec.user.gid);
    return 0;
  } catch (const kiln::UsageError& e) {
    std::fprintf(stderr, "kiln-image-open: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln-image-open: %s\n", e.what());
    return 1;
  }
}
