// Docker's rules for the image's defaults and the user's overrides (image/run_spec.h), and users
// resolved against the image's /etc/passwd and /etc/group (image/user_db.h).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "base/error.h"
#include "image/run_spec.h"
#include "image/temp_dir.h"
#include "tests/support/image_builder.h"

namespace kiln::image {
namespace {

class RunSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    work_ = TempDir("/tmp", "kiln-runspec-test-");
    root_ = work_.path() + "/rootfs";
    std::filesystem::create_directories(root_ + "/etc");
    test::write_file(root_ + "/etc/passwd",
                     "root:x:0:0:root:/root:/bin/sh\n"
                     "# a comment\n"
                     "broken line\n"
                     "app:x:1000:1001:App:/home/app:/bin/sh\n"
                     "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
    test::write_file(root_ + "/etc/group",
                     "root:x:0:\napp:x:1001:\nwheel:x:10:root,app\naudio:x:29:app\n"
                     "nogroup:x:65534:\n");
    image_.entrypoint = std::vector<std::string>{"/entry"};
    image_.cmd = std::vector<std::string>{"default", "args"};
    image_.env = {"PATH=/bin", "A=image", "B=image"};
    image_.working_dir = "/srv";
  }
  static RunOverrides with_user(const std::string& u) {
    RunOverrides o;
    o.user = u;
    return o;
  }
  RunSpec spec(const RunOverrides& o) { return make_run_spec(image_, o, root_); }
  std::string error_of(const RunOverrides& o) {
    try {
      spec(o);
    } catch (const UsageError& e) {
      return e.what();
    }
    return "";
  }

  TempDir work_;
  std::string root_;
  ImageConfig image_;
};

TEST_F(RunSpecTest, ImageDefaults) {
  const RunSpec s = spec({});
  EXPECT_EQ(s.argv, (std::vector<std::string>{"/entry", "default", "args"}));
  EXPECT_EQ(s.env, (std::vector<std::string>{"PATH=/bin", "A=image", "B=image", "HOME=/root"}));
  EXPECT_EQ(s.cwd, "/srv");
  EXPECT_EQ(s.user.uid, 0u);
  EXPECT_EQ(s.user.gid, 0u);
  EXPECT_EQ(s.user.groups, std::vector<uint32_t>{10});
}

TEST_F(RunSpecTest, CommandReplacesCmdKeepsEntrypoint) {
  RunOverrides o;
  o.command = {"mine"};
  EXPECT_EQ(spec(o).argv, (std::vector<std::string>{"/entry", "mine"}));
}

TEST_F(RunSpecTest, EntrypointOverrideDropsImageCmd) {
  RunOverrides o;
  o.entrypoint = std::vector<std::string>{"/other"};
  EXPECT_EQ(spec(o).argv, std::vector<std::string>{"/other"});
  o.entrypoint = std::vector<std::string>{};
  o.command = {"/bin/true"};
  EXPECT_EQ(spec(o).argv, std::vector<std::string>{"/bin/true"});
}

TEST_F(RunSpecTest, NoCommandAtAll) {
  image_.entrypoint.reset();
  image_.cmd.reset();
  EXPECT_NE(error_of({}).find("no command"), std::string::npos);
}

TEST_F(RunSpecTest, EnvOverridesWinAndDefaultsAdded) {
  RunOverrides o;
  o.env = {"B=mine", "C=new", "HOME=/h"};
  EXPECT_EQ(spec(o).env,
            (std::vector<std::string>{"PATH=/bin", "A=image", "B=mine", "C=new", "HOME=/h"}));
  image_.env.clear();
  const RunSpec s = spec({});
  EXPECT_EQ(s.env.front(), kDefaultPath);
  o.env = {"NOVALUE"};
  EXPECT_NE(error_of(o).find("-e 'NOVALUE'"), std::string::npos);
}

TEST_F(RunSpecTest, WorkingDir) {
  RunOverrides o;
  o.working_dir = "/tmp";
  EXPECT_EQ(spec(o).cwd, "/tmp");
  o.working_dir = "rel";
  EXPECT_NE(error_of(o).find("-w 'rel'"), std::string::npos);
  image_.working_dir = "";
  EXPECT_EQ(spec({}).cwd, "/");
}

TEST_F(RunSpecTest, Users) {
  auto user = [&](const std::string& u) { return resolve_user(root_, u, "-u"); };
  ResolvedUser r = user("app");
  EXPECT_EQ(r.uid, 1000u);
  EXPECT_EQ(r.gid, 1001u);
  EXPECT_EQ(r.home, "/home/app");
  EXPECT_EQ(r.groups, (std::vector<uint32_t>{10, 29}));
  r = user("1000:audio");
  EXPECT_EQ(r.uid, 1000u);
  EXPECT_EQ(r.gid, 29u);
  r = user("4242");
  EXPECT_EQ(r.uid, 4242u);
  EXPECT_EQ(r.gid, 0u) << "a uid without passwd entry gets gid 0, as with runc";
  EXPECT_EQ(r.home, "/");
  r = user("4242:77");
  EXPECT_EQ(r.gid, 77u);
  r = user("nobody:nogroup");
  EXPECT_EQ(r.uid, 65534u);
  EXPECT_EQ(r.gid, 65534u);
  EXPECT_NE(error_of(with_user("ghost")).find("no user 'ghost'"), std::string::npos);
  EXPECT_NE(error_of(with_user("app:ghosts")).find("no group 'ghosts'"), std::string::npos);
  EXPECT_NE(error_of(with_user("app:")).find("USER[:GROUP]"), std::string::npos);
  image_.user = "ghost";
  EXPECT_NE(error_of({}).find("image config User"), std::string::npos);
  RunOverrides o;
  o.user = "app";
  EXPECT_EQ(spec(o).env.back(), "HOME=/home/app");
}

TEST_F(RunSpecTest, PasswdSymlinkStaysInRoot) {
  // /etc/passwd -> /hostpasswd resolves inside the image root, not to the host's /hostpasswd
  // (nor, through ../.., to the host's /etc/passwd).
  std::filesystem::remove(root_ + "/etc/passwd");
  std::filesystem::create_symlink("/inimage", root_ + "/etc/passwd");
  test::write_file(root_ + "/inimage", "svc:x:77:78::/svc:/bin/sh\n");
  EXPECT_EQ(resolve_user(root_, "svc", "-u").uid, 77u);
  std::filesystem::remove(root_ + "/etc/passwd");
  std::filesystem::create_symlink("../../../../../../../../etc/hostname", root_ + "/etc/passwd");
  // The host's /etc/hostname exists, the image's does not: the link leads nowhere.
  EXPECT_NE(error_of(with_user("root")).find("no user 'root'"), std::string::npos);
  EXPECT_EQ(resolve_user(root_, "0", "-u").home, "/");
  // A link to itself (through ".." above the root) is a loop, reported as such.
  std::filesystem::remove(root_ + "/etc/passwd");
  std::filesystem::create_symlink("../../../../../../../../etc/passwd", root_ + "/etc/passwd");
  EXPECT_NE(error_of(with_user("root")).find("symbolic links"), std::string::npos);
}

}  // namespace
}  // namespace kiln::image
