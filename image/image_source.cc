#include "image/image_source.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <set>

#include "base/error.h"
#include "base/unique_fd.h"
#include "image/image_config.h"
#include "image/json_doc.h"
#include "image/manifest.h"

namespace kiln::image {
namespace {

constexpr size_t kMaxArchiveEntries = 1u << 20;
constexpr int kMaxLinkHops = 8;
constexpr int kMaxIndexDepth = 4;

struct ReadFree {
  void operator()(archive* a) const { archive_read_free(a); }
};

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// `target` of a link at `entry`, as a path inside the archive ("" if it leaves the archive).
std::string resolve_link(const std::string& entry, const std::string& target, bool hard) {
  if (target.empty() || target.front() == '/') return "";
  std::vector<std::string> parts;
  std::string joined = target;
  if (!hard) {
    const auto slash = entry.rfind('/');
    if (slash != std::string::npos) joined = entry.substr(0, slash) + "/" + target;
  }
  size_t i = 0;
  while (i <= joined.size()) {
    size_t j = joined.find('/', i);
    if (j == std::string::npos) j = joined.size();
    const std::string part = joined.substr(i, j - i);
    if (part == "..") {
      if (parts.empty()) return "";
      parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    i = j + 1;
  }
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "/") + p;
  return out;
}

std::string layer_what(size_t i, const std::string& id) {
  return "layer " + std::to_string(i + 1) + " (" + id + ")";
}

}  // namespace

const char* format_name(ImageFormat f) {
  switch (f) {
    case ImageFormat::kOciLayout:
      return "OCI image layout";
    case ImageFormat::kOciArchive:
      return "oci-archive";
    case ImageFormat::kDockerArchive:
      return "docker-archive";
    case ImageFormat::kDockerDir:
      return "docker-archive directory";
  }
  return "?";
}

ImageRef parse_image_ref(const std::string& text) {
  if (text.empty()) throw UsageError("image: an empty path");
  if (exists(text)) return {text, ""};
  const auto colon = text.rfind(':');
  if (colon != std::string::npos && colon > 0 && text.find('/', colon) == std::string::npos &&
      exists(text.substr(0, colon)))
    return {text.substr(0, colon), text.substr(colon + 1)};
  throw UsageError("image: " + text + " does not exist (give an OCI layout directory, an " +
                   "oci-archive or docker-archive tar, optionally followed by :TAG)");
}

ImageSource::ImageSource(ImageRef ref, std::string os, std::string architecture)
    : ref_(std::move(ref)), os_(std::move(os)), architecture_(std::move(architecture)) {
  struct stat st {};
  if (::stat(ref_.path.c_str(), &st) != 0) throw UsageError(errno_message("image: " + ref_.path));
  if (S_ISDIR(st.st_mode)) {
    if (exists(ref_.path + "/oci-layout"))
      format_ = ImageFormat::kOciLayout;
    else if (exists(ref_.path + "/manifest.json"))
      format_ = ImageFormat::kDockerDir;
    else
      throw UsageError("image: " + ref_.path +
                       " is a directory without oci-layout or manifest.json: not an image");
    return;
  }
  if (!S_ISREG(st.st_mode))
    throw UsageError("image: " + ref_.path + " is neither a directory nor a file");
  is_archive_ = true;
  archive_pass({"oci-layout", "index.json", "manifest.json"}, false, 0);
  if (small_.count("oci-layout") && small_.count("index.json"))
    format_ = ImageFormat::kOciArchive;
  else if (small_.count("manifest.json"))
    format_ = ImageFormat::kDockerArchive;
  else
    throw UsageError("image: " + ref_.path +
                     " is a tar without oci-layout + index.json or manifest.json: not an "
                     "oci-archive or docker-archive");
}

void ImageSource::archive_pass(const std::vector<std::string>& wanted, bool to_files,
                               uint64_t max_bytes) {
  std::unique_ptr<archive, ReadFree> a(archive_read_new());
  if (!a) throw Error("libarchive: out of memory");
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  const std::string what = "image " + ref_.path;
  if (archive_read_open_filename(a.get(), ref_.path.c_str(), 1 << 20) != ARCHIVE_OK)
    throw UsageError(what + ": " + archive_error_string(a.get()));
  const std::set<std::string> want(wanted.begin(), wanted.end());
  const bool first = entries_.empty();
  uint64_t staged_bytes = 0;
  archive_entry* e = nullptr;
  for (;;) {
    const int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN)
      throw UsageError(what + ": not a readable tar: " + archive_error_string(a.get()));
    const char* raw = archive_entry_pathname(e);
    std::string name;
    try {
      name = raw ? checked_relative_path(raw, "entry") : "";
    } catch (const UsageError&) {
      continue;  // never read: blobs are looked up by their checked names only
    }
    if (name.empty()) continue;
    if (first) {
      if (entries_.size() >= kMaxArchiveEntries)
        throw UsageError(what + ": more than " + std::to_string(kMaxArchiveEntries) + " entries");
      entries_.push_back(name);
      if (const char* hl = archive_entry_hardlink(e))
        links_[name] = resolve_link(name, hl, true);
      else if (archive_entry_filetype(e) == AE_IFLNK && archive_entry_symlink(e))
        links_[name] = resolve_link(name, archive_entry_symlink(e), false);
    }
    if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e) || !want.count(name))
      continue;
    if (!to_files) {
      if (archive_entry_size(e) > static_cast<la_int64_t>(kMaxJsonBytes))
        throw UsageError(what + ": " + name + " is larger than the " +
                         std::to_string(kMaxJsonBytes) + " bytes a JSON document may have");
      std::string data(static_cast<size_t>(std::max<la_int64_t>(archive_entry_size(e), 0)), '\0');
      const la_ssize_t n = archive_read_data(a.get(), data.data(), data.size());
      if (n < 0 || static_cast<size_t>(n) != data.size())
        throw UsageError(what + ": reading " + name + ": " + archive_error_string(a.get()));
      small_[name] = std::move(data);
      continue;
    }
    const std::string file = staging_.path() + "/blob-" + std::to_string(staged_.size());
    UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd) throw_errno("cannot create " + file);
    std::vector<char> buf(1 << 20);
    for (;;) {
      const la_ssize_t n = archive_read_data(a.get(), buf.data(), buf.size());
      if (n < 0)
        throw UsageError(what + ": reading " + name + ": " + archive_error_string(a.get()));
      if (n == 0) break;
      staged_bytes += static_cast<uint64_t>(n);
      if (staged_bytes > max_bytes)
        throw UsageError(what + ": its layers are larger than the limit of " +
                         std::to_string(max_bytes) + " bytes");
      for (ssize_t off = 0; off < n;) {
        const ssize_t w = ::write(fd.get(), buf.data() + off, static_cast<size_t>(n - off));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) throw_errno("writing " + file);
        off += w;
      }
    }
    staged_[name] = file;
  }
}

std::string ImageSource::read_small(const std::string& path, const std::string& what) {
  if (!is_archive_) return read_file_bounded(ref_.path + "/" + path, kMaxJsonBytes, what);
  std::string name = path;
  for (int hop = 0; links_.count(name); ++hop) {
    if (hop == kMaxLinkHops || links_[name].empty())
      throw UsageError(what + ": " + path + " is a link that leads nowhere in the archive");
    name = links_[name];
  }
  if (!small_.count(name)) archive_pass({name}, false, 0);
  auto it = small_.find(name);
  if (it == small_.end()) throw UsageError(what + ": " + path + " is missing from " + ref_.path);
  return it->second;
}

std::string ImageSource::read_blob(const Digest& d, std::optional<uint64_t> size,
                                   const std::string& what) {
  const std::string path = "blobs/sha256/" + d.hex;
  std::string text;
  try {
    text = read_small(path, what);
  } catch (const UsageError& e) {
    throw UsageError(what + ": blob " + d.str() + " missing or unreadable (" + e.what() + ")");
  }
  if (size && text.size() != *size)
    throw UsageError(what + ": blob " + d.str() + " is " + std::to_string(text.size()) +
                     " bytes, its descriptor says " + std::to_string(*size));
  const Digest got = sha256_of(text);
  if (got != d)
    throw UsageError(what + ": blob " + d.str() + " does not match its digest (its content " +
                     "hashes to " + got.str() + ")");
  return text;
}

ImagePlan ImageSource::plan() {
  return format_ == ImageFormat::kOciLayout || format_ == ImageFormat::kOciArchive ? plan_oci()
                                                                                   : plan_docker();
}

ImagePlan ImageSource::plan_oci() {
  const nlohmann::json layout =
      parse_json_object(read_small("oci-layout", "oci-layout"), "oci-layout");
  if (string_field(layout, "imageLayoutVersion", "oci-layout").empty())
    throw UsageError("oci-layout: imageLayoutVersion missing");
  OciIndex index = parse_oci_index(read_small("index.json", "index.json"), "index.json");
  Descriptor d = select_descriptor(index, ref_.tag, os_, architecture_, "index.json");
  for (int depth = 0;; ++depth) {
    const std::string what = (d.is_index() ? "image index " : "manifest ") + d.digest.str();
    const std::string text = read_blob(d.digest, d.size, what);
    const bool index_like =
        d.is_index() || (d.media_type.empty() && text.find("\"manifests\"") != std::string::npos);
    if (!index_like) break;
    if (depth == kMaxIndexDepth)
      throw UsageError(what + ": image indexes nested more than " + std::to_string(kMaxIndexDepth) +
                       " deep");
    index = parse_oci_index(text, what);
    d = select_descriptor(index, "", os_, architecture_, what);
  }
  if (!d.media_type.empty() && !d.is_manifest())
    throw UsageError("index.json: " + d.digest.str() + " has media type '" + d.media_type +
                     "', not an image manifest");
  const std::string mwhat = "manifest " + d.digest.str();
  const OciManifest m = parse_oci_manifest(read_blob(d.digest, d.size, mwhat), mwhat);
  if (!m.config.media_type.empty() &&
      m.config.media_type != "application/vnd.oci.image.config.v1+json" &&
      m.config.media_type != "application/vnd.docker.container.image.v1+json")
    throw UsageError(mwhat + ".config.mediaType: '" + m.config.media_type +
                     "' is not an image configuration (an artifact, not a container image?)");
  ImagePlan plan;
  plan.format = format_;
  plan.config_digest = m.config.digest;
  plan.config_text = read_blob(m.config.digest, m.config.size, "config " + m.config.digest.str());
  for (size_t i = 0; i < m.layers.size(); ++i) {
    const auto& l = m.layers[i];
    plan.layers.push_back({"blobs/sha256/" + l.digest.hex, layer_what(i, l.digest.str()), l.digest,
                           l.size, std::nullopt});
  }
  return plan;
}

ImagePlan ImageSource::plan_docker() {
  const auto images =
      parse_docker_manifest(read_small("manifest.json", "manifest.json"), "manifest.json");
  const DockerImageEntry& img = select_docker_image(images, ref_.tag, "manifest.json");
  // The config is named by its digest: "<hex>.json" (docker save, podman) or "blobs/sha256/<hex>".
  std::string base = img.config.substr(img.config.rfind('/') + 1);
  if (base.ends_with(".json")) base.resize(base.size() - 5);
  if (!is_sha256_hex(base))
    throw UsageError("manifest.json: Config '" + img.config +
                     "' is not named by its sha256, so it cannot be verified");
  ImagePlan plan;
  plan.format = format_;
  plan.config_digest = Digest{base};
  const std::string cwhat = "config " + img.config;
  plan.config_text = read_small(img.config, cwhat);
  const Digest got = sha256_of(plan.config_text);
  if (got != plan.config_digest)
    throw UsageError(cwhat + ": does not match its digest " + plan.config_digest.str() +
                     " (its content hashes to " + got.str() + ")");
  const std::vector<Digest> diff_ids = parse_image_config(plan.config_text, cwhat).diff_ids;
  if (diff_ids.size() != img.layers.size())
    throw UsageError(cwhat + ": rootfs.diff_ids lists " + std::to_string(diff_ids.size()) +
                     " layers, manifest.json's Layers " + std::to_string(img.layers.size()) +
                     ": the layers cannot be verified");
  for (size_t i = 0; i < img.layers.size(); ++i)
    plan.layers.push_back(
        {img.layers[i], layer_what(i, img.layers[i]), std::nullopt, std::nullopt, diff_ids[i]});
  return plan;
}

void ImageSource::stage(const ImagePlan& plan, const std::string& tmp_parent, uint64_t max_bytes) {
  if (!is_archive_) return;
  staging_ = TempDir(tmp_parent, "stage-");
  std::vector<std::string> wanted;
  for (const auto& l : plan.layers) {
    std::string name = l.path;
    for (int hop = 0; links_.count(name) && hop < kMaxLinkHops; ++hop) name = links_[name];
    wanted.push_back(name);
  }
  archive_pass(wanted, true, max_bytes);
}

std::string ImageSource::local_path(const std::string& path) const {
  if (!is_archive_) return ref_.path + "/" + path;
  std::string name = path;
  for (int hop = 0; links_.count(name) && hop < kMaxLinkHops; ++hop) name = links_.at(name);
  auto it = staged_.find(name);
  if (it == staged_.end())
    throw UsageError("image " + ref_.path + ": " + path + " is missing from the archive");
  return it->second;
}

}  // namespace kiln::image
