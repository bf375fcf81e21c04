// A hostile guest agent for tests/linux/agent-e2e.sh: booted as PID 1 in place of kiln-agent
// (build/tests/hostile-agent.cpio), it listens where kiln-agent does and breaks the
// protocol in the way the kernel command line names, then does nothing more: Kiln must report
// it and stop the sandbox, not hang or crash. The mode is the name of the first volume's guest
// directory (`kiln sandbox run -v DIR:/hostile/MODE ...` puts kiln.volume=kiln-v0:/hostile/MODE
// on the command line): a test fixture's channel, not a Kiln interface.
//
// Modes: garbage (a frame whose payload is not CBOR), huge (a length header of 2 GiB), close
// (accepts and closes), silent (accepts and never answers), bad-exit (a good hello, then an
// exit for a process the host never started), stdin-data (data on the stdin stream).
#include <linux/vm_sockets.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "agent/protocol/channel.h"
#include "agent/protocol/messages.h"

namespace {

using namespace kiln::agent;

std::string mode_from_cmdline() {
  mount("proc", "/proc", "proc", 0, nullptr);
  std::ifstream f("/proc/cmdline");
  std::string word;
  const std::string key = "kiln.volume=kiln-v0:/hostile/";
  while (f >> word)
    if (word.rfind(key, 0) == 0) return word.substr(key.size());
  return "";
}

void send_raw(int fd, const std::vector<uint8_t>& bytes) {
  (void)!write(fd, bytes.data(), bytes.size());
}

// Reads the host's messages until it sends a start; answers the first hello and the start as
// kiln-agent would. Returns the start's id, or 0 if the host went away.
uint32_t serve_until_start(Channel& ch) {
  for (;;) {
    pollfd p{ch.fd(), POLLIN, 0};
    if (poll(&p, 1, -1) < 0) return 0;
    std::vector<Message> in;
    if (!ch.read(&in)) return 0;
    for (auto& m : in) {
      if (std::holds_alternative<Hello>(m)) ch.send(Hello{kProtocolVersion, "hostile", 1, 1});
      if (auto* s = std::get_if<Start>(&m)) {
        ch.send(Started{s->id, 2});
        ch.flush(1000);
        return s->id;
      }
    }
    ch.flush(1000);
  }
}

void misbehave(const std::string& mode, kiln::UniqueFd conn) {
  int fd = conn.get();
  if (mode == "garbage") {
    send_raw(fd, {0, 0, 0, 8, 0xff, 0xfe, 0xfd, 0xfc, 0x00, 0x01, 0x02, 0x03});
  } else if (mode == "huge") {
    send_raw(fd, {0x80, 0, 0, 0});
  } else if (mode == "close") {
    return;  // conn closes here
  } else if (mode == "bad-exit" || mode == "stdin-data") {
    Channel ch(std::move(conn));
    uint32_t id = serve_until_start(ch);
    if (mode == "bad-exit")
      ch.send(Exit{id + 7, 0, 0});
    else
      ch.send(Data{id, Stream::Stdin, {'x'}});
    ch.flush(1000);
    for (;;) pause();  // the connection stays open: the host must end it
  }
  // silent, an unknown mode, and after the bytes above: keep the connection, say nothing.
  for (;;) pause();
}

}  // namespace

int main() {
  std::string mode = mode_from_cmdline();
  std::fprintf(stderr, "hostile-agent: mode '%s'\n", mode.c_str());
  kiln::UniqueFd s(socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = kDefaultPort;
  if (!s || bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 ||
      listen(s.get(), 4) < 0)
    std::perror("hostile-agent: vsock");
  kiln::UniqueFd conn(accept4(s.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (conn) misbehave(mode, std::move(conn));
  for (;;) pause();  // PID 1 never exits
}
