#include "api/http/http_parser.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace kiln::api {
namespace {

using Status = HttpParser::Status;

// Feeds `input` whole and returns every request, plus the error if one ends the stream.
struct Parsed {
  std::vector<HttpRequest> requests;
  bool error = false;
  int status = 0;
  std::string reason;
};

Parsed parse_all(HttpParser& parser, std::string_view input) {
  parser.feed(input);
  Parsed p;
  for (;;) {
    HttpRequest r;
    const Status s = parser.next(r);
    if (s == Status::kRequest) {
      p.requests.push_back(std::move(r));
      continue;
    }
    if (s == Status::kError) {
      p.error = true;
      p.status = parser.error().status;
      p.reason = parser.error().reason;
    }
    return p;
  }
}

Parsed parse_all(std::string_view input) {
  HttpParser parser;
  return parse_all(parser, input);
}

int error_status(std::string_view input) {
  const Parsed p = parse_all(input);
  EXPECT_TRUE(p.error) << input.substr(0, 200);
  EXPECT_FALSE(p.reason.empty());
  return p.status;
}

TEST(HttpParser, SimpleGet) {
  const Parsed p =
      parse_all("GET /machine-config HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n");
  ASSERT_FALSE(p.error) << p.reason;
  ASSERT_EQ(p.requests.size(), 1u);
  const HttpRequest& r = p.requests[0];
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.path, "/machine-config");
  EXPECT_EQ(r.query, "");
  EXPECT_EQ(r.body, "");
  EXPECT_TRUE(r.keep_alive);
  ASSERT_EQ(r.headers.size(), 2u);
  EXPECT_EQ(r.headers[0].first, "host");
  EXPECT_EQ(r.headers[0].second, "localhost");
  ASSERT_NE(r.header("accept"), nullptr);
  EXPECT_EQ(*r.header("accept"), "*/*");
  EXPECT_EQ(r.header("content-length"), nullptr);
}

TEST(HttpParser, IncompleteUntilTheEnd) {
  HttpParser parser;
  HttpRequest r;
  parser.feed("GET / HTTP/1.1\r\n");
  EXPECT_EQ(parser.next(r), Status::kIncomplete);
  parser.feed("\r");
  EXPECT_EQ(parser.next(r), Status::kIncomplete);
  parser.feed("\n");
  EXPECT_EQ(parser.next(r), Status::kRequest);
  EXPECT_EQ(parser.next(r), Status::kIncomplete);
  EXPECT_EQ(parser.buffered(), 0u);
}

TEST(HttpParser, PutWithBodyByteByByte) {
  const std::string body =
      R"({"drive_id": "rootfs", "path_on_host": "/tmp/disk.img", "is_root_device": true})";
  const std::string msg =
      "PUT /drives/rootfs HTTP/1.1\r\nContent-Type: application/json\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  HttpParser parser;
  HttpRequest r;
  for (size_t i = 0; i < msg.size(); ++i) {
    parser.feed(msg.substr(i, 1));
    const Status s = parser.next(r);
    if (i + 1 < msg.size()) {
      ASSERT_EQ(s, Status::kIncomplete) << "at byte " << i;
    } else {
      ASSERT_EQ(s, Status::kRequest);
    }
  }
  EXPECT_EQ(r.method, "PUT");
  EXPECT_EQ(r.path, "/drives/rootfs");
  EXPECT_EQ(r.body, body);
  EXPECT_EQ(parser.next(r), Status::kIncomplete);
}

TEST(HttpParser, TwoPipelinedRequestsInOneBuffer) {
  const Parsed p = parse_all(
      "PUT /actions HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /vm HTTP/1.1\r\n\r\nPAT");
  ASSERT_FALSE(p.error);
  ASSERT_EQ(p.requests.size(), 2u);
  EXPECT_EQ(p.requests[0].method, "PUT");
  EXPECT_EQ(p.requests[0].body, "hello");
  EXPECT_EQ(p.requests[1].method, "GET");
  EXPECT_EQ(p.requests[1].path, "/vm");
  EXPECT_EQ(p.requests[1].body, "");
}

TEST(HttpParser, HeaderNamesAreCaseInsensitive) {
  const Parsed p = parse_all(
      "PUT /x HTTP/1.1\r\nCONTENT-length:    3 \t\r\nX-Mixed-Case: Value Kept\r\nConnection: "
      "CLOSE\r\n\r\nabc");
  ASSERT_FALSE(p.error) << p.reason;
  ASSERT_EQ(p.requests.size(), 1u);
  EXPECT_EQ(p.requests[0].body, "abc");
  ASSERT_NE(p.requests[0].header("x-mixed-case"), nullptr);
  EXPECT_EQ(*p.requests[0].header("x-mixed-case"), "Value Kept");
  EXPECT_EQ(p.requests[0].header("X-Mixed-Case"), nullptr);  // look-ups use lower case
  EXPECT_FALSE(p.requests[0].keep_alive);
}

TEST(HttpParser, ConnectionClose) {
  const Parsed p = parse_all("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n");
  ASSERT_EQ(p.requests.size(), 1u);
  EXPECT_FALSE(p.requests[0].keep_alive);
  EXPECT_TRUE(parse_all("GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n").requests.at(0).keep_alive);
}

TEST(HttpParser, Http10) {
  EXPECT_FALSE(parse_all("GET / HTTP/1.0\r\n\r\n").requests.at(0).keep_alive);
  EXPECT_TRUE(
      parse_all("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").requests.at(0).keep_alive);
  EXPECT_FALSE(parse_all("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n")
                   .requests.at(0)
                   .keep_alive);
  EXPECT_EQ(error_status("GET / HTTP/2.0\r\n\r\n"), 505);
  EXPECT_EQ(error_status("GET / HTTP/0.9\r\n\r\n"), 505);
  EXPECT_EQ(error_status("GET / HTTP/1.10\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET / http/1.1\r\n\r\n"), 400);
}

TEST(HttpParser, QueryStringSplit) {
  const Parsed p = parse_all("GET /snapshot?a=1&b=%20x HTTP/1.1\r\n\r\nGET /?  HTTP/1.1\r\n\r\n");
  ASSERT_EQ(p.requests.size(), 1u);  // the second request line has two spaces
  EXPECT_EQ(p.requests[0].path, "/snapshot");
  EXPECT_EQ(p.requests[0].query, "a=1&b=%20x");
  EXPECT_TRUE(p.error);
  EXPECT_EQ(p.status, 400);

  const Parsed q = parse_all("GET /a?b?c HTTP/1.1\r\n\r\nGET /e? HTTP/1.1\r\n\r\n");
  ASSERT_EQ(q.requests.size(), 2u);
  EXPECT_EQ(q.requests[0].path, "/a");
  EXPECT_EQ(q.requests[0].query, "b?c");
  EXPECT_EQ(q.requests[1].path, "/e");
  EXPECT_EQ(q.requests[1].query, "");
}

TEST(HttpParser, AbsoluteFormTarget) {
  const Parsed p = parse_all(
      "GET http://localhost/machine-config?x=1 HTTP/1.1\r\n\r\nGET HTTP://localhost "
      "HTTP/1.1\r\n\r\n");
  ASSERT_EQ(p.requests.size(), 2u);
  EXPECT_EQ(p.requests[0].path, "/machine-config");
  EXPECT_EQ(p.requests[0].query, "x=1");
  EXPECT_EQ(p.requests[1].path, "/");
}

TEST(HttpParser, EmptyLinesBeforeARequestAreIgnored) {
  const Parsed p = parse_all("GET /a HTTP/1.1\r\n\r\n\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
  ASSERT_FALSE(p.error);
  ASSERT_EQ(p.requests.size(), 2u);
  EXPECT_EQ(p.requests[1].path, "/b");
}

TEST(HttpParser, RequestLineLimit) {
  const std::string ok_target = "/" + std::string(8192 - 1 - 4 - 9, 'a');  // "GET " + " HTTP/1.1"
  const std::string ok = "GET " + ok_target + " HTTP/1.1";
  ASSERT_EQ(ok.size(), 8192u);
  EXPECT_EQ(parse_all(ok + "\r\n\r\n").requests.size(), 1u);
  EXPECT_EQ(error_status("GET /" + ok_target + " HTTP/1.1\r\n\r\n"), 414);
  // Detected before the line ends: the parser does not buffer an endless line.
  HttpParser parser;
  HttpRequest r;
  parser.feed("GET /" + std::string(10000, 'a'));
  EXPECT_EQ(parser.next(r), Status::kError);
  EXPECT_EQ(parser.error().status, 414);
  EXPECT_EQ(parser.buffered(), 0u);
}

TEST(HttpParser, HeaderLineLimit) {
  const std::string name = "X-Big: ";
  const std::string ok = name + std::string(8192 - name.size(), 'v');
  EXPECT_EQ(parse_all("GET / HTTP/1.1\r\n" + ok + "\r\n\r\n").requests.size(), 1u);
  EXPECT_EQ(error_status("GET / HTTP/1.1\r\n" + ok + "v\r\n\r\n"), 431);
  HttpParser parser;
  HttpRequest r;
  parser.feed("GET / HTTP/1.1\r\nX: " + std::string(9000, 'v'));
  EXPECT_EQ(parser.next(r), Status::kError);
  EXPECT_EQ(parser.error().status, 431);
}

TEST(HttpParser, HeaderCountLimit) {
  std::string headers;
  for (int i = 0; i < 100; ++i) headers += "X-" + std::to_string(i) + ": v\r\n";
  const Parsed p = parse_all("GET / HTTP/1.1\r\n" + headers + "\r\n");
  ASSERT_EQ(p.requests.size(), 1u);
  EXPECT_EQ(p.requests[0].headers.size(), 100u);
  EXPECT_EQ(error_status("GET / HTTP/1.1\r\n" + headers + "X-100: v\r\n\r\n"), 431);
}

TEST(HttpParser, BodyLimit) {
  const std::string body(64 * 1024, 'b');
  const Parsed p = parse_all("PUT / HTTP/1.1\r\nContent-Length: 65536\r\n\r\n" + body);
  ASSERT_EQ(p.requests.size(), 1u);
  EXPECT_EQ(p.requests[0].body, body);
  // Refused from the header alone: the body is never buffered.
  EXPECT_EQ(error_status("PUT / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n"), 413);
  EXPECT_EQ(error_status("PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n"),
            413);
}

TEST(HttpParser, CustomLimits) {
  HttpParser::Limits limits;
  limits.body = 4;
  limits.headers = 1;
  HttpParser parser(limits);
  EXPECT_EQ(parse_all(parser, "PUT / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").status, 413);
  HttpParser parser2(limits);
  EXPECT_EQ(parse_all(parser2, "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n").status, 431);
}

TEST(HttpParser, BadRequestLine) {
  EXPECT_EQ(error_status("GARBAGE\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET /\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET  / HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET / HTTP/1.1 \r\n\r\n"), 400);
  EXPECT_EQ(error_status("G(T / HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET relative HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(error_status("OPTIONS * HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET /a\x01 HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET /\xc3\xa9 HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET / HTTP/1.1\n\n"), 400);  // bare LF
  EXPECT_EQ(error_status("GET / HTTP/1.1\r\r\n\r\n"), 400);
}

TEST(HttpParser, BadHeaders) {
  EXPECT_EQ(error_status("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET / HTTP/1.1\r\nName : v\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET / HTTP/1.1\r\n: v\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET / HTTP/1.1\r\nA: 1\r\n  folded\r\n\r\n"), 400);
  EXPECT_EQ(error_status("GET / HTTP/1.1\r\nA: x\ry\r\n\r\n"), 400);
  static constexpr char kNul[] = "GET / HTTP/1.1\r\nA: x\0y\r\n\r\n";
  EXPECT_EQ(error_status(std::string(kNul, sizeof(kNul) - 1)), 400);
}

TEST(HttpParser, BadContentLength) {
  EXPECT_EQ(error_status("PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400);
  EXPECT_EQ(error_status("PUT / HTTP/1.1\r\nContent-Length: +1\r\n\r\nx"), 400);
  EXPECT_EQ(error_status("PUT / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"), 400);
  EXPECT_EQ(error_status("PUT / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n"), 400);
  EXPECT_EQ(error_status("PUT / HTTP/1.1\r\nContent-Length:\r\n\r\n"), 400);
  EXPECT_EQ(error_status("PUT / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n"), 400);
  EXPECT_EQ(error_status("PUT / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
            400);
  EXPECT_EQ(error_status("PUT / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\nabcd"), 400);
  // Identical repeats are one length (RFC 9112 6.3).
  const Parsed p =
      parse_all("PUT / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 003, 3\r\n\r\nabc");
  ASSERT_EQ(p.requests.size(), 1u);
  EXPECT_EQ(p.requests[0].body, "abc");
}

TEST(HttpParser, NoContentLengthMeansNoBody) {
  const Parsed p = parse_all("PUT /actions HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n");
  ASSERT_FALSE(p.error);
  ASSERT_EQ(p.requests.size(), 2u);
  EXPECT_EQ(p.requests[0].body, "");
}

TEST(HttpParser, ChunkedRefused) {
  EXPECT_EQ(
      error_status("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
      501);
  EXPECT_EQ(error_status(
                "PUT / HTTP/1.1\r\nContent-Length: 5\r\ntransfer-encoding: gzip, chunked\r\n\r\n"),
            501);
}

TEST(HttpParser, ErrorIsFinal) {
  HttpParser parser;
  EXPECT_EQ(parse_all(parser, "BAD\r\n").status, 400);
  parser.feed("GET / HTTP/1.1\r\n\r\n");
  HttpRequest r;
  EXPECT_EQ(parser.next(r), Status::kError);
  EXPECT_EQ(parser.buffered(), 0u);
}

TEST(HttpParser, ExpectContinueOncePerRequestWithPendingBody) {
  HttpParser parser;
  HttpRequest r;
  parser.feed("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
  EXPECT_EQ(parser.next(r), Status::kIncomplete);
  EXPECT_TRUE(parser.take_expect_continue());
  EXPECT_FALSE(parser.take_expect_continue());
  parser.feed("ok");
  EXPECT_EQ(parser.next(r), Status::kRequest);
  EXPECT_EQ(r.body, "ok");
  // Body already here: no 100 needed.
  parser.feed("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok");
  EXPECT_EQ(parser.next(r), Status::kRequest);
  EXPECT_FALSE(parser.take_expect_continue());
}

TEST(HttpResponse, Serialize) {
  HttpResponse r;
  r.body = R"({"a": 1})";
  EXPECT_EQ(serialize(r, true),
            "HTTP/1.1 200 OK\r\nServer: Kiln\r\nContent-Type: application/json\r\n"
            "Content-Length: 8\r\n\r\n{\"a\": 1}");
  HttpResponse none;
  none.status = 204;
  EXPECT_EQ(serialize(none, false),
            "HTTP/1.1 204 No Content\r\nServer: Kiln\r\nConnection: close\r\n\r\n");
  HttpResponse bad;
  bad.status = 404;
  bad.content_type = "text/plain\r\nX-Injected: 1";
  EXPECT_EQ(serialize(bad, true),
            "HTTP/1.1 404 Not Found\r\nServer: Kiln\r\nContent-Type: text/plainX-Injected: 1\r\n"
            "Content-Length: 0\r\n\r\n");
}

TEST(HttpResponse, FaultResponseIsJson) {
  const HttpResponse r = fault_response(400, "bad \"x\"\n\\");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.body, R"({"fault_message": "bad \"x\"\n\\"})");
  EXPECT_EQ(json_quote(std::string("\x01", 1)), "\"\\u0001\"");
}

// Messages can carry user bytes (a path in an exception): the reply stays valid JSON.
TEST(HttpResponse, FaultMessageThatIsNotUtf8BecomesValidJson) {
  const HttpResponse r = fault_response(500, "internal error: /k\xe9");
  EXPECT_EQ(r.body, "{\"fault_message\": \"internal error: /k\xef\xbf\xbd\"}");
  EXPECT_FALSE(nlohmann::json::parse(r.body, nullptr, false).is_discarded());
}

}  // namespace
}  // namespace kiln::api
