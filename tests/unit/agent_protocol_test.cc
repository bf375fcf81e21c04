// The agent protocol's framing and message validation (agent/protocol/): round trips, and
// frames a hostile peer could send (huge lengths, garbage, deep nesting, wrong types).
#include "agent/protocol/messages.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace kiln::agent {
namespace {

using nlohmann::json;

std::vector<uint8_t> payload_of(const json& j) {
  return json::to_cbor(j);
}

Message roundtrip(const Message& m) {
  auto frame = encode(m);
  FrameReader r;
  r.feed(frame);
  std::vector<uint8_t> p;
  EXPECT_TRUE(r.next(&p));
  return decode(p);
}

std::string decode_error(const json& j) {
  try {
    decode(payload_of(j));
  } catch (const ProtocolError& e) {
    return e.what();
  }
  return "accepted";
}

TEST(AgentProtocol, StartRoundTripsEveryField) {
  Start s;
  s.id = 7;
  s.argv = {"sh", "-c", "echo hi"};
  s.env = {"A=1", "PATH=/bin"};
  s.cwd = "/tmp";
  s.uid = 1000;
  s.gid = 100;
  s.groups = {10, 20};
  s.umask = 027;
  s.rlimits = {{"nofile", 64, 128}};
  s.no_new_privileges = true;
  s.terminal = true;
  s.rows = 30;
  s.cols = 100;
  s.stdin = true;
  auto got = std::get<Start>(roundtrip(s));
  EXPECT_EQ(got.id, 7u);
  EXPECT_EQ(got.argv, s.argv);
  EXPECT_EQ(got.env, s.env);
  EXPECT_EQ(got.cwd, "/tmp");
  EXPECT_EQ(got.uid, 1000u);
  EXPECT_EQ(got.gid, 100u);
  EXPECT_EQ(got.groups, s.groups);
  EXPECT_EQ(got.umask, 027u);
  ASSERT_EQ(got.rlimits.size(), 1u);
  EXPECT_EQ(got.rlimits[0].resource, "nofile");
  EXPECT_EQ(got.rlimits[0].soft, 64u);
  EXPECT_EQ(got.rlimits[0].hard, 128u);
  EXPECT_TRUE(got.no_new_privileges);
  EXPECT_TRUE(got.terminal);
  EXPECT_EQ(got.rows, 30);
  EXPECT_EQ(got.cols, 100);
  EXPECT_TRUE(got.stdin);
}

TEST(AgentProtocol, DataIsACborByteString) {
  std::vector<uint8_t> bytes{0, 1, 2, 0xff, '\n'};
  auto frame = encode(Data{3, Stream::Stderr, bytes});
  json j = json::from_cbor(frame.begin() + kFrameHeader, frame.end());
  EXPECT_TRUE(j["bytes"].is_binary());
  auto got = std::get<Data>(roundtrip(Data{3, Stream::Stderr, bytes}));
  EXPECT_EQ(got.bytes, bytes);
  EXPECT_EQ(got.stream, Stream::Stderr);
  EXPECT_EQ(got.id, 3u);
}

TEST(AgentProtocol, OtherMessagesRoundTrip) {
  EXPECT_EQ(std::get<Hello>(roundtrip(Hello{1, "x", 5, 6})).startup_ns, 6u);
  EXPECT_EQ(std::get<Started>(roundtrip(Started{2, 99})).pid, 99);
  EXPECT_EQ(std::get<Signal>(roundtrip(Signal{2, 15})).signal, 15);
  EXPECT_EQ(std::get<Resize>(roundtrip(Resize{2, 40, 120})).cols, 120);
  EXPECT_EQ(std::get<CloseStdin>(roundtrip(CloseStdin{4})).id, 4u);
  EXPECT_EQ(std::get<Credit>(roundtrip(Credit{2, Stream::Stdin, 4096})).bytes, 4096u);
  EXPECT_EQ(std::get<Exit>(roundtrip(Exit{2, 3, 0})).status(), 3);
  EXPECT_EQ(std::get<Exit>(roundtrip(Exit{2, 0, 9})).status(), 137);
  EXPECT_EQ(std::get<Error>(roundtrip(Error{0, "bad"})).message, "bad");
  EXPECT_TRUE(std::holds_alternative<Shutdown>(roundtrip(Shutdown{})));
}

TEST(AgentProtocol, ConfigureRoundTripsAndItsEntropyIsBounded) {
  auto got = std::get<Configure>(roundtrip(Configure{"kiln.root=r", 1234, {9, 8, 7}}));
  EXPECT_EQ(got.params, "kiln.root=r");
  EXPECT_EQ(got.realtime_ns, 1234u);
  EXPECT_EQ(got.entropy, (std::vector<uint8_t>{9, 8, 7}));
  EXPECT_TRUE(std::holds_alternative<Configured>(roundtrip(Configured{})));
  json big = {{"type", "configure"},
              {"params", "kiln.root=r"},
              {"entropy", json::binary(std::vector<uint8_t>(kMaxEntropy + 1))}};
  EXPECT_NE(decode_error(big).find("at most 512 bytes"), std::string::npos) << decode_error(big);
  EXPECT_NE(decode_error({{"type", "configure"}, {"params", "x"}, {"entropy", "text"}})
                .find("'entropy' must be a CBOR byte string"),
            std::string::npos);
  EXPECT_NE(decode_error({{"type", "configure"}}).find("missing field 'params'"),
            std::string::npos);
}

TEST(AgentProtocol, CreateCwdIsSentOnlyWhenAsked) {
  Start s;
  s.id = 1;
  s.argv = {"true"};
  EXPECT_FALSE(std::get<Start>(roundtrip(s)).create_cwd);
  s.create_cwd = true;
  EXPECT_TRUE(std::get<Start>(roundtrip(s)).create_cwd);
  // An older host never sends the field: the agent reads it as false.
  auto frame = encode(Start{});
  EXPECT_EQ(std::string(frame.begin(), frame.end()).find("create_cwd"), std::string::npos);
}

TEST(AgentProtocol, FramesSplitAnywhere) {
  std::vector<uint8_t> stream;
  for (uint32_t i = 1; i <= 3; ++i) {
    auto f = encode(CloseStdin{i});
    stream.insert(stream.end(), f.begin(), f.end());
  }
  FrameReader r;
  std::vector<uint32_t> ids;
  std::vector<uint8_t> p;
  for (uint8_t b : stream) {
    r.feed({&b, 1});
    while (r.next(&p)) ids.push_back(std::get<CloseStdin>(decode(p)).id);
  }
  EXPECT_EQ(ids, (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_EQ(r.buffered(), 0u);
}

TEST(AgentProtocol, HugeLengthIsRefusedBeforeItsBody) {
  FrameReader r;
  uint8_t head[4] = {0x7f, 0xff, 0xff, 0xff};
  r.feed(head);
  std::vector<uint8_t> p;
  try {
    r.next(&p);
    FAIL() << "accepted";
  } catch (const ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("above the limit of 1048576"), std::string::npos)
        << e.what();
  }
  FrameReader empty;
  uint8_t zero[4] = {0, 0, 0, 0};
  empty.feed(zero);
  EXPECT_THROW(empty.next(&p), ProtocolError);
}

TEST(AgentProtocol, GarbageAndDeepNestingAreProtocolErrors) {
  std::vector<uint8_t> garbage{0xff, 0x00, 0x13, 0x37};
  EXPECT_THROW(decode(garbage), ProtocolError);
  // 200000 nested one-element arrays: must fail on depth, not recurse into a stack overflow.
  std::vector<uint8_t> deep(200000, 0x81);
  deep.push_back(0x00);
  try {
    decode(deep);
    FAIL() << "accepted";
  } catch (const ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("nested too deeply"), std::string::npos) << e.what();
  }
  // An array announcing 2^32 items in a few bytes.
  std::vector<uint8_t> huge{0xa1, 0x61, 'x', 0x9a, 0xff, 0xff, 0xff, 0xff};
  EXPECT_THROW(decode(huge), ProtocolError);
  // Trailing bytes after the map.
  auto ok = payload_of({{"type", "close_stdin"}, {"id", 1}});
  ok.push_back(0);
  EXPECT_THROW(decode(ok), ProtocolError);
  // A CBOR tag.
  std::vector<uint8_t> tagged{0xc1, 0x00};
  EXPECT_THROW(decode(tagged), ProtocolError);
}

TEST(AgentProtocol, FieldsAreCheckedByName) {
  EXPECT_EQ(decode_error(json::array()), "a message must be a CBOR map");
  EXPECT_EQ(decode_error({{"type", "warp"}}), "unknown message type 'warp'");
  EXPECT_EQ(decode_error({{"type", "close_stdin"}}),
            "bad 'close_stdin' message: missing field 'id'");
  EXPECT_EQ(decode_error({{"type", "close_stdin"}, {"id", "1"}}),
            "bad 'close_stdin' message: field 'id' must be an unsigned integer <= 4294967295");
  EXPECT_EQ(decode_error({{"type", "close_stdin"}, {"id", 1}, {"extra", 2}}),
            "bad 'close_stdin' message: unknown field 'extra'");
  EXPECT_EQ(decode_error({{"type", "signal"}, {"id", 1}, {"signal", 99}}),
            "bad 'signal' message: field 'signal' must be an integer in [1, 64]");
  EXPECT_EQ(decode_error({{"type", "start"}, {"id", 1}, {"argv", json::array()}}),
            "bad 'start' message: field 'argv' must have 1 to 4096 items");
  EXPECT_EQ(decode_error({{"type", "start"}, {"id", 1}, {"argv", {"a"}}, {"env", {"NOEQ"}}}),
            "bad 'start' message: env entry 'NOEQ' is not K=V");
  EXPECT_EQ(decode_error({{"type", "start"}, {"id", 1}, {"argv", {"a"}}, {"cwd", "rel"}}),
            "bad 'start' message: field 'cwd' must be an absolute path");
  EXPECT_EQ(decode_error({{"type", "start"}, {"id", 1}, {"argv", {std::string("a\0b", 3)}}}),
            "bad 'start' message: 'argv' contains a NUL byte");
  EXPECT_EQ(decode_error({{"type", "data"}, {"id", 1}, {"stream", 1}, {"bytes", "text"}}),
            "bad 'data' message: field 'bytes' must be a CBOR byte string");
  EXPECT_EQ(decode_error({{"type", "data"},
                          {"id", 1},
                          {"stream", 1},
                          {"bytes", json::binary(std::vector<uint8_t>(kMaxData + 1))}}),
            "bad 'data' message: field 'bytes' must hold 1 to 65536 bytes");
  EXPECT_EQ(
      decode_error({{"type", "data"}, {"id", 1}, {"stream", 3}, {"bytes", json::binary({1})}}),
      "bad 'data' message: field 'stream' must be an unsigned integer <= 2");
  EXPECT_EQ(decode_error({{"type", "exit"}, {"id", 1}, {"code", 1}, {"signal", 9}}),
            "bad 'exit' message: both 'code' and 'signal' set");
  EXPECT_EQ(decode_error({{"type", "credit"}, {"id", 1}, {"stream", 0}, {"bytes", kMaxWindow + 1}}),
            "bad 'credit' message: field 'bytes' must be an unsigned integer <= 16777216");
}

}  // namespace
}  // namespace kiln::agent
