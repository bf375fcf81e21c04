// Where an image comes from and what it is made of: an OCI image layout directory, an
// oci-archive (a tar of such a layout) or a docker-archive (manifest.json, a config, layer
// tars), as `podman save`, `skopeo copy` and `docker save` write them. plan() reads only the
// small documents (index, manifests, config), each checked against its digest, so that a cached
// image is found without touching its layers; stage() then copies the layers out of an archive
// into a temporary directory (removed with the source).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "image/digest.h"
#include "image/temp_dir.h"

namespace kiln::image {

enum class ImageFormat { kOciLayout, kOciArchive, kDockerArchive, kDockerDir };
const char* format_name(ImageFormat f);

struct ImageRef {
  std::string path;
  std::string tag;  // empty: the only image (or the one for the platform)
};
// "PATH" or "PATH:TAG"; a PATH that exists as written (colon and all) is taken whole.
ImageRef parse_image_ref(const std::string& text);

struct LayerBlob {
  std::string path;               // inside the layout or archive
  std::string what;               // names the layer in errors: "layer 2 (sha256:...)"
  std::optional<Digest> digest;   // of the stored blob (OCI)
  std::optional<uint64_t> size;   // of the stored blob, when the manifest gives it
  std::optional<Digest> diff_id;  // of the uncompressed tar (docker-archive's only check)
};

struct ImagePlan {
  ImageFormat format = ImageFormat::kOciLayout;
  Digest config_digest;  // the image ID: the cache key
  std::string config_text;
  std::vector<LayerBlob> layers;
};

class ImageSource {
 public:
  // `os`/`architecture` pick the manifest of a multi-platform index.
  ImageSource(ImageRef ref, std::string os = "linux", std::string architecture = "amd64");

  ImageFormat format() const { return format_; }
  ImagePlan plan();
  // Makes the plan's layers readable as files (a no-op for a directory); staged copies go to
  // a directory under `tmp_parent`, at most `max_bytes` in all.
  void stage(const ImagePlan& plan, const std::string& tmp_parent, uint64_t max_bytes);
  // The file holding the blob at `path` (after stage() for an archive).
  std::string local_path(const std::string& path) const;

 private:
  std::string read_small(const std::string& path, const std::string& what);
  std::string read_blob(const Digest& d, std::optional<uint64_t> size, const std::string& what);
  ImagePlan plan_oci();
  ImagePlan plan_docker();
  // Reads the wanted entries of the archive in one pass: small ones into memory (read_small),
  // or copies to files in the staging directory.
  void archive_pass(const std::vector<std::string>& wanted, bool to_files, uint64_t max_bytes);

  ImageRef ref_;
  std::string os_, architecture_;
  ImageFormat format_;
  bool is_archive_ = false;
  std::map<std::string, std::string> small_;   // archive path -> content
  std::map<std::string, std::string> links_;   // archive symlink/hard link -> target path
  std::map<std::string, std::string> staged_;  // archive path -> staged file
  std::vector<std::string> entries_;           // archive paths seen (for errors)
  TempDir staging_;
};

}  // namespace kiln::image
