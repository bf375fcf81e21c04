// libFuzzer target for the guest agent's protocol as the host reads it (agent/protocol): an
// arbitrary byte stream, fed to FrameReader in arbitrary pieces, each frame decoded. Checks: no
// crash or sanitizer report, the reader never holds more than one frame, and a message that
// decodes encodes to a frame that decodes to the same encoding (nothing accepted is lost or
// changed on the way through).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "agent/protocol/messages.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kiln::agent;
  if (size == 0) return 0;
  // The first byte sets the piece size the stream arrives in (1 to 256 bytes).
  const size_t piece = static_cast<size_t>(data[0]) + 1;
  FrameReader reader;
  std::vector<uint8_t> payload;
  try {
    for (size_t at = 1; at < size; at += piece) {
      reader.feed(std::span(data + at, std::min(piece, size - at)));
      if (reader.buffered() > kMaxFrame + 4) std::abort();
      while (reader.next(&payload)) {
        Message m;
        try {
          m = decode(payload);
        } catch (const ProtocolError&) {
          continue;  // a bad message breaks that message
        }
        const std::vector<uint8_t> frame = encode(m);
        if (frame.size() < 4) std::abort();
        const Message again = decode(std::span(frame).subspan(4));
        if (encode(again) != frame) std::abort();
      }
    }
  } catch (const ProtocolError&) {
    // an oversized length: the connection is refused
  }
  return 0;
}
