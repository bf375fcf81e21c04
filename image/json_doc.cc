#include "image/json_doc.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>

#include "base/error.h"
#include "base/json_nesting.h"
#include "base/unique_fd.h"

namespace kiln::image {
namespace {

const char* type_name(nlohmann::json::value_t t) {
  using V = nlohmann::json::value_t;
  switch (t) {
    case V::object:
      return "an object";
    case V::array:
      return "an array";
    case V::string:
      return "a string";
    case V::boolean:
      return "a boolean";
    case V::null:
      return "null";
    default:
      return "a number";
  }
}

}  // namespace

nlohmann::json parse_json_document(std::string_view text, const std::string& what) {
  if (text.size() > kMaxJsonBytes)
    throw UsageError(what + ": " + std::to_string(text.size()) + " bytes, more than the " +
                     std::to_string(kMaxJsonBytes) + " a JSON document of an image may have");
  if (auto line = json_nesting_exceeded(text, kMaxJsonNesting))
    throw UsageError(what + ": nested more than " + std::to_string(kMaxJsonNesting) +
                     " levels deep (line " + std::to_string(*line) + ")");
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) throw UsageError(what + ": not valid JSON");
  return j;
}

nlohmann::json parse_json_object(std::string_view text, const std::string& what) {
  nlohmann::json j = parse_json_document(text, what);
  if (!j.is_object()) throw UsageError(what + ": a JSON object was expected");
  return j;
}

std::string read_file_bounded(const std::string& path, size_t limit, const std::string& what) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) throw UsageError(errno_message(what + ": cannot open " + path));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw UsageError(errno_message(what + ": cannot stat " + path));
  if (!S_ISREG(st.st_mode)) throw UsageError(what + ": " + path + " is not a regular file");
  if (static_cast<uint64_t>(st.st_size) > limit)
    throw UsageError(what + ": " + path + " is " + std::to_string(st.st_size) +
                     " bytes, more than the limit of " + std::to_string(limit));
  std::string out;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw UsageError(errno_message(what + ": cannot read " + path));
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > limit)
      throw UsageError(what + ": " + path + " grew beyond the limit of " + std::to_string(limit));
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

const nlohmann::json* optional_field(const nlohmann::json& obj, const char* key,
                                     nlohmann::json::value_t type, const std::string& what) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  const bool ok = type == nlohmann::json::value_t::number_unsigned
                      ? it->is_number_unsigned() || (it->is_number_integer() && *it >= 0)
                      : it->type() == type;
  if (!ok)
    throw UsageError(what + "." + key + ": " + type_name(type) + " was expected, not " +
                     type_name(it->type()));
  return &*it;
}

std::string string_field(const nlohmann::json& obj, const char* key, const std::string& what) {
  const auto* v = optional_field(obj, key, nlohmann::json::value_t::string, what);
  return v ? v->get<std::string>() : std::string();
}

}  // namespace kiln::image
