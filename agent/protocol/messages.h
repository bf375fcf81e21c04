// The host <-> kiln-agent protocol (docs/agent-protocol.md): the messages, their limits, and
// their encoding as length-prefixed CBOR frames. Both sides link this one library; it depends
// on nothing of Kiln's but base/ headers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace kiln::agent {

inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr uint32_t kDefaultPort = 1024;          // the agent's vsock port
inline constexpr size_t kFrameHeader = 4;               // big-endian payload length
inline constexpr size_t kMaxFrame = 1 << 20;            // payload bytes, both directions
inline constexpr size_t kMaxData = 64 * 1024;           // bytes in one data message
inline constexpr uint32_t kInitialWindow = 256 * 1024;  // credit each stream starts with
inline constexpr uint32_t kMaxWindow = 16 << 20;        // credit a peer may have outstanding
inline constexpr size_t kMaxProcesses = 64;             // running at once per connection
inline constexpr size_t kMaxStrings = 4096;             // argv or env entries
inline constexpr size_t kMaxString = 128 * 1024;        // one string's bytes
inline constexpr size_t kMaxGroups = 64;
inline constexpr size_t kMaxRlimits = 16;

// A peer broke the protocol (bad frame, bad CBOR, wrong type or shape, a limit exceeded). The
// connection is closed after an Error message naming what was wrong.
class ProtocolError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Stream : uint8_t { Stdin = 0, Stdout = 1, Stderr = 2 };
const char* stream_name(Stream s);

// Both sides send one first; the agent's carries its timings.
struct Hello {
  uint32_t version = kProtocolVersion;
  std::string software;     // "kiln 0.1.0", "kiln-agent 0.1.0"
  uint64_t boot_ns = 0;     // agent: CLOCK_BOOTTIME when it started (kernel boot to init)
  uint64_t startup_ns = 0;  // agent: from its start to listening (mounts, lo, ...)
};

struct Rlimit {
  std::string resource;  // "nofile", "nproc", ... (RLIMIT_ names, lower case, no prefix)
  uint64_t soft = 0;
  uint64_t hard = 0;
};

struct Start {
  uint32_t id = 0;  // chosen by the host, unique among its connection's running processes
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "K=V"
  std::string cwd = "/";
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups;
  uint32_t umask = 022;
  std::vector<Rlimit> rlimits;
  bool no_new_privileges = false;
  bool terminal = false;  // one pty for stdin/stdout (stderr joins stdout)
  uint16_t rows = 24;
  uint16_t cols = 80;
  bool stdin = false;       // false: /dev/null
  bool create_cwd = false;  // a missing cwd is made (with its parents, 0755, by root)
};

struct Started {
  uint32_t id = 0;
  int32_t pid = 0;
};
struct Signal {
  uint32_t id = 0;
  int32_t signal = 0;
};
struct Resize {
  uint32_t id = 0;
  uint16_t rows = 0;
  uint16_t cols = 0;
};
struct CloseStdin {
  uint32_t id = 0;
};
struct Data {
  uint32_t id = 0;
  Stream stream = Stream::Stdout;
  std::vector<uint8_t> bytes;
};
struct Credit {
  uint32_t id = 0;
  Stream stream = Stream::Stdout;
  uint32_t bytes = 0;
};
struct Exit {
  uint32_t id = 0;
  int32_t code = 0;    // exit code, when signal == 0
  int32_t signal = 0;  // the signal that killed it, or 0
  // As shells and Docker report it: the code, or 128 + the signal.
  int status() const { return signal ? 128 + signal : code; }
};
// id 0: about the connection (the sender closes it next); else the start of process id failed.
struct Error {
  uint32_t id = 0;
  std::string message;
};

// Host: stop the sandbox (its main workload ended): every process is ended, the file systems
// synced and the VM powered off, whatever other connections still run.
struct Shutdown {};

inline constexpr size_t kMaxEntropy = 512;  // bytes of host entropy in a configure

// Host: the workload's set-up for an agent that booted warm (kiln.warm=1, for a pooled
// snapshot): `params` are kiln.* parameters as on the kernel command line (agent/boot_config.h;
// kiln.warm and kiln.port excluded), `realtime_ns` the host's CLOCK_REALTIME (a restored guest's
// clock is the snapshot's), `entropy` fresh random bytes credited to the guest's pool and a
// reseed asked (clones of one snapshot must not share their random state). Accepted once,
// after hello and before any start; the agent answers `configured` or an error (id 0).
struct Configure {
  std::string params;
  uint64_t realtime_ns = 0;
  std::vector<uint8_t> entropy;
};
struct Configured {};

using Message = std::variant<Hello, Start, Started, Signal, Resize, CloseStdin, Data, Credit, Exit,
                             Error, Shutdown, Configure, Configured>;
const char* message_name(const Message& m);

// The frame for `m`: 4-byte big-endian length, then the CBOR map.
std::vector<uint8_t> encode(const Message& m);
// One frame's payload (without the length) to a message; throws ProtocolError.
Message decode(std::span<const uint8_t> payload);

// Splits a byte stream into frame payloads. feed() and next() throw ProtocolError on a length
// above kMaxFrame (before buffering it). Holds at most one partial frame.
class FrameReader {
 public:
  void feed(std::span<const uint8_t> bytes);
  // The next complete payload, or false.
  bool next(std::vector<uint8_t>* payload);
  size_t buffered() const { return buf_.size() - pos_; }

 private:
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;
};

}  // namespace kiln::agent
