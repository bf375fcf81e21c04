#include "base/signals.h"

#include <signal.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <utility>

#include "base/error.h"

namespace kiln {

namespace {

constexpr std::array<std::pair<const char*, int>, 31> kNames{{
    {"HUP", SIGHUP},   {"INT", SIGINT},       {"QUIT", SIGQUIT}, {"ILL", SIGILL},
    {"TRAP", SIGTRAP}, {"ABRT", SIGABRT},     {"BUS", SIGBUS},   {"FPE", SIGFPE},
    {"KILL", SIGKILL}, {"USR1", SIGUSR1},     {"SEGV", SIGSEGV}, {"USR2", SIGUSR2},
    {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},     {"TERM", SIGTERM}, {"STKFLT", SIGSTKFLT},
    {"CHLD", SIGCHLD}, {"CONT", SIGCONT},     {"STOP", SIGSTOP}, {"TSTP", SIGTSTP},
    {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU},     {"URG", SIGURG},   {"XCPU", SIGXCPU},
    {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH},
    {"IO", SIGIO},     {"PWR", SIGPWR},       {"SYS", SIGSYS},
}};

}  // namespace

int parse_signal(std::string_view text, const std::string& what) {
  auto bad = [&] {
    return UsageError(what + " '" + std::string(text.substr(0, 32)) +
                      "' is not a signal (a name such as TERM or SIGKILL, or a number 1-64)");
  };
  if (text.empty() || text.size() > 12) throw bad();
  if (std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    int n = std::stoi(std::string(text));
    if (n < 1 || n > 64) throw bad();
    return n;
  }
  std::string upper;
  for (char c : text) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (upper.rfind("SIG", 0) == 0) upper.erase(0, 3);
  for (const auto& [name, number] : kNames)
    if (upper == name) return number;
  throw bad();
}

std::string signal_name(int sig) {
  for (const auto& [name, number] : kNames)
    if (number == sig) return std::string("SIG") + name;
  return "SIG" + std::to_string(sig);
}

}  // namespace kiln
