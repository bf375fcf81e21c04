#include <dirent.h>
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include "tests/support/test_files.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "api/http/api_server.h"
#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::api {
namespace {

using namespace std::chrono_literals;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/kiln-http-XXXXXX";
    if (!::mkdtemp(tmpl)) throw_errno("mkdtemp");
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

sockaddr_un address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

UniqueFd connect_to(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const timeval tv{10, 0};  // a hung server fails the test instead of hanging it
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  const sockaddr_un addr = address(path);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) < 0)
    throw_errno("connect " + path);
  return fd;
}

void send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) throw_errno("send");
    data.remove_prefix(static_cast<size_t>(n));
  }
}

struct Reply {
  int status = 0;
  std::map<std::string, std::string> headers;  // as sent
  std::string body;
};

// Reads one response; `carry` keeps bytes read past it. nullopt on EOF (or error) first.
std::optional<Reply> read_reply(int fd, std::string& carry) {
  auto fill = [&]() {
    char buf[65536];
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    carry.append(buf, static_cast<size_t>(n));
    return true;
  };
  size_t end;
  while ((end = carry.find("\r\n\r\n")) == std::string::npos)
    if (!fill()) return std::nullopt;
  Reply r;
  const std::string head = carry.substr(0, end);
  carry.erase(0, end + 4);
  r.status = std::stoi(head.substr(9, 3));
  size_t pos = head.find("\r\n");
  while (pos != std::string::npos) {
    const size_t next = head.find("\r\n", pos + 2);
    const std::string line =
        head.substr(pos + 2, next == std::string::npos ? next : next - pos - 2);
    const size_t colon = line.find(": ");
    r.headers[line.substr(0, colon)] = line.substr(colon + 2);
    pos = next;
  }
  const size_t length =
      r.headers.count("Content-Length") ? std::stoul(r.headers["Content-Length"]) : 0;
  while (carry.size() < length)
    if (!fill()) return std::nullopt;
  r.body = carry.substr(0, length);
  carry.erase(0, length);
  return r;
}

bool reads_eof(int fd) {
  char c;
  return ::recv(fd, &c, 1, 0) == 0;
}

std::string get(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: localhost\r\n" + extra + "\r\n";
}

std::string put(const std::string& path, const std::string& body) {
  return "PUT " + path +
         " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
         "Content-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// Answers from other threads after a delay; joins them all when destroyed.
class Responders {
 public:
  ~Responders() { join(); }
  void later(ApiServer::Respond respond, HttpResponse response, std::chrono::milliseconds delay) {
    std::lock_guard lock(mu_);
    threads_.emplace_back([respond = std::move(respond), response = std::move(response), delay] {
      std::this_thread::sleep_for(delay);
      respond(response);
    });
  }
  void join() {
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }

 private:
  std::mutex mu_;
  std::vector<std::thread> threads_;
};

class HttpServerTest : public ::testing::Test {
 protected:
  // Echoes "METHOD PATH[?QUERY] BODY" as text, from another thread. Special paths:
  // /slow answers after 100 ms; /hold keeps the Respond in `held`; /drop never answers;
  // /throw throws; /big answers 4 MiB; /nocontent answers 204.
  ApiServer::Handler echo() {
    return [this](HttpRequest req, ApiServer::Respond respond) {
      ++requests;
      handler_thread = std::this_thread::get_id();
      if (req.path == "/hold") {
        std::lock_guard lock(held_mu);
        held = std::move(respond);
        return;
      }
      if (req.path == "/drop") return;
      if (req.path == "/throw") throw std::runtime_error("boom");
      HttpResponse r;
      r.content_type = "text/plain";
      if (req.path == "/big") {
        r.body.assign(4 << 20, 'x');
      } else if (req.path == "/nocontent") {
        r.status = 204;
      } else {
        r.body = req.method + " " + req.path + (req.query.empty() ? "" : "?" + req.query) + " " +
                 req.body;
      }
      responders.later(std::move(respond), std::move(r), req.path == "/slow" ? 100ms : 2ms);
    };
  }

  std::unique_ptr<ApiServer> make_server(ApiServer::Limits limits = ApiServer::Limits{}) {
    auto server = std::make_unique<ApiServer>(sock, echo(), limits);
    server->start();
    return server;
  }

  TempDir dir;
  const std::string sock = dir.path() + "/api.sock";
  Responders responders;  // declared before servers in tests: joined after they are gone
  std::atomic<int> requests{0};
  std::thread::id handler_thread;
  std::mutex held_mu;
  ApiServer::Respond held;
};

TEST_F(HttpServerTest, KeepAliveTwoRequestsOnOneConnection) {
  auto server = make_server();
  UniqueFd c = connect_to(sock);
  std::string carry;
  send_all(c.get(), put("/drives/rootfs", R"({"a": 1})"));
  auto r1 = read_reply(c.get(), carry);
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->status, 200);
  EXPECT_EQ(r1->body, R"(PUT /drives/rootfs {"a": 1})");
  EXPECT_EQ(r1->headers["Content-Type"], "text/plain");
  EXPECT_EQ(r1->headers["Server"], "Kiln");
  EXPECT_EQ(r1->headers.count("Connection"), 0u);
  send_all(c.get(), get("/machine-config?x=1"));
  auto r2 = read_reply(c.get(), carry);
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->body, "GET /machine-config?x=1 ");
  EXPECT_NE(handler_thread, std::this_thread::get_id());
}

TEST_F(HttpServerTest, PipelinedRequestsAnsweredInOrder) {
  auto server = make_server();
  UniqueFd c = connect_to(sock);
  std::string carry;
  // The first is answered last by its thread; the second must still come second.
  send_all(c.get(), get("/slow") + get("/fast") + put("/x", "b"));
  for (const char* want : {"GET /slow ", "GET /fast ", "PUT /x b"}) {
    auto r = read_reply(c.get(), carry);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, want);
  }
}

TEST_F(HttpServerTest, TenClientsConcurrently) {
  auto server = make_server();
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 10; ++i) {
    clients.emplace_back([&, i] {
      UniqueFd c = connect_to(sock);
      std::string carry;
      for (int j = 0; j < 3; ++j) {
        const std::string path = "/client/" + std::to_string(i) + "/" + std::to_string(j);
        send_all(c.get(), get(j == 0 ? "/slow" : path));
        auto r = read_reply(c.get(), carry);
        if (r && r->body == "GET " + (j == 0 ? std::string("/slow") : path) + " ") ++ok;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 30);
}

TEST_F(HttpServerTest, MalformedRequestGets400AndCloseWhileOthersAreServed) {
  auto server = make_server();
  UniqueFd good = connect_to(sock);
  std::string good_carry;
  send_all(good.get(), get("/before"));
  ASSERT_TRUE(read_reply(good.get(), good_carry));

  UniqueFd bad = connect_to(sock);
  std::string carry;
  send_all(bad.get(), "GARBAGE\r\n\r\n" + get("/never"));
  auto r = read_reply(bad.get(), carry);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->headers["Content-Type"], "application/json");
  EXPECT_EQ(r->headers["Connection"], "close");
  EXPECT_EQ(r->body, R"({"fault_message": "malformed request line"})");
  EXPECT_TRUE(carry.empty());
  EXPECT_TRUE(reads_eof(bad.get()));

  send_all(good.get(), get("/after"));
  auto after = read_reply(good.get(), good_carry);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->body, "GET /after ");
  EXPECT_EQ(requests.load(), 2);  // "/never" was not handled
}

TEST_F(HttpServerTest, ErrorStatusesFromTheParser) {
  auto server = make_server();
  const std::pair<std::string, int> cases[] = {
      {"PUT / HTTP/1.1\r\nContent-Length: 70000\r\n\r\n", 413},
      {"GET / HTTP/1.1\r\nX: " + std::string(9000, 'v'), 431},
      {"GET / HTTP/2.0\r\n\r\n", 505},
      {"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
      {"PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
  };
  for (const auto& [request, status] : cases) {
    UniqueFd c = connect_to(sock);
    std::string carry;
    send_all(c.get(), request);
    auto r = read_reply(c.get(), carry);
    ASSERT_TRUE(r) << status;
    EXPECT_EQ(r->status, status);
    EXPECT_NE(r->body.find("fault_message"), std::string::npos);
    EXPECT_TRUE(reads_eof(c.get()));
  }
  EXPECT_EQ(requests.load(), 0);
}

TEST_F(HttpServerTest, ConnectionCloseAndHttp10CloseAfterTheResponse) {
  auto server = make_server();
  for (const std::string& request :
       {get("/a", "Connection: close\r\n"), std::string("GET /b HTTP/1.0\r\n\r\n")}) {
    UniqueFd c = connect_to(sock);
    std::string carry;
    send_all(c.get(), request + get("/not-read"));
    auto r = read_reply(c.get(), carry);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->headers["Connection"], "close");
    EXPECT_TRUE(reads_eof(c.get()));
  }
  EXPECT_EQ(requests.load(), 2);
}

TEST_F(HttpServerTest, LargeResponseIsWrittenInPieces) {
  auto server = make_server();
  UniqueFd c = connect_to(sock);
  std::string carry;
  send_all(c.get(), get("/big") + get("/next"));
  std::this_thread::sleep_for(50ms);  // the server fills the socket buffer and waits for EPOLLOUT
  auto r = read_reply(c.get(), carry);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body.size(), 4u << 20);
  auto next = read_reply(c.get(), carry);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->body, "GET /next ");
}

TEST_F(HttpServerTest, HandlerFailuresAnswer500) {
  auto server = make_server();
  UniqueFd c = connect_to(sock);
  std::string carry;
  send_all(c.get(), get("/throw") + get("/drop") + get("/nocontent") + "HEAD /x HTTP/1.1\r\n\r\n" +
                        get("/ok"));
  auto thrown = read_reply(c.get(), carry);
  ASSERT_TRUE(thrown);
  EXPECT_EQ(thrown->status, 500);
  EXPECT_EQ(thrown->body, R"({"fault_message": "internal error: boom"})");
  auto dropped = read_reply(c.get(), carry);
  ASSERT_TRUE(dropped);
  EXPECT_EQ(dropped->status, 500);
  auto nocontent = read_reply(c.get(), carry);
  ASSERT_TRUE(nocontent);
  EXPECT_EQ(nocontent->status, 204);
  EXPECT_EQ(nocontent->headers.count("Content-Length"), 0u);
  auto head = read_reply(c.get(), carry);  // Content-Length of the GET body, no body bytes
  ASSERT_TRUE(head);
  EXPECT_EQ(head->headers["Content-Length"], "8");
  carry.insert(0, head->body);  // read_reply took the next response's bytes as a body
  auto ok = read_reply(c.get(), carry);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->body, "GET /ok ");
}

TEST_F(HttpServerTest, ExpectContinue) {
  auto server = make_server();
  UniqueFd c = connect_to(sock);
  std::string carry;
  send_all(c.get(), "PUT /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
  auto cont = read_reply(c.get(), carry);
  ASSERT_TRUE(cont);
  EXPECT_EQ(cont->status, 100);
  send_all(c.get(), "body");
  auto r = read_reply(c.get(), carry);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "PUT /e body");
}

TEST_F(HttpServerTest, ResponseForAClosedConnectionIsDropped) {
  auto server = make_server();
  {
    UniqueFd c = connect_to(sock);
    send_all(c.get(), get("/hold"));
    while (requests.load() == 0) std::this_thread::sleep_for(1ms);
  }  // the client goes away before the answer
  std::this_thread::sleep_for(20ms);
  {
    std::lock_guard lock(held_mu);
    held(HttpResponse{});
    held(HttpResponse{});  // a second answer is ignored
  }
  UniqueFd c = connect_to(sock);
  std::string carry;
  send_all(c.get(), get("/still"));
  auto r = read_reply(c.get(), carry);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "GET /still ");
}

TEST_F(HttpServerTest, ClientDisconnectsMidRequest) {
  auto server = make_server();
  for (const std::string& partial :
       {std::string("GET /par"), put("/x", "0123456789").substr(0, 60)}) {
    UniqueFd c = connect_to(sock);
    send_all(c.get(), partial);
  }
  {  // half-close: the request is complete, the answer still arrives
    UniqueFd c = connect_to(sock);
    send_all(c.get(), get("/half"));
    ::shutdown(c.get(), SHUT_WR);
    std::string carry;
    auto r = read_reply(c.get(), carry);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body, "GET /half ");
    EXPECT_TRUE(reads_eof(c.get()));
  }
  UniqueFd c = connect_to(sock);
  std::string carry;
  send_all(c.get(), get("/alive"));
  ASSERT_TRUE(read_reply(c.get(), carry));
  EXPECT_EQ(requests.load(), 2);
}

// At the limit, the connection idle longest gives way to a new client.
TEST_F(HttpServerTest, ConnectionLimitClosesTheLongestIdleForANewClient) {
  auto server = make_server();
  std::vector<UniqueFd> clients;
  std::string carry;
  for (size_t i = 0; i < ApiServer::kMaxConnections; ++i) {
    clients.push_back(connect_to(sock));
    send_all(clients.back().get(), get("/n"));
    ASSERT_TRUE(read_reply(clients.back().get(), carry)) << i;
  }
  UniqueFd extra = connect_to(sock);
  send_all(extra.get(), get("/extra"));
  auto r = read_reply(extra.get(), carry);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "GET /extra ");
  EXPECT_TRUE(reads_eof(clients.front().get()));  // the first one, idle longest, was closed
  send_all(clients.back().get(), get("/still"));  // the others stay open
  ASSERT_TRUE(read_reply(clients.back().get(), carry));
}

// Clients that connect and never finish a request no longer lock everyone else out: their
// requests time out (408) and a waiting client is served.
TEST_F(HttpServerTest, StalledConnectionsTimeOutAndANewClientIsServed) {
  ApiServer::Limits limits;
  limits.request_timeout = 300ms;
  auto server = make_server(limits);
  std::vector<UniqueFd> stalled;
  for (size_t i = 0; i < ApiServer::kMaxConnections; ++i) {
    stalled.push_back(connect_to(sock));
    send_all(stalled.back().get(), "GET /never HTTP/1.1\r\nHost: x\r\n");  // no blank line
  }
  std::this_thread::sleep_for(100ms);  // the server has read them: they are mid-request
  const auto start = std::chrono::steady_clock::now();
  UniqueFd c = connect_to(sock);
  send_all(c.get(), get("/served"));
  std::string carry;
  auto r = read_reply(c.get(), carry);
  ASSERT_TRUE(r) << "the new client got no answer";
  EXPECT_EQ(r->body, "GET /served ");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  carry.clear();
  auto timed_out = read_reply(stalled.front().get(), carry);
  ASSERT_TRUE(timed_out);
  EXPECT_EQ(timed_out->status, 408);
  EXPECT_TRUE(reads_eof(stalled.front().get()));
  EXPECT_EQ(requests.load(), 1);
}

// A request trickled a byte at a time still has to arrive whole within the timeout.
TEST_F(HttpServerTest, TrickledRequestTimesOut) {
  ApiServer::Limits limits;
  limits.request_timeout = 300ms;
  auto server = make_server(limits);
  UniqueFd c = connect_to(sock);
  const std::string request = get("/slowloris");
  bool closed = false;
  for (size_t i = 0; i + 1 < request.size() && !closed; ++i) {
    closed = ::send(c.get(), &request[i], 1, MSG_NOSIGNAL) != 1;
    std::this_thread::sleep_for(30ms);
  }
  std::string carry;
  auto r = read_reply(c.get(), carry);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 408);
  EXPECT_EQ(requests.load(), 0);
}

TEST_F(HttpServerTest, IdleKeepAliveConnectionIsClosed) {
  ApiServer::Limits limits;
  limits.idle_timeout = 200ms;
  auto server = make_server(limits);
  UniqueFd c = connect_to(sock);
  std::string carry;
  send_all(c.get(), get("/once"));
  ASSERT_TRUE(read_reply(c.get(), carry));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(reads_eof(c.get()));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 150ms);
}

// The handler's time is not limited: a request still being answered keeps its connection.
TEST_F(HttpServerTest, RequestInFlightDoesNotTimeOut) {
  ApiServer::Limits limits;
  limits.request_timeout = 100ms;
  limits.idle_timeout = 100ms;
  auto server = make_server(limits);
  UniqueFd c = connect_to(sock);
  send_all(c.get(), get("/hold"));
  std::this_thread::sleep_for(400ms);
  ApiServer::Respond respond;
  {
    std::lock_guard lock(held_mu);
    respond = std::move(held);
  }
  ASSERT_TRUE(respond);
  HttpResponse answer;
  answer.body = "late";
  respond(answer);
  std::string carry;
  auto r = read_reply(c.get(), carry);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "late");
}

// At the limit with no idle connection (all are mid-request), a new client waits in the
// backlog and is served as soon as one closes, rather than being turned away.
TEST_F(HttpServerTest, ConnectionLimitWithNoIdleConnectionMakesNewClientsWait) {
  ApiServer::Limits limits;
  limits.max_connections = 2;
  auto server = make_server(limits);
  UniqueFd a = connect_to(sock), b = connect_to(sock);
  send_all(a.get(), "GET /a HTTP/1.1\r\n");
  send_all(b.get(), "GET /b HTTP/1.1\r\n");
  std::this_thread::sleep_for(50ms);
  UniqueFd c = connect_to(sock);
  send_all(c.get(), get("/c"));
  pollfd p{c.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 200), 0);  // not answered (nor closed) while both are taken
  a.reset();
  std::string carry;
  auto r = read_reply(c.get(), carry);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "GET /c ");
}

TEST_F(HttpServerTest, SocketFileIsMode0600EvenWithUmask0) {
  const mode_t old = ::umask(0);
  ApiServer server(sock, echo());
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat(sock.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(HttpServerTest, ExistingNonSocketFileIsRefused) {
  std::ofstream(sock) << "precious";
  try {
    ApiServer server(sock, echo());
    FAIL() << "no exception";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find(sock), std::string::npos) << e.what();
  }
  std::ifstream in(sock);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "precious");
}

TEST_F(HttpServerTest, LiveSocketIsRefused) {
  auto server = make_server();
  EXPECT_THROW(ApiServer(sock, echo()), UsageError);
  UniqueFd c = connect_to(sock);  // the first server still owns it
  std::string carry;
  send_all(c.get(), get("/x"));
  EXPECT_TRUE(read_reply(c.get(), carry));
}

TEST_F(HttpServerTest, StaleSocketIsReplaced) {
  {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const sockaddr_un addr = address(sock);
    ASSERT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
  }  // closed without unlink: a stale socket file
  auto server = make_server();
  UniqueFd c = connect_to(sock);
  std::string carry;
  send_all(c.get(), get("/fresh"));
  auto r = read_reply(c.get(), carry);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "GET /fresh ");
}

TEST_F(HttpServerTest, SocketRemovedAfterDestructionAndNoFdLeak) {
  const int fds_before = test::count_open_fds();
  {
    auto server = make_server();
    UniqueFd idle = connect_to(sock);
    UniqueFd held_conn = connect_to(sock);
    send_all(held_conn.get(), get("/hold"));
    UniqueFd c = connect_to(sock);
    std::string carry;
    send_all(c.get(), get("/x"));
    ASSERT_TRUE(read_reply(c.get(), carry));
    while (requests.load() < 2) std::this_thread::sleep_for(1ms);
    server->stop();
    server->stop();  // idempotent
    EXPECT_TRUE(reads_eof(idle.get()));
    EXPECT_TRUE(std::filesystem::exists(sock));
  }
  EXPECT_FALSE(std::filesystem::exists(sock));
  {
    std::lock_guard lock(held_mu);
    held(HttpResponse{});  // after the server is gone: dropped
    held = nullptr;
  }
  responders.join();
  EXPECT_EQ(test::count_open_fds(), fds_before);
}

TEST_F(HttpServerTest, StopFromAnotherThreadWithoutStart) {
  ApiServer never_started(sock, echo());
  std::thread([&] { never_started.stop(); }).join();
  auto other = std::make_unique<ApiServer>(dir.path() + "/b.sock", echo());
  other->start();
  std::thread([&] { other->stop(); }).join();
  other.reset();
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/b.sock"));
}

}  // namespace
}  // namespace kiln::api
