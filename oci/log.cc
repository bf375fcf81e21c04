#include "oci/log.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>

namespace kiln::oci {

namespace {

std::string rfc3339(spdlog::log_clock::time_point when) {
  auto since = when.time_since_epoch();
  time_t seconds = std::chrono::duration_cast<std::chrono::seconds>(since).count();
  long ms = static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(since).count() %
                              1000);
  tm t{};
  gmtime_r(&seconds, &t);
  char text[64];
  size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &t);
  std::snprintf(text + n, sizeof text - n, ".%03ldZ", ms);
  return text;
}

// logrus' level names, which runc (and engines reading its log) use.
const char* level_name(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace:
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warning";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "fatal";
    default:
      return "info";
  }
}

class RuntimeSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  RuntimeSink(std::string file, std::string format)
      : file_(std::move(file)), json_(format == "json") {}
  void file_only() {
    std::lock_guard lock(mutex_);
    stderr_ = file_.empty();
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& m) override {
    std::string msg(m.payload.data(), m.payload.size());
    if (stderr_) std::fprintf(stderr, "kiln-oci: %s: %s\n", level_name(m.level), msg.c_str());
    if (file_.empty()) return;
    std::ofstream f(file_, std::ios::app);
    std::string time = rfc3339(m.time);
    if (json_)
      f << nlohmann::json{{"level", level_name(m.level)}, {"msg", msg}, {"time", time}}.dump(
               -1, ' ', false, nlohmann::json::error_handler_t::replace)
        << "\n";
    else
      f << "time=\"" << time << "\" level=" << level_name(m.level) << " msg="
        << nlohmann::json(msg).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
        << "\n";
  }
  void flush_() override { std::fflush(stderr); }

 private:
  std::string file_;
  bool json_;
  bool stderr_ = true;
};

}  // namespace

void install_log(const std::string& file, const std::string& format, bool debug) {
  auto sink = std::make_shared<RuntimeSink>(file, format);
  auto logger = std::make_shared<spdlog::logger>("kiln-oci", sink);
  logger->set_level(debug ? spdlog::level::debug : spdlog::level::warn);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

void log_to_file_only() {
  for (auto& sink : spdlog::default_logger()->sinks())
    if (auto* s = dynamic_cast<RuntimeSink*>(sink.get())) s->file_only();
}

}  // namespace kiln::oci
