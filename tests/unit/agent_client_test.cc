// The host's agent client against the agent's process-running core over a socketpair: real
// `sh` children on the host, stdio byte-exact and apart, exit statuses, stdin, terminals,
// several processes on one connection, flow control, and hostile peers on either side.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "agent/core/agent.h"
#include "base/error.h"
#include "sandbox/agent_client.h"

namespace kiln::sandbox {
namespace {

using namespace std::chrono_literals;
using agent::Agent;
using agent::Channel;
using agent::Message;

std::pair<UniqueFd, UniqueFd> socket_pair() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) throw_errno("socketpair");
  return {UniqueFd(sv[0]), UniqueFd(sv[1])};
}

agent::Hello agent_hello() {
  return agent::Hello{agent::kProtocolVersion, "test-agent", 1, 2};
}

// The agent core served from its own thread, as in the guest (one poll loop).
class AgentThread {
 public:
  explicit AgentThread(UniqueFd fd, std::function<void(const agent::Configure&)> configurer = {})
      : agent_(agent_hello()) {
    signal(SIGPIPE, SIG_IGN);
    if (configurer) agent_.set_configurer(std::move(configurer));
    agent_.add_connection(std::move(fd));
    thread_ = std::thread([this] {
      while (!stop_) agent_.poll_once(10);
    });
  }
  ~AgentThread() {
    stop_ = true;
    thread_.join();
  }

 private:
  Agent agent_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A memfd the workload's output lands in.
class Capture {
 public:
  Capture() : fd_(memfd_create("agent-test", MFD_CLOEXEC)) {}
  int fd() const { return fd_.get(); }
  std::string text() const {
    std::string s(static_cast<size_t>(lseek(fd_.get(), 0, SEEK_END)), '\0');
    if (pread(fd_.get(), s.data(), s.size(), 0) != static_cast<ssize_t>(s.size())) return "?";
    return s;
  }

 private:
  UniqueFd fd_;
};

struct Session {
  explicit Session(std::function<void(const agent::Configure&)> configurer = {}) {
    auto [a, b] = socket_pair();
    agent = std::make_unique<AgentThread>(std::move(a), std::move(configurer));
    client = std::make_unique<AgentClient>(std::move(b));
    hello = client->handshake(5s);
  }
  int run(std::vector<std::string> argv, Stdio io, agent::Start s = {}) {
    s.argv = std::move(argv);
    return client->run(s, io);
  }
  std::unique_ptr<AgentThread> agent;
  std::unique_ptr<AgentClient> client;
  agent::Hello hello;
};

TEST(AgentClient, HandshakeCarriesTheAgentsTimings) {
  Session s;
  EXPECT_EQ(s.hello.software, "test-agent");
  EXPECT_EQ(s.hello.boot_ns, 1u);
  EXPECT_EQ(s.hello.startup_ns, 2u);
}

TEST(AgentClient, StdoutExactAndExitZero) {
  Session s;
  Capture out, err;
  EXPECT_EQ(s.run({"echo", "hi"}, {-1, out.fd(), err.fd()}), 0);
  EXPECT_EQ(out.text(), "hi\n");
  EXPECT_EQ(err.text(), "");
}

TEST(AgentClient, ExitCodeAndSignalStatus) {
  Session s;
  Capture out, err;
  EXPECT_EQ(s.run({"sh", "-c", "exit 3"}, {-1, out.fd(), err.fd()}), 3);
  EXPECT_EQ(s.run({"sh", "-c", "kill -9 $$"}, {-1, out.fd(), err.fd()}), 137);
  agent::Start st;
  st.argv = {"sh", "-c", "kill -TERM $$"};
  s.client->start(st, {-1, out.fd(), err.fd()});
  agent::Exit e = s.client->wait(st.id);
  EXPECT_EQ(e.signal, SIGTERM);
  EXPECT_EQ(e.status(), 143);
}

TEST(AgentClient, StderrKeptApart) {
  Session s;
  Capture out, err;
  EXPECT_EQ(
      s.run({"sh", "-c", "echo to-out; echo to-err >&2; echo more-out"}, {-1, out.fd(), err.fd()}),
      0);
  EXPECT_EQ(out.text(), "to-out\nmore-out\n");
  EXPECT_EQ(err.text(), "to-err\n");
}

TEST(AgentClient, EnvCwdAndUmaskApplied) {
  Session s;
  Capture out, err;
  agent::Start st;
  st.env = {"FOO=bar baz"};
  st.cwd = "/tmp";
  st.umask = 027;
  EXPECT_EQ(s.run({"sh", "-c", "echo \"$FOO\"; pwd; umask"}, {-1, out.fd(), err.fd()}, st), 0);
  EXPECT_EQ(out.text(), "bar baz\n/tmp\n0027\n");
}

TEST(AgentClient, CredentialsLimitsAndNoNewPrivileges) {
  Session s;
  Capture out, err;
  agent::Start st;
  st.rlimits = {{"nofile", 64, 64}};
  st.no_new_privileges = true;
  EXPECT_EQ(s.run({"sh", "-c", "ulimit -n; grep NoNewPrivs /proc/self/status"},
                  {-1, out.fd(), err.fd()}, st),
            0);
  EXPECT_EQ(out.text(), "64\nNoNewPrivs:\t1\n");
  agent::Start bad;
  bad.rlimits = {{"bogus", 1, 1}};
  EXPECT_THROW(s.run({"true"}, {-1, out.fd(), err.fd()}, bad), StartError);
  if (geteuid() != 0) GTEST_SKIP() << "uid, gid and groups need root";
  Capture ids;
  agent::Start user;
  user.uid = 1234;
  user.gid = 2345;
  user.groups = {5, 6};
  EXPECT_EQ(s.run({"sh", "-c", "echo $(id -u) $(id -g) $(id -G)"}, {-1, ids.fd(), err.fd()}, user),
            0);
  EXPECT_EQ(ids.text(), "1234 2345 2345 5 6\n");
}

// A child left behind holding stdout open does not keep the exit from being reported.
TEST(AgentClient, ExitReportedWhileAnOrphanHoldsStdout) {
  Session s;
  Capture out, err;
  EXPECT_EQ(s.run({"sh", "-c", "sleep 30 & echo $!"}, {-1, out.fd(), err.fd()}), 0);
  std::string pid = out.text();
  ASSERT_FALSE(pid.empty());
  EXPECT_EQ(pid.back(), '\n');
  EXPECT_EQ(kill(std::stoi(pid), SIGKILL), 0);  // it was still running
}

TEST(AgentClient, StartFailureNamesTheCause) {
  Session s;
  Capture out, err;
  try {
    s.run({"/nonexistent/kiln-no-such-program"}, {-1, out.fd(), err.fd()});
    FAIL() << "started";
  } catch (const StartError& e) {
    EXPECT_NE(std::string(e.what()).find("exec '/nonexistent/kiln-no-such-program': No such file"),
              std::string::npos)
        << e.what();
  }
  agent::Start st;
  st.cwd = "/nonexistent-dir";
  EXPECT_THROW(s.run({"true"}, {-1, out.fd(), err.fd()}, st), StartError);
  // The connection still works.
  EXPECT_EQ(s.run({"true"}, {-1, out.fd(), err.fd()}), 0);
}

// 4 MiB of random bytes in through stdin and back out through stdout: many windows' worth,
// byte-exact.
TEST(AgentClient, StdinToStdoutByteExactUnderFlowControl) {
  Session s;
  std::vector<uint8_t> data(4 << 20);
  std::mt19937 rng(7);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  std::thread writer([&] {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = write(wr.get(), data.data() + off, data.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    wr.reset();
  });
  Capture out, err;
  EXPECT_EQ(s.run({"cat"}, {rd.get(), out.fd(), err.fd()}), 0);
  writer.join();
  std::string got = out.text();
  ASSERT_EQ(got.size(), data.size());
  EXPECT_TRUE(std::equal(data.begin(), data.end(), got.begin(),
                         [](uint8_t a, char b) { return a == static_cast<uint8_t>(b); }));
}

TEST(AgentClient, TerminalWithWindowSize) {
  Session s;
  Capture out, err;
  agent::Start st;
  st.terminal = true;
  st.rows = 30;
  st.cols = 100;
  EXPECT_EQ(s.run({"sh", "-c", "test -t 0 && test -t 1 && test -t 2 && echo tty; stty size"},
                  {-1, out.fd(), err.fd()}, st),
            0);
  EXPECT_EQ(out.text(), "tty\r\n30 100\r\n");
}

TEST(AgentClient, SeveralProcessesOnOneConnection) {
  Session s;
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  Capture out_a, out_b, err;
  agent::Start a;
  a.argv = {"sh", "-c", "read line; echo got-$line"};
  s.client->start(a, {rd.get(), out_a.fd(), err.fd()});
  // A waits for its stdin; B runs to the end meanwhile.
  EXPECT_EQ(s.run({"echo", "b"}, {-1, out_b.fd(), err.fd()}), 0);
  EXPECT_EQ(out_b.text(), "b\n");
  ASSERT_EQ(write(wr.get(), "x\n", 2), 2);
  wr.reset();
  EXPECT_EQ(s.client->wait(a.id).status(), 0);
  EXPECT_EQ(out_a.text(), "got-x\n");
}

// A host speaking the protocol by hand, driving the agent from the test thread.
struct RawHost {
  RawHost() : agent(agent_hello()) {
    signal(SIGPIPE, SIG_IGN);
    auto [a, b] = socket_pair();
    agent.add_connection(std::move(a));
    ch = std::make_unique<Channel>(std::move(b));
  }
  // Runs the agent for `ms` milliseconds, collecting what it sent; false once it closed.
  bool pump(int ms) {
    bool open = true;
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end) {
      agent.poll_once(5);
      ch->write();
      open = ch->read(&inbox) && open;
    }
    return open;
  }
  // Pumps until the agent closed the connection (true) or 5 s passed (false).
  bool until_closed() {
    for (int i = 0; i < 200; ++i)
      if (!pump(25)) return true;
    return false;
  }
  Agent agent;
  std::unique_ptr<Channel> ch;
  std::vector<Message> inbox;
};

TEST(AgentCore, OutputIsHeldBackUntilTheHostGrantsCredit) {
  RawHost h;
  h.ch->send(agent::Hello{agent::kProtocolVersion, "raw", 0, 0});
  agent::Start st;
  st.id = 1;
  st.argv = {"head", "-c", "2000000", "/dev/zero"};
  h.ch->send(st);
  size_t got = 0;
  bool exited = false;
  auto collect = [&] {
    for (auto& m : h.inbox) {
      if (auto* d = std::get_if<agent::Data>(&m)) got += d->bytes.size();
      if (auto* e = std::get_if<agent::Exit>(&m)) exited = e->status() == 0;
    }
    h.inbox.clear();
  };
  // Until the window is used up (however slow this machine is), then a while longer.
  for (int i = 0; i < 200 && got < agent::kInitialWindow; ++i) {
    h.pump(25);
    collect();
  }
  h.pump(300);
  collect();
  EXPECT_EQ(got, agent::kInitialWindow);  // no more than the window, though more was written
  EXPECT_FALSE(exited);
  EXPECT_EQ(h.agent.running(), 1u);
  h.ch->send(agent::Credit{1, agent::Stream::Stdout, 2000000});
  for (int i = 0; i < 200 && !exited; ++i) {
    h.pump(25);
    collect();
  }
  EXPECT_TRUE(exited);
  EXPECT_EQ(got, 2000000u);
}

// The messages of `inbox` of type T.
template <typename T>
std::vector<T> of_type(const std::vector<Message>& inbox) {
  std::vector<T> out;
  for (const auto& m : inbox)
    if (auto* v = std::get_if<T>(&m)) out.push_back(*v);
  return out;
}

TEST(AgentCore, WarmAgentIsConfiguredOnceBeforeAnyStart) {
  RawHost h;
  std::vector<agent::Configure> got;
  h.agent.set_configurer([&](const agent::Configure& c) { got.push_back(c); });
  h.ch->send(agent::Hello{agent::kProtocolVersion, "raw", 0, 0});
  agent::Start early;
  early.id = 1;
  early.argv = {"true"};
  h.ch->send(early);
  h.pump(100);
  auto errors = of_type<agent::Error>(h.inbox);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].id, 1u);
  EXPECT_NE(errors[0].message.find("not set up yet"), std::string::npos) << errors[0].message;
  EXPECT_EQ(h.agent.started_total(), 0u);
  h.ch->send(agent::Configure{"kiln.root=r kiln.hostname=w", 42, {1, 2, 3}});
  agent::Start st;
  st.id = 2;
  st.argv = {"sh", "-c", "exit 4"};
  h.ch->send(st);
  for (int i = 0; i < 200 && of_type<agent::Exit>(h.inbox).empty(); ++i) h.pump(25);
  EXPECT_EQ(of_type<agent::Configured>(h.inbox).size(), 1u);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].params, "kiln.root=r kiln.hostname=w");
  EXPECT_EQ(got[0].realtime_ns, 42u);
  EXPECT_EQ(got[0].entropy, (std::vector<uint8_t>{1, 2, 3}));
  auto exits = of_type<agent::Exit>(h.inbox);
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].status(), 4);
  h.ch->send(agent::Configure{"kiln.root=again", 0, {}});
  EXPECT_TRUE(h.until_closed());
  auto* e = std::get_if<agent::Error>(&h.inbox.back());
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->id, 0u);
  EXPECT_NE(e->message.find("set up already"), std::string::npos) << e->message;
  EXPECT_EQ(got.size(), 1u);
}

TEST(AgentCore, ConfigureToAColdAgentIsAProtocolError) {
  RawHost h;
  h.ch->send(agent::Hello{agent::kProtocolVersion, "raw", 0, 0});
  h.ch->send(agent::Configure{"kiln.root=r", 0, {}});
  EXPECT_TRUE(h.until_closed());
  auto* e = std::get_if<agent::Error>(&h.inbox.back());
  ASSERT_NE(e, nullptr);
  EXPECT_NE(e->message.find("did not boot warm"), std::string::npos) << e->message;
}

// The host's side: a set-up the agent could not do is Kiln's error with the agent's reason.
TEST(AgentClient, ConfigureReportsTheAgentsSetUpAndItsFailure) {
  {
    Session s([](const agent::Configure& c) {
      if (c.params != "kiln.root=ok") throw std::runtime_error("unexpected " + c.params);
    });
    s.client->configure(agent::Configure{"kiln.root=ok", 0, {}}, 5s);
    Capture out, err;
    EXPECT_EQ(s.run({"echo", "after"}, {-1, out.fd(), err.fd()}), 0);
    EXPECT_EQ(out.text(), "after\n");
  }
  Session s([](const agent::Configure&) {
    throw std::runtime_error("mount virtiofs on /newroot: No such device");
  });
  try {
    s.client->configure(agent::Configure{"kiln.root=x", 0, {}}, 5s);
    FAIL() << "configure succeeded";
  } catch (const kiln::Error& e) {
    EXPECT_NE(std::string(e.what()).find("could not set up the workload: configure: mount "
                                         "virtiofs on /newroot: No such device"),
              std::string::npos)
        << e.what();
  }
}

TEST(AgentCore, MalformedHostGetsAnErrorAndIsClosed) {
  RawHost h;
  h.ch->send(agent::Hello{agent::kProtocolVersion, "raw", 0, 0});
  h.pump(50);
  uint8_t garbage[] = {0, 0, 0, 3, 0xff, 0xff, 0xff};
  ASSERT_EQ(write(h.ch->fd(), garbage, sizeof garbage), static_cast<ssize_t>(sizeof garbage));
  EXPECT_TRUE(h.until_closed());
  ASSERT_GE(h.inbox.size(), 2u);
  auto* e = std::get_if<agent::Error>(&h.inbox.back());
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->id, 0u);
  EXPECT_NE(e->message.find("not valid CBOR"), std::string::npos) << e->message;
  EXPECT_EQ(h.agent.connections(), 0u);
}

TEST(AgentCore, WrongVersionAndStdinBeyondCreditAreRefused) {
  {
    RawHost h;
    h.ch->send(agent::Hello{99, "raw", 0, 0});
    EXPECT_TRUE(h.until_closed());
    auto* e = std::get_if<agent::Error>(&h.inbox.back());
    ASSERT_NE(e, nullptr);
    EXPECT_NE(e->message.find("version 99 is not supported"), std::string::npos) << e->message;
  }
  RawHost h;
  h.ch->send(agent::Hello{agent::kProtocolVersion, "raw", 0, 0});
  agent::Start st;
  st.id = 1;
  st.argv = {"sleep", "100"};
  st.stdin = true;
  h.ch->send(st);
  std::vector<uint8_t> chunk(agent::kMaxData, 'x');
  // Twice the window: more than the window plus what the pipe to `sleep` absorbs.
  for (uint32_t sent = 0; sent < 2 * agent::kInitialWindow; sent += agent::kMaxData)
    h.ch->send(agent::Data{1, agent::Stream::Stdin, chunk});
  EXPECT_TRUE(h.until_closed());
  auto* e = std::get_if<agent::Error>(&h.inbox.back());
  ASSERT_NE(e, nullptr);
  EXPECT_NE(e->message.find("beyond the credit granted"), std::string::npos) << e->message;
  // The connection's process is killed and reaped.
  for (int i = 0; i < 500 && h.agent.running(); ++i) h.pump(10);
  EXPECT_EQ(h.agent.running(), 0u);
}

// A hostile agent: the client must report it, not hang or crash. The fake agent writes
// `frames`, and, once the client asked to start a process, `after_start`; then it goes away.
std::string client_error(const std::vector<std::vector<uint8_t>>& frames,
                         const std::vector<std::vector<uint8_t>>& after_start = {}) {
  auto [a, b] = socket_pair();
  // More than a socket buffer holds, so from a thread.
  std::thread agent([&frames, &after_start, fd = std::move(a)] {
    auto put = [&](const std::vector<std::vector<uint8_t>>& fs) {
      for (const auto& f : fs)
        if (send(fd.get(), f.data(), f.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(f.size()))
          return false;
      return true;
    };
    if (!put(frames) || after_start.empty()) return;
    agent::FrameReader r;
    std::vector<uint8_t> p;
    for (bool started = false; !started;) {
      uint8_t buf[4096];
      ssize_t n = read(fd.get(), buf, sizeof buf);
      if (n <= 0) return;
      r.feed({buf, static_cast<size_t>(n)});
      while (r.next(&p))
        started = started || std::holds_alternative<agent::Start>(agent::decode(p));
    }
    put(after_start);
  });
  struct Join {
    std::thread& t;
    ~Join() { t.join(); }
  } join{agent};
  AgentClient c(std::move(b));
  try {
    c.handshake(2s);
    if (!after_start.empty()) {
      agent::Start st;
      st.argv = {"x"};
      Capture out;
      c.run(st, {-1, out.fd(), out.fd()});
    }
  } catch (const agent::ProtocolError& e) {
    return std::string("protocol: ") + e.what();
  } catch (const std::exception& e) {
    return std::string("error: ") + e.what();
  }
  return "no error";
}

TEST(AgentClient, HostileAgentIsReported) {
  using agent::encode;
  EXPECT_EQ(client_error({{0xde, 0xad, 0xbe, 0xef}}),
            "protocol: frame length 3735928559 is above the limit of 1048576 bytes");
  EXPECT_EQ(client_error({{0, 0, 0, 2, 0xff, 0xff}}).rfind("protocol: frame is not valid CBOR", 0),
            0u);
  EXPECT_EQ(client_error({encode(agent::Started{1, 5})}),
            "protocol: expected hello, the agent sent started");
  EXPECT_EQ(client_error({}), "error: the agent closed the connection");
  EXPECT_EQ(
      client_error({encode(agent_hello())}, {encode(agent::Started{1, 5}),
                                             encode(agent::Credit{1, agent::Stream::Stdin, 1})}),
      "protocol: agent credited more stdin than Kiln sent");
  EXPECT_EQ(client_error({encode(agent_hello())},
                         {encode(agent::Started{1, 5}), encode(agent::Started{1, 5})}),
            "protocol: agent sent started twice for one process");
  EXPECT_EQ(
      client_error({encode(agent_hello())}, {encode(agent::Started{1, 5}), encode(agent::Hello{})}),
      "protocol: unexpected 'hello' message from the agent");
  EXPECT_EQ(client_error({encode(agent_hello())}, {encode(agent::Exit{1, 0, 0})}),
            "protocol: agent sent exit for a process it did not start");
  EXPECT_EQ(
      client_error({encode(agent_hello())}, {encode(agent::Data{9, agent::Stream::Stdout, {1}})}),
      "protocol: agent sent data for process 9, which is not running");
  EXPECT_EQ(client_error({encode(agent_hello())}, {encode(agent::Started{1, 5})}),
            "error: the agent closed the connection");
  // A started for a process the client did not start (sent once the client's start is read,
  // so the client is certainly past its handshake and reading).
  EXPECT_EQ(client_error({encode(agent_hello())}, {encode(agent::Started{7, 5})}),
            "protocol: agent sent started for process 7, which is not running");
}

}  // namespace
}  // namespace kiln::sandbox
