// kiln-oci's log, as runc keeps one: every message (spdlog's default logger, from kiln-oci and
// the sandbox code beneath it) goes to stderr as "kiln-oci: LEVEL: MSG" and, with --log FILE,
// one line each to FILE in --log-format: text (logrus' `time=... level=... msg=...`) or json
// ({"level","msg","time"}: containerd reports the last error's "msg").
#pragma once

#include <string>

namespace kiln::oci {

// Installs the default logger. `format` is "text" or "json".
void install_log(const std::string& file, const std::string& format, bool debug);
// From now on this process's stderr is a container's (its host process, the sandbox under it):
// messages go to the log file only (none given: still stderr, there being no other place).
void log_to_file_only();

}  // namespace kiln::oci
