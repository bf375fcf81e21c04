// Builds small container images in tests with libarchive: layer tars (plain, gzip, zstd) from
// entry lists, and whole images as an OCI layout directory, an oci-archive or a
// docker-archive, the way podman/skopeo/docker write them.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "image/digest.h"

#include "tests/support/test_files.h"

namespace kiln::test {

struct TarEntry {
  enum Type { kFile, kDir, kSymlink, kHardlink, kFifo, kCharDev };
  std::string path;
  Type type = kFile;
  std::string data;  // file content, or the link target
  unsigned mode = 0644;
  time_t mtime = 1700000000;
  unsigned uid = 0, gid = 0;
};

inline TarEntry file(std::string path, std::string data, unsigned mode = 0644) {
  return {std::move(path), TarEntry::kFile, std::move(data), mode};
}
inline TarEntry dir(std::string path, unsigned mode = 0755) {
  return {std::move(path), TarEntry::kDir, "", mode};
}
inline TarEntry symlink(std::string path, std::string target) {
  return {std::move(path), TarEntry::kSymlink, std::move(target), 0777};
}
inline TarEntry hardlink(std::string path, std::string target) {
  return {std::move(path), TarEntry::kHardlink, std::move(target), 0644};
}

enum class Compression { kNone, kGzip, kZstd };

inline std::string make_tar(const std::vector<TarEntry>& entries,
                            Compression c = Compression::kNone) {
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (c == Compression::kGzip) archive_write_add_filter_gzip(a);
  if (c == Compression::kZstd && archive_write_add_filter_zstd(a) != ARCHIVE_OK)
    throw std::runtime_error("libarchive cannot write zstd here");
  archive_write_set_bytes_in_last_block(a, 1);
  auto writer = [](archive*, void* p, const void* buf, size_t n) -> la_ssize_t {
    static_cast<std::string*>(p)->append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
  };
  archive_write_open2(a, &out, nullptr, writer, nullptr, nullptr);
  for (const auto& e : entries) {
    archive_entry* ae = archive_entry_new();
    archive_entry_set_pathname(ae, e.path.c_str());
    archive_entry_set_mtime(ae, e.mtime, 0);
    archive_entry_set_uid(ae, e.uid);
    archive_entry_set_gid(ae, e.gid);
    archive_entry_set_perm(ae, e.mode);
    switch (e.type) {
      case TarEntry::kFile:
        archive_entry_set_filetype(ae, AE_IFREG);
        archive_entry_set_size(ae, static_cast<la_int64_t>(e.data.size()));
        break;
      case TarEntry::kDir:
        archive_entry_set_filetype(ae, AE_IFDIR);
        break;
      case TarEntry::kSymlink:
        archive_entry_set_filetype(ae, AE_IFLNK);
        archive_entry_set_symlink(ae, e.data.c_str());
        break;
      case TarEntry::kHardlink:
        archive_entry_set_filetype(ae, AE_IFREG);
        archive_entry_set_hardlink(ae, e.data.c_str());
        break;
      case TarEntry::kFifo:
        archive_entry_set_filetype(ae, AE_IFIFO);
        break;
      case TarEntry::kCharDev:
        archive_entry_set_filetype(ae, AE_IFCHR);
        archive_entry_set_rdev(ae, makedev(1, 3));
        break;
    }
    if (archive_write_header(a, ae) != ARCHIVE_OK)
      throw std::runtime_error(std::string("tar header: ") + archive_error_string(a));
    if (e.type == TarEntry::kFile && !e.data.empty())
      archive_write_data(a, e.data.data(), e.data.size());
    archive_entry_free(ae);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

// A tar of whole files (an archive of a layout or of docker-save output), in map order unless
// `order` says otherwise.
inline std::string tar_of_files(const std::map<std::string, std::string>& files) {
  std::vector<TarEntry> entries;
  for (const auto& [name, data] : files) entries.push_back(file(name, data));
  return make_tar(entries);
}

inline void write_files(const std::string& root, const std::map<std::string, std::string>& files) {
  for (const auto& [name, data] : files) {
    const std::filesystem::path p = std::filesystem::path(root) / name;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << data;
  }
}

inline void write_file(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

inline std::string read_file(const std::string& path) {
  return test::read_whole_file(path);
}

struct Layer {
  std::string blob;  // the stored (possibly compressed) tar
  std::string uncompressed;
  std::string media_type;
};

inline Layer layer(const std::vector<TarEntry>& entries, Compression c = Compression::kGzip) {
  Layer l;
  l.uncompressed = make_tar(entries);
  l.blob = c == Compression::kNone ? l.uncompressed : make_tar(entries, c);
  l.media_type = c == Compression::kGzip   ? "application/vnd.oci.image.layer.v1.tar+gzip"
                 : c == Compression::kZstd ? "application/vnd.oci.image.layer.v1.tar+zstd"
                                           : "application/vnd.oci.image.layer.v1.tar";
  return l;
}

inline nlohmann::json config_json(const std::vector<Layer>& layers,
                                  nlohmann::json config = nlohmann::json::object()) {
  nlohmann::json diff_ids = nlohmann::json::array();
  for (const auto& l : layers) diff_ids.push_back(image::sha256_of(l.uncompressed).str());
  return {{"architecture", "amd64"},
          {"os", "linux"},
          {"config", config},
          {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
}

inline nlohmann::json descriptor(const std::string& media_type, const std::string& blob) {
  return {
      {"mediaType", media_type}, {"digest", image::sha256_of(blob).str()}, {"size", blob.size()}};
}

// The files of an OCI image layout holding one image (tagged `tag` if not empty).
struct OciFiles {
  std::map<std::string, std::string> files;
  std::string manifest_digest, config_digest;
};

inline OciFiles oci_layout(const std::vector<Layer>& layers, const nlohmann::json& config,
                           const std::string& tag = "latest") {
  OciFiles out;
  auto add = [&](const std::string& blob) {
    out.files["blobs/sha256/" + image::sha256_of(blob).hex] = blob;
  };
  const std::string cfg = config.dump();
  add(cfg);
  nlohmann::json m = {{"schemaVersion", 2},
                      {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                      {"config", descriptor("application/vnd.oci.image.config.v1+json", cfg)},
                      {"layers", nlohmann::json::array()}};
  for (const auto& l : layers) {
    add(l.blob);
    m["layers"].push_back(descriptor(l.media_type, l.blob));
  }
  const std::string manifest = m.dump();
  add(manifest);
  nlohmann::json d = descriptor("application/vnd.oci.image.manifest.v1+json", manifest);
  if (!tag.empty()) d["annotations"] = {{"org.opencontainers.image.ref.name", tag}};
  out.files["index.json"] =
      nlohmann::json{{"schemaVersion", 2}, {"manifests", nlohmann::json::array({d})}}.dump();
  out.files["oci-layout"] = R"({"imageLayoutVersion":"1.0.0"})";
  out.manifest_digest = image::sha256_of(manifest).str();
  out.config_digest = image::sha256_of(cfg).str();
  return out;
}

// The files of `docker save` / `podman save --format docker-archive`: manifest.json,
// <config hex>.json, and each layer as <n>/layer.tar (its stored blob: uncompressed as docker
// writes it, or gzip).
inline std::map<std::string, std::string> docker_archive(const std::vector<Layer>& layers,
                                                         const nlohmann::json& config,
                                                         const std::string& repo_tag) {
  std::map<std::string, std::string> files;
  const std::string cfg = config.dump();
  const std::string cfg_name = image::sha256_of(cfg).hex + ".json";
  files[cfg_name] = cfg;
  nlohmann::json entry = {{"Config", cfg_name},
                          {"RepoTags", nlohmann::json::array({repo_tag})},
                          {"Layers", nlohmann::json::array()}};
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string name = "layer" + std::to_string(i) + "/layer.tar";
    files[name] = layers[i].blob;
    entry["Layers"].push_back(name);
  }
  files["manifest.json"] = nlohmann::json::array({entry}).dump();
  return files;
}

}  // namespace kiln::test
