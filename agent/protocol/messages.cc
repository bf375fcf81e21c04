#include "agent/protocol/messages.h"

#include <nlohmann/json.hpp>

#include <limits>
#include <set>
#include <type_traits>

namespace kiln::agent {

using nlohmann::json;

namespace {

constexpr size_t kMaxDepth = 4;  // {start: {rlimits: [{...}]}} is 3 deep

// nlohmann's CBOR reader recurses per nesting level; this SAX refuses deep or huge containers
// before it descends, so a hostile frame cannot exhaust the stack.
class BoundedSax : public nlohmann::detail::json_sax_dom_parser<json> {
 public:
  explicit BoundedSax(json& j) : json_sax_dom_parser(j, false) {}
  bool start_object(std::size_t n) {
    if (++depth_ > kMaxDepth || (n != static_cast<std::size_t>(-1) && n > kMaxStrings))
      return fail("nested too deeply or too many keys");
    return json_sax_dom_parser::start_object(n);
  }
  bool end_object() {
    --depth_;
    return json_sax_dom_parser::end_object();
  }
  bool start_array(std::size_t n) {
    if (++depth_ > kMaxDepth || (n != static_cast<std::size_t>(-1) && n > kMaxStrings))
      return fail("nested too deeply or too many items");
    return json_sax_dom_parser::start_array(n);
  }
  bool end_array() {
    --depth_;
    return json_sax_dom_parser::end_array();
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    return fail(e.what());
  }
  const std::string& error() const { return error_; }

 private:
  bool fail(const std::string& why) {
    if (error_.empty()) error_ = why;
    return false;
  }
  size_t depth_ = 0;
  std::string error_;
};

[[noreturn]] void bad(const std::string& type, const std::string& why) {
  throw ProtocolError("bad '" + type + "' message: " + why);
}

// Reads a message's fields, each at most once, refusing unknown ones at the end.
class Fields {
 public:
  Fields(const json& j, std::string type) : j_(j), type_(std::move(type)) {}

  const json* find(const char* key) {
    seen_.insert(key);
    auto it = j_.find(key);
    return it == j_.end() ? nullptr : &*it;
  }
  const json& need(const char* key) {
    const json* v = find(key);
    if (!v) bad(type_, std::string("missing field '") + key + "'");
    return *v;
  }
  template <typename T>
  T uint(const char* key, T max = std::numeric_limits<T>::max(), bool required = true,
         T fallback = 0) {
    const json* v = required ? &need(key) : find(key);
    if (!v) return fallback;
    if (!v->is_number_unsigned() || v->get<uint64_t>() > static_cast<uint64_t>(max))
      bad(type_, std::string("field '") + key + "' must be an unsigned integer <= " +
                     std::to_string(static_cast<uint64_t>(max)));
    return static_cast<T>(v->get<uint64_t>());
  }
  int32_t sint(const char* key, int32_t min, int32_t max) {
    const json& v = need(key);
    if (!v.is_number_integer() || v.get<int64_t>() < min || v.get<int64_t>() > max)
      bad(type_, std::string("field '") + key + "' must be an integer in [" + std::to_string(min) +
                     ", " + std::to_string(max) + "]");
    return static_cast<int32_t>(v.get<int64_t>());
  }
  bool boolean(const char* key, bool fallback) {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) bad(type_, std::string("field '") + key + "' must be a boolean");
    return v->get<bool>();
  }
  std::string string(const char* key, bool required = true, std::string fallback = {}) {
    const json* v = required ? &need(key) : find(key);
    if (!v) return fallback;
    return checked_string(*v, key);
  }
  std::string checked_string(const json& v, const std::string& what) {
    if (!v.is_string()) bad(type_, "'" + what + "' must be a text string");
    const auto& s = v.get_ref<const std::string&>();
    if (s.size() > kMaxString)
      bad(type_, "'" + what + "' is longer than " + std::to_string(kMaxString) + " bytes");
    if (s.find('\0') != std::string::npos) bad(type_, "'" + what + "' contains a NUL byte");
    return s;
  }
  std::vector<std::string> strings(const char* key, bool required, size_t min_items) {
    const json* v = required ? &need(key) : find(key);
    std::vector<std::string> out;
    if (!v) return out;
    if (!v->is_array()) bad(type_, std::string("field '") + key + "' must be an array");
    if (v->size() < min_items || v->size() > kMaxStrings)
      bad(type_, std::string("field '") + key + "' must have " + std::to_string(min_items) +
                     " to " + std::to_string(kMaxStrings) + " items");
    for (const auto& s : *v) out.push_back(checked_string(s, key));
    return out;
  }
  Stream stream(const char* key) { return static_cast<Stream>(uint<uint8_t>(key, 2)); }
  void done() {
    for (const auto& [k, _] : j_.items())
      if (!seen_.count(k)) bad(type_, "unknown field '" + k + "'");
  }
  const std::string& type() const { return type_; }

 private:
  const json& j_;
  std::string type_;
  std::set<std::string> seen_{"type"};
};

json to_json(const Message& m) {
  json j;
  j["type"] = message_name(m);
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, Hello>) {
          j["version"] = v.version;
          j["software"] = v.software;
          if (v.boot_ns) j["boot_ns"] = v.boot_ns;
          if (v.startup_ns) j["startup_ns"] = v.startup_ns;
        } else if constexpr (std::is_same_v<T, Start>) {
          j["id"] = v.id;
          j["argv"] = v.argv;
          j["env"] = v.env;
          j["cwd"] = v.cwd;
          j["uid"] = v.uid;
          j["gid"] = v.gid;
          j["groups"] = v.groups;
          j["umask"] = v.umask;
          json limits = json::array();
          for (const auto& r : v.rlimits)
            limits.push_back({{"resource", r.resource}, {"soft", r.soft}, {"hard", r.hard}});
          j["rlimits"] = limits;
          j["no_new_privileges"] = v.no_new_privileges;
          j["terminal"] = v.terminal;
          j["rows"] = v.rows;
          j["cols"] = v.cols;
          j["stdin"] = v.stdin;
          if (v.create_cwd) j["create_cwd"] = true;
        } else if constexpr (std::is_same_v<T, Started>) {
          j["id"] = v.id;
          j["pid"] = v.pid;
        } else if constexpr (std::is_same_v<T, Signal>) {
          j["id"] = v.id;
          j["signal"] = v.signal;
        } else if constexpr (std::is_same_v<T, Resize>) {
          j["id"] = v.id;
          j["rows"] = v.rows;
          j["cols"] = v.cols;
        } else if constexpr (std::is_same_v<T, CloseStdin>) {
          j["id"] = v.id;
        } else if constexpr (std::is_same_v<T, Data>) {
          j["id"] = v.id;
          j["stream"] = static_cast<unsigned>(v.stream);
          j["bytes"] = json::binary(v.bytes);
        } else if constexpr (std::is_same_v<T, Credit>) {
          j["id"] = v.id;
          j["stream"] = static_cast<unsigned>(v.stream);
          j["bytes"] = v.bytes;
        } else if constexpr (std::is_same_v<T, Exit>) {
          j["id"] = v.id;
          j["code"] = v.code;
          j["signal"] = v.signal;
        } else if constexpr (std::is_same_v<T, Error>) {
          j["id"] = v.id;
          j["message"] = v.message;
        } else if constexpr (std::is_same_v<T, Configure>) {
          j["params"] = v.params;
          j["realtime_ns"] = v.realtime_ns;
          j["entropy"] = json::binary(v.entropy);
        }
      },
      m);
  return j;
}

Message from_json(const json& j) {
  if (!j.is_object()) throw ProtocolError("a message must be a CBOR map");
  auto t = j.find("type");
  if (t == j.end() || !t->is_string()) throw ProtocolError("a message needs a text 'type'");
  Fields f(j, t->get<std::string>());
  const std::string& type = f.type();
  Message out;
  if (type == "hello") {
    Hello h;
    h.version = f.uint<uint32_t>("version");
    h.software = f.string("software");
    h.boot_ns = f.uint<uint64_t>("boot_ns", UINT64_MAX, false);
    h.startup_ns = f.uint<uint64_t>("startup_ns", UINT64_MAX, false);
    out = h;
  } else if (type == "start") {
    Start s;
    s.id = f.uint<uint32_t>("id");
    s.argv = f.strings("argv", true, 1);
    s.env = f.strings("env", false, 0);
    for (const auto& e : s.env)
      if (e.find('=') == std::string::npos || e[0] == '=')
        bad(type, "env entry '" + e.substr(0, 64) + "' is not K=V");
    s.cwd = f.string("cwd", false, "/");
    if (s.cwd.empty() || s.cwd[0] != '/') bad(type, "field 'cwd' must be an absolute path");
    s.uid = f.uint<uint32_t>("uid", UINT32_MAX - 1, false);
    s.gid = f.uint<uint32_t>("gid", UINT32_MAX - 1, false);
    if (const json* g = f.find("groups")) {
      if (!g->is_array() || g->size() > kMaxGroups)
        bad(type, "field 'groups' must be an array of at most " + std::to_string(kMaxGroups));
      for (const auto& v : *g) {
        if (!v.is_number_unsigned() || v.get<uint64_t>() >= UINT32_MAX)
          bad(type, "field 'groups' holds a non-gid");
        s.groups.push_back(v.get<uint32_t>());
      }
    }
    s.umask = f.uint<uint32_t>("umask", 0777, false, 022);
    if (const json* r = f.find("rlimits")) {
      if (!r->is_array() || r->size() > kMaxRlimits)
        bad(type, "field 'rlimits' must be an array of at most " + std::to_string(kMaxRlimits));
      for (const auto& v : *r) {
        if (!v.is_object()) bad(type, "an rlimit must be a map");
        Fields rf(v, "start");
        Rlimit l;
        l.resource = rf.string("resource");
        l.soft = rf.uint<uint64_t>("soft");
        l.hard = rf.uint<uint64_t>("hard");
        if (l.soft > l.hard) bad(type, "rlimit '" + l.resource + "' has soft > hard");
        rf.done();
        s.rlimits.push_back(std::move(l));
      }
    }
    s.no_new_privileges = f.boolean("no_new_privileges", false);
    s.terminal = f.boolean("terminal", false);
    s.rows = f.uint<uint16_t>("rows", UINT16_MAX, false, 24);
    s.cols = f.uint<uint16_t>("cols", UINT16_MAX, false, 80);
    s.stdin = f.boolean("stdin", false);
    s.create_cwd = f.boolean("create_cwd", false);
    out = std::move(s);
  } else if (type == "started") {
    out = Started{f.uint<uint32_t>("id"), f.sint("pid", 1, INT32_MAX)};
  } else if (type == "signal") {
    out = Signal{f.uint<uint32_t>("id"), f.sint("signal", 1, 64)};
  } else if (type == "resize") {
    uint32_t id = f.uint<uint32_t>("id");
    uint16_t rows = f.uint<uint16_t>("rows");
    out = Resize{id, rows, f.uint<uint16_t>("cols")};
  } else if (type == "close_stdin") {
    out = CloseStdin{f.uint<uint32_t>("id")};
  } else if (type == "data") {
    Data d;
    d.id = f.uint<uint32_t>("id");
    d.stream = f.stream("stream");
    const json& b = f.need("bytes");
    if (!b.is_binary()) bad(type, "field 'bytes' must be a CBOR byte string");
    if (b.get_binary().size() > kMaxData || b.get_binary().empty())
      bad(type, "field 'bytes' must hold 1 to " + std::to_string(kMaxData) + " bytes");
    d.bytes = b.get_binary();
    out = std::move(d);
  } else if (type == "credit") {
    uint32_t id = f.uint<uint32_t>("id");
    Stream s = f.stream("stream");
    out = Credit{id, s, f.uint<uint32_t>("bytes", kMaxWindow)};
  } else if (type == "exit") {
    Exit e;
    e.id = f.uint<uint32_t>("id");
    e.code = f.sint("code", 0, 255);
    e.signal = f.sint("signal", 0, 64);
    if (e.code && e.signal) bad(type, "both 'code' and 'signal' set");
    out = e;
  } else if (type == "error") {
    out = Error{f.uint<uint32_t>("id"), f.string("message")};
  } else if (type == "shutdown") {
    out = Shutdown{};
  } else if (type == "configure") {
    Configure c;
    c.params = f.string("params");
    c.realtime_ns = f.uint<uint64_t>("realtime_ns", UINT64_MAX, false);
    if (const json* e = f.find("entropy")) {
      if (!e->is_binary() || e->get_binary().size() > kMaxEntropy)
        bad(type, "field 'entropy' must be a CBOR byte string of at most " +
                      std::to_string(kMaxEntropy) + " bytes");
      c.entropy = e->get_binary();
    }
    out = std::move(c);
  } else if (type == "configured") {
    out = Configured{};
  } else {
    throw ProtocolError("unknown message type '" + type.substr(0, 64) + "'");
  }
  f.done();
  return out;
}

}  // namespace

const char* stream_name(Stream s) {
  switch (s) {
    case Stream::Stdin:
      return "stdin";
    case Stream::Stdout:
      return "stdout";
    case Stream::Stderr:
      return "stderr";
  }
  return "?";
}

const char* message_name(const Message& m) {
  static constexpr const char* kNames[] = {
      "hello",  "start", "started", "signal",   "resize",    "close_stdin", "data",
      "credit", "exit",  "error",   "shutdown", "configure", "configured"};
  static_assert(std::size(kNames) == std::variant_size_v<Message>);
  return kNames[m.index()];
}

std::vector<uint8_t> encode(const Message& m) {
  std::vector<uint8_t> out(kFrameHeader);
  json::to_cbor(to_json(m), out);  // appends
  size_t n = out.size() - kFrameHeader;
  if (n > kMaxFrame) throw ProtocolError(std::string(message_name(m)) + " message too large");
  for (size_t i = 0; i < kFrameHeader; ++i) out[i] = static_cast<uint8_t>(n >> (8 * (3 - i)));
  return out;
}

Message decode(std::span<const uint8_t> payload) {
  if (payload.size() > kMaxFrame) throw ProtocolError("frame larger than 1 MiB");
  json j;
  BoundedSax sax(j);
  // Strict: the whole payload is one item. CBOR tags are refused (the default).
  bool ok = json::sax_parse(payload.data(), payload.data() + payload.size(), &sax,
                            json::input_format_t::cbor, true);
  if (!ok || sax.is_errored())
    throw ProtocolError("frame is not valid CBOR: " +
                        (sax.error().empty() ? std::string("parse error") : sax.error()));
  return from_json(j);
}

void FrameReader::feed(std::span<const uint8_t> bytes) {
  if (pos_ > 0 && pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  }
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
}

bool FrameReader::next(std::vector<uint8_t>* payload) {
  size_t avail = buf_.size() - pos_;
  if (avail < kFrameHeader) return false;
  size_t n = 0;
  for (size_t i = 0; i < kFrameHeader; ++i) n = (n << 8) | buf_[pos_ + i];
  if (n > kMaxFrame)
    throw ProtocolError("frame length " + std::to_string(n) + " is above the limit of " +
                        std::to_string(kMaxFrame) + " bytes");
  if (n == 0) throw ProtocolError("empty frame");
  if (avail < kFrameHeader + n) return false;
  auto begin = buf_.begin() + static_cast<std::ptrdiff_t>(pos_ + kFrameHeader);
  payload->assign(begin, begin + static_cast<std::ptrdiff_t>(n));
  pos_ += kFrameHeader + n;
  if (pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ > kMaxFrame) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(pos_));
    pos_ = 0;
  }
  return true;
}

}  // namespace kiln::agent
