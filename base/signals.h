// Signal names as users write them ("KILL", "SIGKILL", "kill", "9") and back.
#pragma once

#include <string>
#include <string_view>

namespace kiln {

// The signal number for a name or a number in 1..64; throws kiln::UsageError naming `what`
// (e.g. "SIGNAL") for anything else.
int parse_signal(std::string_view text, const std::string& what);

// "SIGTERM" for 15; "SIG<n>" for a signal without a name.
std::string signal_name(int sig);

}  // namespace kiln
