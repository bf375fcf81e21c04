// What a workload runs: the image's defaults (ImageConfig) with the user's overrides applied
// the way `docker run` applies them.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "image/image_config.h"
#include "image/user_db.h"

namespace kiln::image {

struct RunOverrides {
  std::optional<std::vector<std::string>> entrypoint;  // --entrypoint ([] clears it)
  std::vector<std::string> command;                    // after "--"; empty: the image's Cmd
  std::vector<std::string> env;                        // -e KEY=VALUE, in order
  std::optional<std::string> working_dir;              // -w (absolute)
  std::optional<std::string> user;                     // -u USER[:GROUP]
};

struct RunSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // KEY=VALUE, each key once
  std::string cwd;
  ResolvedUser user;
};

inline constexpr const char* kDefaultPath =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// argv: the entrypoint (the override, else the image's) followed by the command if given, else
// by the image's Cmd unless the entrypoint was overridden (Docker drops the image's Cmd then).
// env: the image's, then the overrides, a later KEY replacing an earlier one; PATH and HOME
// (the user's home) are added when missing. cwd: the override, else WorkingDir, else "/". The
// user is resolved against the image's files under `rootfs`. Errors (no command at all, a
// malformed -e, a relative -w, an unknown user) are UsageErrors naming the option.
RunSpec make_run_spec(const ImageConfig& image, const RunOverrides& overrides,
                      const std::string& rootfs);

}  // namespace kiln::image
