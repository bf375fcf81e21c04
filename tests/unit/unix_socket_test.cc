// base/unix_socket.h: addresses within sun_path, and connections.
#include "base/unix_socket.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
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

}  // namespace
}  // namespace kiln
