// What `kiln sandbox ls/exec/kill/rm` stand on: signal names, the sandbox registry (names,
// records, liveness) and a running sandbox's control socket.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "base/error.h"
#include "base/signals.h"
#include "base/unique_fd.h"
#include "sandbox/control.h"
#include "sandbox/registry.h"

namespace kiln::sandbox {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string t = (fs::temp_directory_path() / "kiln-sbx-XXXXXX").string();
    if (!mkdtemp(t.data())) throw std::runtime_error("mkdtemp");
    path_ = t;
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(Signals, NamesAndNumbers) {
  EXPECT_EQ(parse_signal("KILL", "SIGNAL"), 9);
  EXPECT_EQ(parse_signal("sigterm", "SIGNAL"), 15);
  EXPECT_EQ(parse_signal("SIGUSR1", "SIGNAL"), 10);
  EXPECT_EQ(parse_signal("9", "SIGNAL"), 9);
  EXPECT_EQ(parse_signal("64", "SIGNAL"), 64);
  EXPECT_EQ(signal_name(15), "SIGTERM");
  EXPECT_EQ(signal_name(40), "SIG40");
  for (const char* bad : {"", "0", "65", "-1", "SIG", "TERMINATE", "99999999999999", "1x"}) {
    try {
      parse_signal(bad, "SIGNAL");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("SIGNAL"), std::string::npos) << e.what();
    }
  }
}

TEST(Registry, NamesFollowDockersRules) {
  EXPECT_NO_THROW(check_name("web-1.a_b"));
  EXPECT_NO_THROW(check_name(std::string(64, 'a')));
  for (std::string bad : {std::string(), std::string(65, 'a'), std::string("-x"),
                          std::string("a/b"), std::string(".."), std::string("a b")})
    EXPECT_THROW(check_name(bad), UsageError) << bad;
  std::string r = random_name();
  EXPECT_EQ(r.size(), 12u);
  EXPECT_NO_THROW(check_name(r));
  EXPECT_NE(r, random_name());
}

TEST(Registry, RecordsRoundTripAndNamesAreReserved) {
  TempDir t;
  Registry reg(t.path() / "state");
  fs::path d = reg.create("box");
  EXPECT_EQ(fs::status(d).permissions() & fs::perms::all, fs::perms::owner_all);
  EXPECT_THROW(reg.create("box"), UsageError);
  EXPECT_THROW(reg.read("box"), UsageError);  // reserved, no record yet

  Record r;
  r.name = "box";
  r.pid = getpid();
  r.pid_start = process_start_time(getpid());
  r.root = "/img";
  r.command = {"sh", "-c", "echo \"hi\""};
  r.created = "2026-12-03T10:00:00Z";
  r.status = Status::kRunning;
  r.env = {"A=1"};
  r.cwd = "/srv";
  r.uid = 1000;
  r.gid = 100;
  r.groups = {10, 20};
  r.user_root = "/cache/root";
  reg.write(r);
  Record got = reg.read("box");
  EXPECT_EQ(got.command, r.command);
  EXPECT_EQ(got.env, r.env);
  EXPECT_EQ(got.cwd, "/srv");
  EXPECT_EQ(got.groups, r.groups);
  EXPECT_EQ(got.user_root, r.user_root);
  EXPECT_TRUE(Registry::alive(got));
  EXPECT_STREQ(status_name(got), "running");

  r.status = Status::kExited;
  r.exit_status = 143;
  reg.write(r);
  EXPECT_EQ(reg.read("box").exit_status, 143);
  EXPECT_STREQ(status_name(reg.read("box")), "exited");
  EXPECT_FALSE(fs::exists(d / "sandbox.json.tmp"));

  reg.remove("box");
  EXPECT_FALSE(fs::exists(d));
  EXPECT_NO_THROW(reg.create("box"));  // the name is free again
}

TEST(Registry, DeadAndDamagedRecords) {
  TempDir t;
  Registry reg(t.path());
  Record r;
  r.name = "gone";
  r.pid = getpid();
  r.pid_start = process_start_time(getpid()) + 1;  // the pid was reused by another process
  r.status = Status::kRunning;
  reg.create("gone");
  reg.write(r);
  EXPECT_FALSE(Registry::alive(reg.read("gone")));
  EXPECT_STREQ(status_name(reg.read("gone")), "dead");

  reg.create("broken");
  {
    FILE* f = fopen((reg.dir("broken") / "sandbox.json").c_str(), "w");
    ASSERT_TRUE(f);
    fputs("{\"name\": \"broken\", \"pid\": \"x\"}", f);
    fclose(f);
  }
  try {
    reg.read("broken");
    ADD_FAILURE() << "read a damaged record";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("damaged"), std::string::npos) << e.what();
  }
  auto all = reg.list();  // the damaged one is skipped, not fatal
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].name, "gone");
  EXPECT_THROW(reg.read("../etc"), UsageError);
}

int connect_to(const std::string& path) {
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  EXPECT_EQ(connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return s;
}

void serve_when_ready(ControlServer& server, const std::function<std::string(int)>& fn,
                      const std::function<std::string()>& start = {}) {
  pollfd p{server.fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 10000), 1);
  server.serve_one(ControlHandlers{fn, start});
}

TEST(Control, SignalRequestRoundTrip) {
  TempDir t;
  std::string path = (t.path() / "control").string();
  ControlServer server(path);
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);

  std::atomic<int> got{0};
  std::thread client([&] { request_signal(path, 15); });
  serve_when_ready(server, [&](int sig) {
    got = sig;
    return std::string();
  });
  client.join();
  EXPECT_EQ(got, 15);

  std::string client_error;
  std::thread refused([&] {
    try {
      request_signal(path, 9);
    } catch (const Error& e) {
      client_error = e.what();
    }
  });
  serve_when_ready(server, [](int) { return std::string("the workload has exited"); });
  refused.join();
  EXPECT_EQ(client_error, "the workload has exited");
}

TEST(Control, StartRequestsReachOnlyAGate) {
  TempDir t;
  std::string path = (t.path() / "control").string();
  ControlServer server(path);
  int started = 0;
  ControlHandlers gate{[](int) { return std::string(); },
                       [&] {
                         ++started;
                         return std::string();
                       }};
  std::thread ok([&] { request_start(path); });
  serve_when_ready(server, gate.on_signal, gate.on_start);
  ok.join();
  EXPECT_EQ(started, 1);

  std::string refused;
  std::thread no_gate([&] {
    try {
      request_start(path);
    } catch (const Error& e) {
      refused = e.what();
    }
  });
  serve_when_ready(server, gate.on_signal, {});
  no_gate.join();
  EXPECT_NE(refused.find("no start gate"), std::string::npos) << refused;
}

TEST(Control, GarbageGetsAnErrorAndNoSignal) {
  TempDir t;
  std::string path = (t.path() / "control").string();
  ControlServer server(path);
  bool called = false;
  auto fn = [&](int) {
    called = true;
    return std::string();
  };
  for (const char* bad :
       {"hello\n", "{\"signal\": 0}\n", "{\"start\": false}\n", "{\"signal\": 65}\n",
        "{\"signal\": -9}\n", "{\"signal\": 9, \"x\": 1}\n", "[9]\n"}) {
    UniqueFd c(connect_to(path));
    ASSERT_EQ(send(c.get(), bad, strlen(bad), 0), static_cast<ssize_t>(strlen(bad)));
    serve_when_ready(server, fn);
    char buf[256] = {};
    ASSERT_GT(recv(c.get(), buf, sizeof buf - 1, 0), 0);
    EXPECT_NE(std::string(buf).find("error"), std::string::npos) << bad << ": " << buf;
  }
  {  // a client that says nothing is answered and closed after a second, not waited on
    UniqueFd c(connect_to(path));
    serve_when_ready(server, fn);
    char buf[256] = {};
    ASSERT_GT(recv(c.get(), buf, sizeof buf - 1, 0), 0);
    EXPECT_NE(std::string(buf).find("within"), std::string::npos) << buf;
  }
  {  // an endless line is cut off at the limit
    UniqueFd c(connect_to(path));
    std::string big(4096, 'x');
    (void)!send(c.get(), big.data(), big.size(), MSG_NOSIGNAL);
    serve_when_ready(server, fn);
  }
  EXPECT_FALSE(called);
  EXPECT_THROW(request_signal((t.path() / "nothing").string(), 9), Error);
}

}  // namespace
}  // namespace kiln::sandbox
