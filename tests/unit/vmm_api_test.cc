// kiln-oci's client of a sandbox VMM's API (base/vmm_api.h) against a scripted server: the
// request it sends, answers read to their Content-Length on a connection left open, a 204
// without a body, and answers that are not HTTP or never come.
#include "base/vmm_api.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "base/error.h"
#include "tests/support/unix_peer.h"

namespace kiln {
namespace {

using namespace kiln::testsupport;

// Serves one connection: reads the request's head (and `body_len` bytes), answers `answer`,
// keeps the connection open until the client closes it. The request lands in `*request`.
std::thread serve_once(int listener, std::string answer, size_t body_len, std::string* request) {
  return std::thread([=] {
    UniqueFd c = accept_within(listener, 5000);
    if (!c) return;
    std::string head;
    while (head.find("\r\n\r\n") == std::string::npos) {
      std::string part = read_upto(c.get(), 1);
      if (part.empty()) return;
      head += part;
    }
    *request = head + read_upto(c.get(), body_len);
    (void)!::write(c.get(), answer.data(), answer.size());
    read_upto(c.get(), 1, 5000);  // until the client closes
  });
}

TEST(SandboxVmmApi, RequestAndAnswerOnAnOpenConnection) {
  TempDir dir;
  std::string path = dir.path() + "/api.sock";
  UniqueFd l = unix_listen(path);
  std::string request;
  std::string body = R"({"state":"Paused"})";
  auto t =
      serve_once(l.get(), "HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n{\"state\":\"Paused\"}",
                 body.size(), &request);
  ApiReply r = vmm_api_call(path, "PATCH", "/vm", body);
  t.join();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, R"({"state":"Paused"})");
  EXPECT_EQ(request.rfind("PATCH /vm HTTP/1.1\r\n", 0), 0u) << request;
  EXPECT_NE(request.find("Content-Length: 18\r\n"), std::string::npos) << request;
  EXPECT_EQ(request.substr(request.size() - body.size()), body);

  auto t2 = serve_once(l.get(), "HTTP/1.1 204 No Content\r\n\r\n", 0, &request);
  EXPECT_EQ(vmm_api_call(path, "PATCH", "/vm", "").status, 204);
  t2.join();
}

TEST(SandboxVmmApi, BadOrMissingAnswersAreErrors) {
  TempDir dir;
  std::string path = dir.path() + "/api.sock";
  EXPECT_THROW(vmm_api_call(path, "GET", "/"), kiln::Error);  // nobody listens
  UniqueFd l = unix_listen(path);
  std::string request;
  auto t = serve_once(l.get(), "SSH-2.0-hello\r\n\r\n", 0, &request);
  try {
    vmm_api_call(path, "GET", "/");
    ADD_FAILURE() << "accepted";
  } catch (const kiln::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not an HTTP answer"), std::string::npos) << e.what();
  }
  t.join();
  auto t2 = serve_once(l.get(), "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{", 0, &request);
  try {
    vmm_api_call(path, "GET", "/", "", 300);
    ADD_FAILURE() << "accepted";
  } catch (const kiln::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no answer in time"), std::string::npos) << e.what();
  }
  t2.join();
}

}  // namespace
}  // namespace kiln
