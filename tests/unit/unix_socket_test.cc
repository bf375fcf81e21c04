// base/unix_socket.h: addresses within sun_path, and connections.
#include "base/unix_socket.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace kiln {
namespace {

TEST(UnixSocket, AddressesFitSunPath) {
  EXPECT_FALSE(unix_address(""));
  EXPECT_FALSE(unix_address(std::string(kMaxUnixPath + 1, 'a')));
  EXPECT_FALSE(unix_address(std::string("a\0b", 3)));
  auto a = unix_address(std::string(kMaxUnixPath, 'a'));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->sun_family, AF_UNIX);
  EXPECT_EQ(a->sun_path[kMaxUnixPath], '\0');
}

TEST(UnixSocket, ConnectsOrSaysWhy) {
  std::string path = "/tmp/kiln-unix-test-" + std::to_string(getpid());
  auto a = unix_address(path);
  ASSERT_TRUE(a);
  unlink(path.c_str());
  errno = 0;
  EXPECT_FALSE(connect_unix(*a));
  EXPECT_EQ(errno, ENOENT);
  UniqueFd l(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(l);
  ASSERT_EQ(bind(l.get(), reinterpret_cast<const sockaddr*>(&*a), sizeof *a), 0);
  ASSERT_EQ(listen(l.get(), 1), 0);
  UniqueFd c = connect_unix(*a);
  EXPECT_TRUE(c);
  unlink(path.c_str());
}

TEST(UnixSocket, SendsBytesWithADescriptor) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd a(pair[0]), b(pair[1]);
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  UniqueFd r(pipe_fds[0]), w(pipe_fds[1]);
  ASSERT_TRUE(send_with_fd(a.get(), "hello", w.get()));
  char buf[16] = {};
  UniqueFd received;
  ASSERT_EQ(recv_with_fd(b.get(), buf, received), 5);
  EXPECT_EQ(std::string(buf, 5), "hello");
  ASSERT_TRUE(received);
  // The received descriptor is the pipe's write end: what goes in comes out of `r`.
  ASSERT_EQ(write(received.get(), "x", 1), 1);
  char x = 0;
  ASSERT_EQ(read(r.get(), &x, 1), 1);
  EXPECT_EQ(x, 'x');
  b.reset();
  errno = 0;
  EXPECT_FALSE(send_with_fd(a.get(), "gone", w.get()));
  EXPECT_EQ(errno, EPIPE);
}

}  // namespace
}  // namespace kiln
