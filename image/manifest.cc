#include "image/manifest.h"

#include "base/error.h"
#include "image/json_doc.h"

namespace kiln::image {
namespace {

using V = nlohmann::json::value_t;

Descriptor parse_descriptor(const nlohmann::json& j, const std::string& what) {
  if (!j.is_object()) throw UsageError(what + ": a descriptor object was expected");
  Descriptor d;
  d.media_type = string_field(j, "mediaType", what);
  const auto* digest = optional_field(j, "digest", V::string, what);
  if (!digest) throw UsageError(what + ".digest: missing");
  d.digest = parse_digest(digest->get_ref<const std::string&>(), what + ".digest");
  if (j.contains("size") && !j["size"].is_null()) {
    const auto& s = j["size"];
    if (!s.is_number_integer() || s.get<int64_t>() < 0)
      throw UsageError(what + ".size: a non-negative integer was expected");
    d.size = s.get<uint64_t>();
  }
  if (const auto* p = optional_field(j, "platform", V::object, what)) {
    Platform pl;
    pl.os = string_field(*p, "os", what + ".platform");
    pl.architecture = string_field(*p, "architecture", what + ".platform");
    pl.variant = string_field(*p, "variant", what + ".platform");
    d.platform = pl;
  }
  if (const auto* a = optional_field(j, "annotations", V::object, what)) {
    for (const auto& [k, v] : a->items()) {
      if (!v.is_string()) throw UsageError(what + ".annotations." + k + ": a string was expected");
      d.annotations[k] = v.get<std::string>();
    }
  }
  return d;
}

const nlohmann::json& array_field(const nlohmann::json& j, const char* key, size_t max,
                                  const std::string& what, bool required) {
  static const nlohmann::json kEmpty = nlohmann::json::array();
  const auto* a = optional_field(j, key, V::array, what);
  if (!a) {
    if (required) throw UsageError(what + "." + key + ": missing");
    return kEmpty;
  }
  if (a->size() > max)
    throw UsageError(what + "." + key + ": " + std::to_string(a->size()) +
                     " entries, more than the limit of " + std::to_string(max));
  return *a;
}

void check_schema_version(const nlohmann::json& j, const std::string& what) {
  auto it = j.find("schemaVersion");
  if (it == j.end()) return;
  if (!it->is_number_integer() || *it != 2)
    throw UsageError(what + ".schemaVersion: 2 was expected");
}

std::string tag_part(std::string_view name) {
  const auto slash = name.rfind('/');
  const auto colon = name.rfind(':');
  if (colon == std::string_view::npos || (slash != std::string_view::npos && colon < slash))
    return "";
  return std::string(name.substr(colon + 1));
}

bool name_matches(std::string_view name, std::string_view tag) {
  return name == tag || (tag.find(':') == std::string_view::npos && tag_part(name) == tag);
}

}  // namespace

bool Descriptor::is_index() const {
  return media_type == media_type::kOciIndex || media_type == media_type::kDockerList;
}
bool Descriptor::is_manifest() const {
  return media_type == media_type::kOciManifest || media_type == media_type::kDockerManifest;
}

OciIndex parse_oci_index(std::string_view text, const std::string& what) {
  const nlohmann::json j = parse_json_object(text, what);
  check_schema_version(j, what);
  const std::string mt = string_field(j, "mediaType", what);
  if (!mt.empty() && mt != media_type::kOciIndex && mt != media_type::kDockerList)
    throw UsageError(what + ".mediaType: '" + mt + "' is not an image index");
  OciIndex index;
  const auto& list = array_field(j, "manifests", kMaxManifests, what, true);
  for (size_t i = 0; i < list.size(); ++i)
    index.manifests.push_back(
        parse_descriptor(list[i], what + ".manifests[" + std::to_string(i) + "]"));
  return index;
}

OciManifest parse_oci_manifest(std::string_view text, const std::string& what) {
  const nlohmann::json j = parse_json_object(text, what);
  check_schema_version(j, what);
  const std::string mt = string_field(j, "mediaType", what);
  if (!mt.empty() && mt != media_type::kOciManifest && mt != media_type::kDockerManifest)
    throw UsageError(what + ".mediaType: '" + mt + "' is not an image manifest");
  OciManifest m;
  const auto* config = optional_field(j, "config", V::object, what);
  if (!config) throw UsageError(what + ".config: missing");
  m.config = parse_descriptor(*config, what + ".config");
  const auto& layers = array_field(j, "layers", kMaxLayers, what, true);
  for (size_t i = 0; i < layers.size(); ++i) {
    const std::string w = what + ".layers[" + std::to_string(i) + "]";
    m.layers.push_back(parse_descriptor(layers[i], w));
    if (!is_supported_layer_type(m.layers.back().media_type))
      throw UsageError(w + ".mediaType: '" + m.layers.back().media_type +
                       "' is not a layer type Kiln unpacks (tar, tar+gzip, tar+zstd)");
  }
  return m;
}

std::vector<DockerImageEntry> parse_docker_manifest(std::string_view text,
                                                    const std::string& what) {
  const nlohmann::json j = parse_json_document(text, what);
  if (!j.is_array()) throw UsageError(what + ": a JSON array of images was expected");
  if (j.size() > kMaxManifests) throw UsageError(what + ": too many images");
  std::vector<DockerImageEntry> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string w = what + "[" + std::to_string(i) + "]";
    if (!j[i].is_object()) throw UsageError(w + ": an object was expected");
    DockerImageEntry e;
    const auto* config = optional_field(j[i], "Config", V::string, w);
    if (!config) throw UsageError(w + ".Config: missing");
    e.config = checked_relative_path(config->get_ref<const std::string&>(), w + ".Config");
    for (const auto& t : array_field(j[i], "RepoTags", kMaxManifests, w, false)) {
      if (!t.is_string()) throw UsageError(w + ".RepoTags: strings were expected");
      e.repo_tags.push_back(t.get<std::string>());
    }
    const auto& layers = array_field(j[i], "Layers", kMaxLayers, w, true);
    for (size_t k = 0; k < layers.size(); ++k) {
      const std::string lw = w + ".Layers[" + std::to_string(k) + "]";
      if (!layers[k].is_string()) throw UsageError(lw + ": a string was expected");
      e.layers.push_back(checked_relative_path(layers[k].get_ref<const std::string&>(), lw));
    }
    out.push_back(std::move(e));
  }
  if (out.empty()) throw UsageError(what + ": lists no image");
  return out;
}

bool is_supported_layer_type(std::string_view mt) {
  for (std::string_view ok : {
           "application/vnd.oci.image.layer.v1.tar",
           "application/vnd.oci.image.layer.v1.tar+gzip",
           "application/vnd.oci.image.layer.v1.tar+zstd",
           "application/vnd.oci.image.layer.nondistributable.v1.tar",
           "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
           "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
           "application/vnd.docker.image.rootfs.diff.tar",
           "application/vnd.docker.image.rootfs.diff.tar.gzip",
           "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
       })
    if (mt == ok) return true;
  return false;
}

const Descriptor& select_descriptor(const OciIndex& index, std::string_view tag,
                                    std::string_view os, std::string_view architecture,
                                    const std::string& what) {
  std::vector<const Descriptor*> found;
  std::string listed;
  for (const auto& d : index.manifests) {
    auto ref = d.annotations.find(std::string(kRefNameAnnotation));
    auto ctd = d.annotations.find("io.containerd.image.name");
    const std::string name = ref != d.annotations.end()   ? ref->second
                             : ctd != d.annotations.end() ? ctd->second
                                                          : "";
    std::string plat = d.platform ? d.platform->os + "/" + d.platform->architecture : "";
    listed += "\n  " + d.digest.str() + (name.empty() ? "" : " " + name) +
              (plat.empty() ? "" : " (" + plat + ")");
    if (!tag.empty()) {
      if ((ref != d.annotations.end() && name_matches(ref->second, tag)) ||
          (ctd != d.annotations.end() && name_matches(ctd->second, tag)))
        found.push_back(&d);
    } else if (index.manifests.size() == 1 ||
               (d.platform && d.platform->os == os && d.platform->architecture == architecture)) {
      found.push_back(&d);
    }
  }
  if (found.size() == 1) return *found[0];
  const std::string wanted = tag.empty()
                                 ? "image for " + std::string(os) + "/" + std::string(architecture)
                                 : "image tagged '" + std::string(tag) + "'";
  if (index.manifests.empty()) throw UsageError(what + ": lists no image");
  throw UsageError(what + ": " + (found.empty() ? "has no " : "has more than one ") + wanted +
                   "; it lists:" + listed + (tag.empty() ? "\n(name one as PATH:TAG)" : ""));
}

const DockerImageEntry& select_docker_image(const std::vector<DockerImageEntry>& images,
                                            std::string_view tag, const std::string& what) {
  if (tag.empty() && images.size() == 1) return images[0];
  std::vector<const DockerImageEntry*> found;
  std::string listed;
  for (const auto& e : images) {
    bool match = false;
    for (const auto& t : e.repo_tags) {
      listed += "\n  " + t;
      if (!tag.empty() && name_matches(t, tag)) match = true;
    }
    if (e.repo_tags.empty()) listed += "\n  (untagged, config " + e.config + ")";
    if (match) found.push_back(&e);
  }
  if (found.size() == 1) return *found[0];
  throw UsageError(
      what + ": " +
      (tag.empty() ? std::string("holds several images; name one as PATH:TAG")
                   : (found.empty() ? "has no image tagged '" : "has several images tagged '") +
                         std::string(tag) + "'") +
      "; it lists:" + listed);
}

std::string checked_relative_path(std::string_view path, const std::string& what) {
  if (path.empty()) throw UsageError(what + ": an empty path");
  if (path.front() == '/') throw UsageError(what + ": '" + std::string(path) + "' is absolute");
  if (path.find('\0') != std::string_view::npos) throw UsageError(what + ": a NUL in the path");
  std::string out;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    const std::string_view part = path.substr(i, j - i);
    if (part == "..")
      throw UsageError(what + ": '" + std::string(path) + "' leaves its directory (\"..\")");
    if (!part.empty() && part != ".") {
      if (!out.empty()) out += '/';
      out += part;
    }
    i = j + 1;
  }
  if (out.empty()) throw UsageError(what + ": '" + std::string(path) + "' names no file");
  return out;
}

}  // namespace kiln::image
