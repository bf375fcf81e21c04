// The image's configuration (the config blob of the OCI image spec, the same JSON Docker
// writes): the defaults a workload runs with, and the uncompressed layers' digests.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "image/digest.h"

namespace kiln::image {

struct ImageConfig {
  std::string os, architecture;
  // nullopt when the image leaves it unset (null or absent), which differs from an empty list
  // for Docker's rules (run_spec.h).
  std::optional<std::vector<std::string>> entrypoint, cmd;
  std::vector<std::string> env;  // "KEY=VALUE"
  std::string working_dir;
  std::string user;                        // "", "uid", "name", "uid:gid", "name:group"
  std::vector<std::string> exposed_ports;  // "80/tcp"
  std::string stop_signal;
  std::vector<Digest> diff_ids;  // rootfs.diff_ids: sha256 of each uncompressed layer
};

// Parses a config blob; errors name the field ("image config.config.Env[2]: ...").
ImageConfig parse_image_config(std::string_view text, const std::string& what);

}  // namespace kiln::image
