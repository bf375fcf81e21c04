// The compiled parts of spdlog and fmt, built into Kiln instead of linked from libspdlog.so and
// libfmt.so. Debian ships both libraries' implementation headers (spdlog/*-inl.h,
// fmt/format-inl.h) but no static archives; compiling them here once lets `kiln` link statically
// (no dynamic loader, no shared-library relocations: see README "Performance") while every other
// translation unit keeps including the light compiled-library headers (SPDLOG_COMPILED_LIB, set
// by meson.build for the whole project).
//
// Only this file includes the -inl.h headers. The explicit instantiations are the templates Kiln
// uses with their definitions in those headers; a new sink or a new formatted type that fails to
// link names what to add here.
#ifndef SPDLOG_COMPILED_LIB
#error "meson.build must define SPDLOG_COMPILED_LIB for every file"
#endif

#include <fmt/format-inl.h>

#include <spdlog/async.h>
#include <spdlog/common-inl.h>
#include <spdlog/details/backtracer-inl.h>
#include <spdlog/details/file_helper-inl.h>
#include <spdlog/details/log_msg-inl.h>
#include <spdlog/details/log_msg_buffer-inl.h>
#include <spdlog/details/null_mutex.h>
#include <spdlog/details/os-inl.h>
#include <spdlog/details/periodic_worker-inl.h>
#include <spdlog/details/registry-inl.h>
#include <spdlog/logger-inl.h>
#include <spdlog/pattern_formatter-inl.h>
#include <spdlog/sinks/ansicolor_sink-inl.h>
#include <spdlog/sinks/base_sink-inl.h>
#include <spdlog/sinks/basic_file_sink-inl.h>
#include <spdlog/sinks/sink-inl.h>
#include <spdlog/sinks/stdout_color_sinks-inl.h>
#include <spdlog/spdlog-inl.h>

#include <mutex>

namespace fmt {
inline namespace v9 {
namespace detail {
template auto dragonbox::to_decimal(float x) noexcept -> dragonbox::decimal_fp<float>;
template auto dragonbox::to_decimal(double x) noexcept -> dragonbox::decimal_fp<double>;
template auto thousands_sep_impl(locale_ref) -> thousands_sep_result<char>;
template auto decimal_point_impl(locale_ref) -> char;
template void buffer<char>::append(const char*, const char*);
}  // namespace detail
}  // namespace v9
}  // namespace fmt

template class spdlog::sinks::base_sink<std::mutex>;
template class spdlog::sinks::base_sink<spdlog::details::null_mutex>;
template class spdlog::sinks::basic_file_sink<std::mutex>;
template class spdlog::sinks::ansicolor_sink<spdlog::details::console_mutex>;
template class spdlog::sinks::ansicolor_stderr_sink<spdlog::details::console_mutex>;
template std::shared_ptr<spdlog::logger> spdlog::stderr_color_mt<spdlog::synchronous_factory>(
    const std::string& logger_name, color_mode mode);
