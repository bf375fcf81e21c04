// The JSON documents that say what an image is made of: the OCI image index (index.json and
// nested indexes), the OCI image manifest, and docker-archive's manifest.json. Parsing is
// strict about types and digests and says which field is wrong; it touches no files (the
// fuzz target feeds it arbitrary text).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "image/digest.h"

namespace kiln::image {

namespace media_type {
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kDockerList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
}  // namespace media_type

inline constexpr std::string_view kRefNameAnnotation = "org.opencontainers.image.ref.name";

struct Platform {
  std::string os, architecture, variant;
};

struct Descriptor {
  std::string media_type;
  Digest digest;
  std::optional<uint64_t> size;
  std::optional<Platform> platform;
  std::map<std::string, std::string> annotations;

  bool is_index() const;
  bool is_manifest() const;
};

struct OciIndex {
  std::vector<Descriptor> manifests;
};

struct OciManifest {
  Descriptor config;
  std::vector<Descriptor> layers;
};

// One image of a docker-archive manifest.json; paths are relative to the archive's root and
// already checked (no absolute path, no "..").
struct DockerImageEntry {
  std::string config;
  std::vector<std::string> repo_tags;
  std::vector<std::string> layers;
};

// Limits on what the documents list (a hostile image could list millions of layers).
inline constexpr size_t kMaxManifests = 1024;
inline constexpr size_t kMaxLayers = 1024;

OciIndex parse_oci_index(std::string_view text, const std::string& what);
OciManifest parse_oci_manifest(std::string_view text, const std::string& what);
std::vector<DockerImageEntry> parse_docker_manifest(std::string_view text, const std::string& what);

// True for the layer media types Kiln unpacks (tar, gzip and zstd tar, OCI and Docker names,
// the non-distributable variants); others (encrypted layers, ...) are refused by the caller.
bool is_supported_layer_type(std::string_view media_type);

// Picks the descriptor to follow from an index: by tag (the ref.name annotation, exactly or as
// the part after the last ':' of a full name) when `tag` is not empty, else the only one, else
// the one for `os`/`architecture`. A UsageError lists what there is when nothing or several
// match.
const Descriptor& select_descriptor(const OciIndex& index, std::string_view tag,
                                    std::string_view os, std::string_view architecture,
                                    const std::string& what);
// The same for docker-archive entries, by RepoTags (tag alone or NAME:TAG).
const DockerImageEntry& select_docker_image(const std::vector<DockerImageEntry>& images,
                                            std::string_view tag, const std::string& what);

// Checks a relative path inside an archive or layout ("a/b", "./a"): no absolute path, no ".."
// component, no NUL, not empty; returns it without "./" parts and repeated slashes.
std::string checked_relative_path(std::string_view path, const std::string& what);

}  // namespace kiln::image
