// virtio-fs and its FUSE server over a temporary shared directory, driven through the host-side
// virtqueue driver as Linux's virtiofs driver would (tests/support/fuse_driver.h).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "base/error.h"
#include "devices/virtio/fs/fs_device.h"
#include "devices/virtio/fs/fuse_server.h"
#include "tests/support/fuse_driver.h"

namespace kiln::virtio {
namespace {

using testsupport::FuseArgs;
using testsupport::FuseDriver;
using testsupport::FuseReply;
namespace stdfs = std::filesystem;

std::vector<uint8_t> pattern(size_t len, uint8_t seed = 1) {
  std::vector<uint8_t> out(len);
  for (size_t i = 0; i < len; ++i) out[i] = static_cast<uint8_t>(i * 31 + i / 4096 + seed);
  return out;
}

class TempDir {
 public:
  TempDir() {
    const char* t = std::getenv("TMPDIR");
    std::string p = std::string(t && *t ? t : "/tmp") + "/kiln-fs-XXXXXX";
    if (!::mkdtemp(p.data())) throw std::runtime_error("mkdtemp");
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    stdfs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_file(const std::string& path, std::span<const uint8_t> bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}
void write_file(const std::string& path, const std::string& text) {
  write_file(path, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}
std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

class FsTest : public ::testing::Test {
 protected:
  void SetUp() override { start({}); }
  void start(FsOptions o) {
    o.tag = o.tag.empty() ? "share" : o.tag;
    o.path = dir.path();
    fs.reset();
    fs = std::make_unique<FuseDriver>(o);
    const FuseReply r = fs->init();
    ASSERT_EQ(r.error(), 0);
  }
  uint64_t lookup_id(uint64_t parent, const std::string& name) {
    const FuseReply r = fs->lookup(parent, name);
    EXPECT_EQ(r.error(), 0) << name;
    return r.as<fuse_entry_out>().nodeid;
  }
  // CREATE: {nodeid, fh}
  std::pair<uint64_t, uint64_t> create(uint64_t parent, const std::string& name,
                                       uint32_t mode = 0644, uint32_t flags = O_RDWR) {
    const FuseReply r = fs->create(parent, name, flags, mode);
    EXPECT_EQ(r.error(), 0) << name;
    struct Out {
      fuse_entry_out e;
      fuse_open_out o;
    };
    const auto out = r.as<Out>();
    return {out.e.nodeid, out.o.fh};
  }
  uint64_t open_fh(uint64_t node, uint32_t flags, bool dir_handle = false) {
    const FuseReply r = fs->open(node, flags, dir_handle);
    EXPECT_EQ(r.error(), 0);
    return r.as<fuse_open_out>().fh;
  }
  FuseReply setattr(uint64_t node, const fuse_setattr_in& in) {
    return fs->call(FUSE_SETATTR, node, FuseArgs().obj(in));
  }
  struct stat host_stat(const std::string& name) {
    struct stat st {};
    EXPECT_EQ(::lstat((dir / name).c_str(), &st), 0) << name;
    return st;
  }
  // Names from a READDIR(PLUS) reply; nodeids of the PLUS entries by name.
  static std::set<std::string> dir_names(const FuseReply& r, bool plus,
                                         std::map<std::string, uint64_t>* ids = nullptr) {
    std::set<std::string> names;
    for (size_t pos = 0; pos < r.data.size();) {
      const uint8_t* p = r.data.data() + pos;
      fuse_dirent d{};
      uint64_t nodeid = 0;
      size_t head = sizeof(fuse_dirent);
      if (plus) {
        fuse_direntplus dp{};
        std::memcpy(&dp, p, sizeof(dp));
        d = dp.dirent;
        nodeid = dp.entry_out.nodeid;
        head = sizeof(fuse_direntplus);
      } else {
        std::memcpy(&d, p, sizeof(d));
      }
      const std::string name(reinterpret_cast<const char*>(p + head), d.namelen);
      names.insert(name);
      if (ids) (*ids)[name] = nodeid;
      pos += FUSE_DIRENT_ALIGN(head + d.namelen);
    }
    return names;
  }

  TempDir dir;
  std::unique_ptr<FuseDriver> fs;
};

TEST_F(FsTest, ConfigSpaceFeaturesAndQueues) {
  const auto cfg = fs->device().config_bytes();
  ASSERT_EQ(cfg.size(), 40u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(cfg.data())), "share");
  uint32_t nq = 0;
  std::memcpy(&nq, cfg.data() + 36, 4);
  EXPECT_EQ(nq, 1u);
  EXPECT_EQ(fs->device().num_queues(), 2u);
  EXPECT_EQ(fs->device().device_id(), 26u);
  EXPECT_NE(fs->device().device_features() & feature(kFVersion1), 0u);
  EXPECT_NE(fs->device().device_features() & feature(kFRingEventIdx), 0u);
  EXPECT_EQ(fs->mmio().read32(testsupport::mmio::kDeviceId), 26u);
}

TEST_F(FsTest, BadOptionsAreRefused) {
  auto make = [&](std::string tag, std::string path, uint32_t nq = 1) {
    FsOptions o;
    o.tag = tag;
    o.path = path;
    o.num_request_queues = nq;
    FsDevice d(o);
  };
  EXPECT_THROW(make("", dir.path()), UsageError);
  EXPECT_THROW(make(std::string(37, 't'), dir.path()), UsageError);
  EXPECT_NO_THROW(make(std::string(36, 't'), dir.path()));
  EXPECT_THROW(make("t", dir / "missing"), UsageError);
  write_file(dir / "file", "x");
  EXPECT_THROW(make("t", dir / "file"), UsageError);
  EXPECT_THROW(make("t", dir.path(), 0), UsageError);
}

TEST_F(FsTest, InitNegotiates) {
  fs->call(FUSE_DESTROY, 0, FuseArgs());
  EXPECT_EQ(fs->getattr(1).error(), -EIO);  // nothing before INIT
  const FuseReply old = fs->init(30);
  EXPECT_EQ(old.error(), -EPROTO);
  const FuseReply r = fs->init(38, FUSE_DO_READDIRPLUS | FUSE_MAX_PAGES | FUSE_POSIX_LOCKS |
                                       FUSE_WRITEBACK_CACHE | FUSE_EXPORT_SUPPORT);
  ASSERT_EQ(r.error(), 0);
  const auto out = r.as<fuse_init_out>();
  EXPECT_EQ(out.major, 7u);
  EXPECT_EQ(out.minor, 38u);
  EXPECT_EQ(out.max_write, 1u << 20);
  EXPECT_EQ(out.max_readahead, 1u << 20);
  EXPECT_EQ(out.max_pages, 256u);
  EXPECT_EQ(out.flags, uint32_t{FUSE_DO_READDIRPLUS | FUSE_MAX_PAGES});  // only what we do
  EXPECT_EQ(fs->getattr(1).error(), 0);
  // An older driver gets its own minor back.
  EXPECT_EQ(fs->init(31).as<fuse_init_out>().minor, 31u);
}

TEST_F(FsTest, LookupAndGetattr) {
  write_file(dir / "hello", "hello world");
  const FuseReply r = fs->lookup(1, "hello");
  ASSERT_EQ(r.error(), 0);
  const auto e = r.as<fuse_entry_out>();
  EXPECT_GT(e.nodeid, 1u);
  EXPECT_EQ(e.attr.size, 11u);
  EXPECT_TRUE(S_ISREG(e.attr.mode));
  EXPECT_EQ(e.attr.ino, host_stat("hello").st_ino);
  EXPECT_EQ(e.entry_valid, 1u);                // cache=auto
  EXPECT_EQ(lookup_id(1, "hello"), e.nodeid);  // the same inode, the same id
  const FuseReply a = fs->getattr(e.nodeid);
  ASSERT_EQ(a.error(), 0);
  EXPECT_EQ(a.as<fuse_attr_out>().attr.size, 11u);
  EXPECT_TRUE(S_ISDIR(fs->getattr(1).as<fuse_attr_out>().attr.mode));
  EXPECT_EQ(fs->lookup(1, "missing").error(), -ENOENT);
  EXPECT_EQ(fs->getattr(999999).error(), -ESTALE);
}

TEST_F(FsTest, CreateWriteReadBack) {
  const auto [node, fh] = create(1, "data", 0640);
  ASSERT_GT(node, 1u);
  EXPECT_EQ(host_stat("data").st_mode & 07777, 0640u);
  const auto bytes = pattern(300 * 1024);
  const FuseReply w = fs->write(node, fh, 0, bytes);
  ASSERT_EQ(w.error(), 0);
  EXPECT_EQ(w.as<fuse_write_out>().size, bytes.size());
  EXPECT_EQ(read_file(dir / "data"), bytes);  // the host file holds exactly what was written

  const FuseReply rd = fs->read(node, fh, 4096, 128 * 1024);
  ASSERT_EQ(rd.error(), 0);
  EXPECT_EQ(rd.data, std::vector<uint8_t>(bytes.begin() + 4096, bytes.begin() + 4096 + 128 * 1024));
  EXPECT_EQ(rd.used, 16u + 128 * 1024);
  // At the end of the file: a short read, then none.
  EXPECT_EQ(fs->read(node, fh, bytes.size() - 10, 4096).data.size(), 10u);
  EXPECT_EQ(fs->read(node, fh, bytes.size() + 10, 4096).data.size(), 0u);
  EXPECT_EQ(fs->release(node, fh).error(), 0);
  EXPECT_EQ(fs->release(node, fh).error(), -EBADF);  // unknown handle: an error, no crash
  EXPECT_EQ(fs->read(node, fh, 0, 10).error(), -EBADF);

  // CREATE of an existing name without O_EXCL opens it; with O_EXCL it fails.
  EXPECT_EQ(fs->create(1, "data", O_RDONLY, 0600).error(), 0);
  EXPECT_EQ(fs->create(1, "data", O_RDWR | O_EXCL, 0600).error(), -EEXIST);
  EXPECT_EQ(host_stat("data").st_mode & 07777, 0640u);
  // OPEN with O_TRUNC truncates.
  const uint64_t fh2 = open_fh(node, O_WRONLY | O_TRUNC);
  EXPECT_EQ(host_stat("data").st_size, 0);
  EXPECT_EQ(fs->read(node, fh2, 0, 10).error(), -EBADF) << "write-only handle";
}

TEST_F(FsTest, MkdirReaddirAndReaddirplus) {
  const FuseReply m = fs->call(FUSE_MKDIR, 1, FuseArgs().obj(fuse_mkdir_in{0755, 0}).str("sub"));
  ASSERT_EQ(m.error(), 0);
  const uint64_t sub = m.as<fuse_entry_out>().nodeid;
  EXPECT_TRUE(S_ISDIR(host_stat("sub").st_mode));
  EXPECT_EQ(host_stat("sub").st_mode & 07777, 0755u);
  for (int i = 0; i < 40; ++i) write_file(dir / ("sub/file-" + std::to_string(i)), "x");

  const uint64_t dfh = open_fh(sub, O_RDONLY, true);
  std::set<std::string> all;
  // Small replies: the directory comes in several READDIRs, resumed at each last offset.
  for (uint64_t off = 0;;) {
    fuse_read_in in{};
    in.fh = dfh;
    in.offset = off;
    in.size = 256;
    const FuseReply r = fs->call(FUSE_READDIR, sub, FuseArgs().obj(in), 256);
    ASSERT_EQ(r.error(), 0);
    if (r.data.empty()) break;
    for (size_t pos = 0; pos < r.data.size();) {
      fuse_dirent d{};
      std::memcpy(&d, r.data.data() + pos, sizeof(d));
      all.insert(
          std::string(reinterpret_cast<const char*>(r.data.data() + pos + sizeof(d)), d.namelen));
      off = d.off;
      pos += FUSE_DIRENT_ALIGN(sizeof(d) + d.namelen);
    }
  }
  EXPECT_EQ(all.size(), 42u);  // . .. and 40 files
  EXPECT_TRUE(all.count(".") && all.count("..") && all.count("file-0") && all.count("file-39"));

  fuse_read_in in{};
  in.fh = dfh;
  in.size = 64 * 1024;
  const FuseReply plus = fs->call(FUSE_READDIRPLUS, sub, FuseArgs().obj(in), 64 * 1024);
  ASSERT_EQ(plus.error(), 0);
  std::map<std::string, uint64_t> ids;
  const auto names = dir_names(plus, true, &ids);
  EXPECT_EQ(names.size(), 42u);
  EXPECT_EQ(ids["."], 0u);
  EXPECT_EQ(ids[".."], 0u);
  EXPECT_GT(ids["file-7"], 1u);
  EXPECT_EQ(ids["file-7"], lookup_id(sub, "file-7"));  // the same inode as a LOOKUP finds
  EXPECT_EQ(fs->release(sub, dfh, true).error(), 0);
  // READDIR on a file handle is refused.
  const auto [f, ffh] = create(1, "plain");
  in.fh = ffh;
  EXPECT_EQ(fs->call(FUSE_READDIR, f, FuseArgs().obj(in)).error(), -EBADF);
  EXPECT_EQ(fs->open(f, O_RDONLY, true).error(), -ENOTDIR);
}

TEST_F(FsTest, RenameLinkSymlinkReadlink) {
  write_file(dir / "a", "AAA");
  write_file(dir / "b", "BB");
  fuse_rename_in rn{1};
  ASSERT_EQ(fs->call(FUSE_RENAME, 1, FuseArgs().obj(rn).str("a").str("c")).error(), 0);
  EXPECT_FALSE(stdfs::exists(dir / "a"));
  EXPECT_EQ(read_file(dir / "c").size(), 3u);

  fuse_rename2_in r2{};
  r2.newdir = 1;
  r2.flags = RENAME_NOREPLACE;
  EXPECT_EQ(fs->call(FUSE_RENAME2, 1, FuseArgs().obj(r2).str("c").str("b")).error(), -EEXIST);
  r2.flags = RENAME_EXCHANGE;
  ASSERT_EQ(fs->call(FUSE_RENAME2, 1, FuseArgs().obj(r2).str("c").str("b")).error(), 0);
  EXPECT_EQ(read_file(dir / "b").size(), 3u);
  EXPECT_EQ(read_file(dir / "c").size(), 2u);
  r2.flags = RENAME_WHITEOUT;
  EXPECT_EQ(fs->call(FUSE_RENAME2, 1, FuseArgs().obj(r2).str("c").str("d")).error(), -EINVAL);
  rn.newdir = 424242;
  EXPECT_EQ(fs->call(FUSE_RENAME, 1, FuseArgs().obj(rn).str("c").str("d")).error(), -ESTALE);

  const uint64_t b = lookup_id(1, "b");
  const FuseReply l = fs->call(FUSE_LINK, 1, FuseArgs().obj(fuse_link_in{b}).str("b2"));
  ASSERT_EQ(l.error(), 0);
  EXPECT_EQ(l.as<fuse_entry_out>().nodeid, b);  // a hard link is the same inode
  EXPECT_EQ(host_stat("b").st_nlink, 2u);
  EXPECT_EQ(host_stat("b2").st_ino, host_stat("b").st_ino);

  const FuseReply s = fs->call(FUSE_SYMLINK, 1, FuseArgs().str("sl").str("b"));
  ASSERT_EQ(s.error(), 0);
  const uint64_t sl = s.as<fuse_entry_out>().nodeid;
  EXPECT_TRUE(S_ISLNK(s.as<fuse_entry_out>().attr.mode));
  EXPECT_EQ(stdfs::read_symlink(dir / "sl"), "b");
  const FuseReply rl = fs->call(FUSE_READLINK, sl, FuseArgs());
  ASSERT_EQ(rl.error(), 0);
  EXPECT_EQ(rl.text(), "b");
  EXPECT_EQ(fs->call(FUSE_READLINK, b, FuseArgs()).error(), -EINVAL);
  // A hard link of the symlink links the link itself.
  ASSERT_EQ(fs->call(FUSE_LINK, 1, FuseArgs().obj(fuse_link_in{sl}).str("sl2")).error(), 0);
  EXPECT_TRUE(stdfs::is_symlink(dir / "sl2"));
}

TEST_F(FsTest, UnlinkAndRmdir) {
  write_file(dir / "f", "x");
  stdfs::create_directory(dir / "d");
  stdfs::create_directory(dir / "full");
  write_file(dir / "full/x", "x");
  EXPECT_EQ(fs->unlink(1, "f").error(), 0);
  EXPECT_FALSE(stdfs::exists(dir / "f"));
  EXPECT_EQ(fs->unlink(1, "f").error(), -ENOENT);
  EXPECT_EQ(fs->unlink(1, "d").error(), -EISDIR);
  EXPECT_EQ(fs->call(FUSE_RMDIR, 1, FuseArgs().str("d")).error(), 0);
  EXPECT_FALSE(stdfs::exists(dir / "d"));
  EXPECT_EQ(fs->call(FUSE_RMDIR, 1, FuseArgs().str("full")).error(), -ENOTEMPTY);
}

TEST_F(FsTest, SetattrTruncateChmodTimes) {
  write_file(dir / "f", std::string(1000, 'z'));
  const uint64_t f = lookup_id(1, "f");
  fuse_setattr_in in{};
  in.valid = FATTR_SIZE;
  in.size = 10;
  FuseReply r = setattr(f, in);
  ASSERT_EQ(r.error(), 0);
  EXPECT_EQ(r.as<fuse_attr_out>().attr.size, 10u);
  EXPECT_EQ(host_stat("f").st_size, 10);

  in = {};
  in.valid = FATTR_MODE;
  in.mode = S_IFREG | 0600;
  ASSERT_EQ(setattr(f, in).error(), 0);
  EXPECT_EQ(host_stat("f").st_mode & 07777, 0600u);

  in = {};
  in.valid = FATTR_MTIME | FATTR_ATIME;
  in.mtime = 1000000;
  in.atime = 2000000;
  in.mtimensec = 5;
  ASSERT_EQ(setattr(f, in).error(), 0);
  EXPECT_EQ(host_stat("f").st_mtim.tv_sec, 1000000);
  EXPECT_EQ(host_stat("f").st_mtim.tv_nsec, 5);
  EXPECT_EQ(host_stat("f").st_atim.tv_sec, 2000000);
  in.valid = FATTR_MTIME | FATTR_MTIME_NOW;
  ASSERT_EQ(setattr(f, in).error(), 0);
  EXPECT_GT(host_stat("f").st_mtim.tv_sec, 1000000);
  in.valid = FATTR_MTIME;
  in.mtimensec = 2000000000;
  EXPECT_EQ(setattr(f, in).error(), -EINVAL);

  // Truncate through an open handle (FATTR_FH).
  const uint64_t fh = open_fh(f, O_RDWR);
  in = {};
  in.valid = FATTR_SIZE | FATTR_FH;
  in.fh = fh;
  in.size = 3;
  ASSERT_EQ(setattr(f, in).error(), 0);
  EXPECT_EQ(host_stat("f").st_size, 3);
  in.fh = 987654;
  EXPECT_EQ(setattr(f, in).error(), -EBADF);
  in = {};
  in.valid = FATTR_SIZE;
  EXPECT_EQ(setattr(1, in).error(), -EISDIR);
}

TEST_F(FsTest, OwnersChangeOnlyWhenNothingChanges) {
  write_file(dir / "f", "x");
  const uint64_t f = lookup_id(1, "f");
  const struct stat st = host_stat("f");
  fuse_setattr_in in{};
  in.valid = FATTR_UID | FATTR_GID;
  in.uid = st.st_uid;
  in.gid = st.st_gid;
  EXPECT_EQ(setattr(f, in).error(), 0);  // a no-op
  in.uid = st.st_uid + 1;
  EXPECT_EQ(setattr(f, in).error(), -EPERM);
  EXPECT_EQ(host_stat("f").st_uid, st.st_uid);
}

TEST_F(FsTest, Xattrs) {
  write_file(dir / "f", "x");
  const uint64_t f = lookup_id(1, "f");
  const std::string value = "some value";
  const auto set = [&](const std::string& name, uint32_t flags = 0) {
    return fs->call(
        FUSE_SETXATTR, f,
        FuseArgs()
            .obj(uint32_t(value.size()))
            .obj(flags)
            .str(name)
            .raw(std::span(reinterpret_cast<const uint8_t*>(value.data()), value.size())));
  };
  const FuseReply s = set("user.kiln");
  if (s.error() == -EOPNOTSUPP) GTEST_SKIP() << "the temporary directory has no user xattrs";
  ASSERT_EQ(s.error(), 0);
  char host_value[64] = {};
  EXPECT_EQ(::getxattr((dir / "f").c_str(), "user.kiln", host_value, sizeof(host_value)),
            static_cast<ssize_t>(value.size()));
  EXPECT_EQ(std::string(host_value), value);
  EXPECT_EQ(set("user.kiln", XATTR_CREATE).error(), -EEXIST);

  fuse_getxattr_in g{};
  const FuseReply size = fs->call(FUSE_GETXATTR, f, FuseArgs().obj(g).str("user.kiln"));
  EXPECT_EQ(size.as<fuse_getxattr_out>().size, value.size());
  g.size = 64;
  const FuseReply got = fs->call(FUSE_GETXATTR, f, FuseArgs().obj(g).str("user.kiln"));
  ASSERT_EQ(got.error(), 0);
  EXPECT_EQ(got.text(), value);
  g.size = 3;
  EXPECT_EQ(fs->call(FUSE_GETXATTR, f, FuseArgs().obj(g).str("user.kiln")).error(), -ERANGE);

  // Only user.*: the others are neither readable nor writable through the share.
  EXPECT_EQ(set("security.evil").error(), -EPERM);
  EXPECT_EQ(set("trusted.evil").error(), -EPERM);
  EXPECT_EQ(set("system.posix_acl_access").error(), -EPERM);
  ::setxattr((dir / "f").c_str(), "trusted.host", "h", 1, 0);  // as root on the host
  g.size = 64;
  EXPECT_EQ(fs->call(FUSE_GETXATTR, f, FuseArgs().obj(g).str("trusted.host")).error(), -ENODATA);
  const FuseReply list = fs->call(FUSE_LISTXATTR, f, FuseArgs().obj(g));
  ASSERT_EQ(list.error(), 0);
  EXPECT_EQ(list.text(), std::string("user.kiln\0", 10));

  EXPECT_EQ(fs->call(FUSE_REMOVEXATTR, f, FuseArgs().str("user.kiln")).error(), 0);
  EXPECT_EQ(fs->call(FUSE_GETXATTR, f, FuseArgs().obj(g).str("user.kiln")).error(), -ENODATA);
}

TEST_F(FsTest, StatfsFsyncFlushAccess) {
  const FuseReply s = fs->call(FUSE_STATFS, 1, FuseArgs());
  ASSERT_EQ(s.error(), 0);
  const auto st = s.as<fuse_statfs_out>().st;
  EXPECT_GT(st.bsize, 0u);
  EXPECT_GT(st.blocks, 0u);
  EXPECT_EQ(st.namelen, 255u);

  const auto [f, fh] = create(1, "f");
  fuse_fsync_in fi{};
  fi.fh = fh;
  EXPECT_EQ(fs->call(FUSE_FSYNC, f, FuseArgs().obj(fi)).error(), 0);
  fi.fsync_flags = 1;  // datasync
  EXPECT_EQ(fs->call(FUSE_FSYNC, f, FuseArgs().obj(fi)).error(), 0);
  fi.fh = 5555;
  EXPECT_EQ(fs->call(FUSE_FSYNC, f, FuseArgs().obj(fi)).error(), -EBADF);
  const uint64_t dfh = open_fh(1, O_RDONLY, true);
  fi = {};
  fi.fh = dfh;
  EXPECT_EQ(fs->call(FUSE_FSYNCDIR, 1, FuseArgs().obj(fi)).error(), 0);
  fuse_flush_in fl{};
  fl.fh = fh;
  EXPECT_EQ(fs->call(FUSE_FLUSH, f, FuseArgs().obj(fl)).error(), 0);
  fuse_access_in ai{};
  ai.mask = R_OK | W_OK;
  EXPECT_EQ(fs->call(FUSE_ACCESS, f, FuseArgs().obj(ai)).error(), 0);
}

TEST_F(FsTest, FallocateLseekCopyFileRange) {
  const auto [f, fh] = create(1, "src");
  const auto bytes = pattern(64 * 1024);
  ASSERT_EQ(fs->write(f, fh, 0, bytes).error(), 0);
  fuse_fallocate_in fa{};
  fa.fh = fh;
  fa.offset = 0;
  fa.length = 1 << 20;
  ASSERT_EQ(fs->call(FUSE_FALLOCATE, f, FuseArgs().obj(fa)).error(), 0);
  EXPECT_EQ(host_stat("src").st_size, 1 << 20);
  fa.mode = FALLOC_FL_COLLAPSE_RANGE;
  EXPECT_EQ(fs->call(FUSE_FALLOCATE, f, FuseArgs().obj(fa)).error(), -EOPNOTSUPP);

  fuse_lseek_in ls{};
  ls.fh = fh;
  ls.whence = SEEK_DATA;
  const FuseReply l = fs->call(FUSE_LSEEK, f, FuseArgs().obj(ls));
  ASSERT_EQ(l.error(), 0);
  EXPECT_EQ(l.as<fuse_lseek_out>().offset, 0u);
  ls.whence = SEEK_CUR;
  EXPECT_EQ(fs->call(FUSE_LSEEK, f, FuseArgs().obj(ls)).error(), -EINVAL);

  const auto [g, gh] = create(1, "dst");
  fuse_copy_file_range_in cp{};
  cp.fh_in = fh;
  cp.nodeid_out = g;
  cp.fh_out = gh;
  cp.len = bytes.size();
  const FuseReply c = fs->call(FUSE_COPY_FILE_RANGE, f, FuseArgs().obj(cp));
  ASSERT_EQ(c.error(), 0);
  EXPECT_EQ(c.as<fuse_write_out>().size, bytes.size());
  EXPECT_EQ(read_file(dir / "dst"), bytes);
  cp.flags = 1;
  EXPECT_EQ(fs->call(FUSE_COPY_FILE_RANGE, f, FuseArgs().obj(cp)).error(), -EINVAL);
}

TEST_F(FsTest, ReadOnlyShareRefusesChanges) {
  write_file(dir / "f", "contents");
  stdfs::create_directory(dir / "d");
  FsOptions o;
  o.read_only = true;
  start(o);
  const uint64_t f = lookup_id(1, "f");
  EXPECT_EQ(fs->create(1, "new", O_RDWR, 0644).error(), -EROFS);
  EXPECT_EQ(fs->call(FUSE_MKDIR, 1, FuseArgs().obj(fuse_mkdir_in{0755, 0}).str("x")).error(),
            -EROFS);
  EXPECT_EQ(fs->call(FUSE_MKNOD, 1, FuseArgs().obj(fuse_mknod_in{S_IFIFO | 0644, 0, 0, 0}).str("p"))
                .error(),
            -EROFS);
  EXPECT_EQ(fs->call(FUSE_SYMLINK, 1, FuseArgs().str("s").str("f")).error(), -EROFS);
  EXPECT_EQ(fs->unlink(1, "f").error(), -EROFS);
  EXPECT_EQ(fs->call(FUSE_RMDIR, 1, FuseArgs().str("d")).error(), -EROFS);
  EXPECT_EQ(fs->call(FUSE_RENAME, 1, FuseArgs().obj(fuse_rename_in{1}).str("f").str("g")).error(),
            -EROFS);
  EXPECT_EQ(fs->call(FUSE_LINK, 1, FuseArgs().obj(fuse_link_in{f}).str("h")).error(), -EROFS);
  fuse_setattr_in sa{};
  sa.valid = FATTR_SIZE;
  EXPECT_EQ(setattr(f, sa).error(), -EROFS);
  EXPECT_EQ(fs->open(f, O_WRONLY).error(), -EROFS);
  EXPECT_EQ(fs->open(f, O_RDWR).error(), -EROFS);
  EXPECT_EQ(fs->open(f, O_RDONLY | O_TRUNC).error(), -EROFS);
  EXPECT_EQ(
      fs->call(FUSE_SETXATTR, f, FuseArgs().obj(uint32_t{1}).obj(uint32_t{0}).str("user.a").str(""))
          .error(),
      -EROFS);
  EXPECT_EQ(fs->call(FUSE_REMOVEXATTR, f, FuseArgs().str("user.a")).error(), -EROFS);
  fuse_access_in ai{W_OK, 0};
  EXPECT_EQ(fs->call(FUSE_ACCESS, f, FuseArgs().obj(ai)).error(), -EROFS);
  // A forged WRITE on a read-only handle.
  const uint64_t fh = open_fh(f, O_RDONLY);
  EXPECT_EQ(fs->write(f, fh, 0, pattern(4)).error(), -EROFS);
  const FuseReply r = fs->read(f, fh, 0, 100);
  ASSERT_EQ(r.error(), 0);
  EXPECT_EQ(r.text(), "contents");
  EXPECT_EQ(read_file(dir / "f").size(), 8u);
  EXPECT_TRUE(stdfs::exists(dir / "d"));
}

TEST_F(FsTest, SetIdBitsAreStripped) {
  const auto [f, fh] = create(1, "suid", 04755);
  (void)fh;
  EXPECT_EQ(host_stat("suid").st_mode & 07777, 0755u);
  ASSERT_EQ(fs->call(FUSE_MKDIR, 1, FuseArgs().obj(fuse_mkdir_in{02775, 0}).str("sgid")).error(),
            0);
  EXPECT_EQ(host_stat("sgid").st_mode & 07777, 0775u);
  fuse_setattr_in in{};
  in.valid = FATTR_MODE;
  in.mode = 06777;
  const FuseReply r = setattr(f, in);
  ASSERT_EQ(r.error(), 0);
  EXPECT_EQ(host_stat("suid").st_mode & 07777, 0777u);
  EXPECT_EQ(r.as<fuse_attr_out>().attr.mode & 07777, 0777u);
  ASSERT_EQ(
      fs->call(FUSE_MKNOD, 1, FuseArgs().obj(fuse_mknod_in{S_IFREG | 06644, 0, 0, 0}).str("m"))
          .error(),
      0);
  EXPECT_EQ(host_stat("m").st_mode & 07777, 0644u);

  FsOptions o;
  o.allow_setid_and_devices = true;
  start(o);
  create(1, "allowed", 04755);
  EXPECT_EQ(host_stat("allowed").st_mode & 07777, 04755u);
}

TEST_F(FsTest, DeviceNodesAreRefused) {
  const auto mknod = [&](const std::string& name, uint32_t mode, uint32_t rdev) {
    return fs->call(FUSE_MKNOD, 1, FuseArgs().obj(fuse_mknod_in{mode, rdev, 0, 0}).str(name));
  };
  EXPECT_EQ(mknod("null", S_IFCHR | 0666, makedev(1, 3)).error(), -EPERM);
  EXPECT_EQ(mknod("sda", S_IFBLK | 0666, makedev(8, 0)).error(), -EPERM);
  EXPECT_EQ(mknod("dir", S_IFDIR | 0755, 0).error(), -EINVAL);
  EXPECT_FALSE(stdfs::exists(dir / "null"));
  const FuseReply fifo = mknod("fifo", S_IFIFO | 0644, 0);
  ASSERT_EQ(fifo.error(), 0);
  EXPECT_TRUE(S_ISFIFO(host_stat("fifo").st_mode));
  // A FIFO is never opened by the server (the guest's kernel handles it): ENXIO.
  EXPECT_EQ(fs->open(fifo.as<fuse_entry_out>().nodeid, O_RDONLY).error(), -ENXIO);
}

TEST_F(FsTest, SymlinkOutOfTheShareIsNeverFollowed) {
  ASSERT_EQ(::symlink("/etc/passwd", (dir / "passwd").c_str()), 0);
  ASSERT_EQ(::symlink("/etc", (dir / "etc").c_str()), 0);
  const FuseReply l = fs->lookup(1, "passwd");
  ASSERT_EQ(l.error(), 0);
  const auto e = l.as<fuse_entry_out>();
  EXPECT_TRUE(S_ISLNK(e.attr.mode));
  EXPECT_EQ(e.attr.size, std::string("/etc/passwd").size());  // the link, not the file
  EXPECT_EQ(fs->call(FUSE_READLINK, e.nodeid, FuseArgs()).text(), "/etc/passwd");
  EXPECT_EQ(fs->open(e.nodeid, O_RDONLY).error(), -ELOOP);
  EXPECT_EQ(fs->open(e.nodeid, O_RDONLY, true).error(), -ENOTDIR);
  EXPECT_EQ(fs->create(1, "passwd", O_RDWR, 0644).error(), -ELOOP);
  fuse_getxattr_in g{64, 0};
  const FuseReply list = fs->call(FUSE_LISTXATTR, e.nodeid, FuseArgs().obj(g));
  EXPECT_EQ(list.error(), 0);
  EXPECT_TRUE(list.data.empty());  // the link's own (none), never the target's
  // Through the directory symlink: the link is not a directory to the server.
  const uint64_t etc = lookup_id(1, "etc");
  EXPECT_EQ(fs->lookup(etc, "passwd").error(), -ENOTDIR);
  EXPECT_EQ(fs->create(etc, "x", O_RDWR, 0644).error(), -ENOTDIR);
  EXPECT_EQ(fs->call(FUSE_MKDIR, etc, FuseArgs().obj(fuse_mkdir_in{0755, 0}).str("x")).error(),
            -ENOTDIR);
  // Nothing the guest can do truncates or chmods the link's target.
  fuse_setattr_in sa{};
  sa.valid = FATTR_SIZE;
  EXPECT_NE(setattr(e.nodeid, sa).error(), 0);
  sa.valid = FATTR_MODE;
  sa.mode = 0777;
  EXPECT_NE(setattr(e.nodeid, sa).error(), 0);
  struct stat passwd {};
  ASSERT_EQ(::stat("/etc/passwd", &passwd), 0);
  EXPECT_NE(passwd.st_size, 0);
  EXPECT_NE(passwd.st_mode & 07777, 0777u);
}

TEST_F(FsTest, NamesMustBeOneComponent) {
  stdfs::create_directory(dir / "sub");
  write_file(dir / "sub/f", "x");
  for (const std::string bad : {"sub/f", "..", ".", "", "/etc", "a/.."})
    EXPECT_EQ(fs->lookup(1, bad).error(), -EINVAL) << bad;
  const uint64_t sub = lookup_id(1, "sub");
  EXPECT_EQ(fs->lookup(sub, "..").error(), -EINVAL);
  EXPECT_EQ(fs->lookup(1, std::string(256, 'n')).error(), -ENAMETOOLONG);
  EXPECT_EQ(fs->lookup(1, std::string(255, 'n')).error(), -ENOENT);
  EXPECT_EQ(fs->create(1, "../escape", O_RDWR, 0644).error(), -EINVAL);
  EXPECT_EQ(fs->call(FUSE_MKDIR, 1, FuseArgs().obj(fuse_mkdir_in{0755, 0}).str("a/b")).error(),
            -EINVAL);
  EXPECT_EQ(
      fs->call(FUSE_RENAME, sub, FuseArgs().obj(fuse_rename_in{1}).str("f").str("../../x")).error(),
      -EINVAL);
  EXPECT_EQ(fs->call(FUSE_SYMLINK, 1, FuseArgs().str("..").str("x")).error(), -EINVAL);
  // A name without its NUL.
  const std::string unterminated = "abc";
  EXPECT_EQ(fs->call(FUSE_LOOKUP, 1,
                     FuseArgs().raw(std::span(reinterpret_cast<const uint8_t*>(unterminated.data()),
                                              unterminated.size())))
                .error(),
            -EINVAL);
  EXPECT_FALSE(stdfs::exists(stdfs::path(dir.path()).parent_path() / "escape"));
}

TEST_F(FsTest, ForgetCountsAndUnknownIdsAreHarmless) {
  write_file(dir / "f", "x");
  const uint64_t f = lookup_id(1, "f");
  lookup_id(1, "f");
  EXPECT_EQ(fs->forget(424242, 1).used, 0u);        // unknown: ignored, no reply
  EXPECT_EQ(fs->forget(1, ~uint64_t{0}).used, 0u);  // the root is never freed
  EXPECT_EQ(fs->getattr(1).error(), 0);
  EXPECT_EQ(fs->forget(f, 1).completed, true);
  EXPECT_EQ(fs->getattr(f).error(), 0);  // one lookup left
  fs->forget(f, 1);
  EXPECT_EQ(fs->getattr(f).error(), -ESTALE);
  // BATCH_FORGET with a count past its entries stops at the end of the request.
  const uint64_t g = lookup_id(1, "f");
  EXPECT_NE(g, f);  // ids are never reused
  fuse_batch_forget_in b{};
  b.count = 1000;
  fuse_forget_one one{g, 1};
  const fuse_in_header h = fs->header(FUSE_BATCH_FORGET, 0, sizeof(b) + sizeof(one));
  const auto bytes = FuseArgs().obj(h).obj(b).obj(one).bytes();
  EXPECT_EQ(fs->raw(bytes, {}, 0, 0, true, false).used, 0u);
  EXPECT_EQ(fs->getattr(g).error(), -ESTALE);
}

TEST_F(FsTest, MalformedRequestsFailAloneAndTheDeviceGoesOn) {
  // Shorter than a fuse_in_header: completed with nothing written.
  const std::vector<uint8_t> shorty(20, 0);
  FuseReply r = fs->raw(shorty, {}, 64);
  EXPECT_TRUE(r.completed);
  EXPECT_EQ(r.used, 0u);
  // len past the readable bytes, len below the header size.
  fuse_in_header h = fs->header(FUSE_GETATTR, 1, sizeof(fuse_getattr_in));
  h.len = 4096;
  r = fs->raw(FuseArgs().obj(h).obj(fuse_getattr_in{}).bytes(), {}, 256);
  EXPECT_EQ(r.error(), -EINVAL);
  h.len = 8;
  r = fs->raw(FuseArgs().obj(h).obj(fuse_getattr_in{}).bytes(), {}, 256);
  EXPECT_EQ(r.error(), -EINVAL);
  // Truncated arguments.
  EXPECT_EQ(fs->call(FUSE_SETATTR, 1, FuseArgs().obj(uint32_t{1})).error(), -EINVAL);
  EXPECT_EQ(fs->call(FUSE_READ, 1, FuseArgs().obj(uint64_t{1})).error(), -EINVAL);
  // No writable part at all, and a reply buffer too small for the reply.
  h = fs->header(FUSE_GETATTR, 1, sizeof(fuse_getattr_in));
  r = fs->raw(FuseArgs().obj(h).obj(fuse_getattr_in{}).bytes(), {}, 0, 1, true, false);
  EXPECT_TRUE(r.completed);
  EXPECT_EQ(r.used, 0u);
  EXPECT_EQ(fs->call(FUSE_GETATTR, 1, FuseArgs().obj(fuse_getattr_in{}), 8).error(), -EIO);
  // Sizes over the negotiated limits.
  const auto [f, fh] = create(1, "f");
  fuse_read_in rd{};
  rd.fh = fh;
  rd.size = (1 << 20) + 1;
  EXPECT_EQ(fs->call(FUSE_READ, f, FuseArgs().obj(rd), 4096).error(), -EINVAL);
  rd.size = 8192;  // more than the buffer
  EXPECT_EQ(fs->call(FUSE_READ, f, FuseArgs().obj(rd), 4096).error(), -EINVAL);
  fuse_write_in wr{};
  wr.fh = fh;
  wr.size = 100;  // the request carries 4 bytes
  EXPECT_EQ(fs->call(FUSE_WRITE, f, FuseArgs().obj(wr).obj(uint32_t{7})).error(), -EINVAL);
  EXPECT_EQ(fs->call(FUSE_IOCTL, f, FuseArgs()).error(), -ENOSYS);
  EXPECT_EQ(fs->call(9999, f, FuseArgs()).error(), -ENOSYS);
  // INTERRUPT gets no reply.
  EXPECT_EQ(fs->call(FUSE_INTERRUPT, 0, FuseArgs().obj(fuse_interrupt_in{1})).used, 0u);

  EXPECT_EQ(fs->mmio().status() & kStatusDeviceNeedsReset, 0u);
  EXPECT_EQ(fs->getattr(1).error(), 0);
  EXPECT_GT(fs->device().device_id(), 0u);
}

TEST_F(FsTest, CacheModes) {
  write_file(dir / "f", "x");
  FsOptions o;
  o.cache = FsCache::kNever;
  start(o);
  FuseReply l = fs->lookup(1, "f");
  EXPECT_EQ(l.as<fuse_entry_out>().entry_valid, 0u);
  EXPECT_EQ(l.as<fuse_entry_out>().attr_valid, 0u);
  EXPECT_EQ(fs->open(l.as<fuse_entry_out>().nodeid, O_RDONLY).as<fuse_open_out>().open_flags,
            uint32_t{FOPEN_DIRECT_IO});
  o.cache = FsCache::kAlways;
  start(o);
  l = fs->lookup(1, "f");
  EXPECT_EQ(l.as<fuse_entry_out>().entry_valid, 86400u);
  EXPECT_EQ(fs->open(l.as<fuse_entry_out>().nodeid, O_RDONLY).as<fuse_open_out>().open_flags,
            uint32_t{FOPEN_KEEP_CACHE});
}

TEST_F(FsTest, DestroyAndDeviceResetDropEverything) {
  write_file(dir / "f", "x");
  const uint64_t f = lookup_id(1, "f");
  open_fh(f, O_RDONLY);
  EXPECT_EQ(fs->call(FUSE_DESTROY, 0, FuseArgs()).error(), 0);
  EXPECT_EQ(fs->getattr(1).error(), -EIO);
  ASSERT_EQ(fs->init().error(), 0);
  EXPECT_EQ(fs->getattr(f).error(), -ESTALE);
  EXPECT_EQ(fs->getattr(1).error(), 0);
}

TEST_F(FsTest, HiprioQueueServesForget) {
  write_file(dir / "f", "x");
  const uint64_t f = lookup_id(1, "f");
  fs->forget(f, 1);  // queue 0
  EXPECT_EQ(fs->getattr(f).error(), -ESTALE);
}

// The tables, straight on the server with small limits.
class FuseServerLimits : public ::testing::Test {
 protected:
  FuseReply call(FuseServer& s, uint32_t opcode, uint64_t nodeid, const FuseArgs& args) {
    fuse_in_header h{};
    h.len = static_cast<uint32_t>(sizeof(h) + args.bytes().size());
    h.opcode = opcode;
    h.unique = 7;
    h.nodeid = nodeid;
    std::vector<uint8_t> in = FuseArgs().obj(h).raw(args.bytes()).bytes();
    std::vector<uint8_t> out(4096);
    const iovec iv{in.data(), in.size()}, ov{out.data(), out.size()};
    FuseReply r;
    r.used = s.handle(std::span(&iv, 1), std::span(&ov, 1));
    r.completed = true;
    std::memcpy(&r.h, out.data(), sizeof(r.h));
    r.data.assign(out.begin() + 16, out.begin() + std::max<uint32_t>(r.used, 16));
    return r;
  }
  TempDir dir;
};

TEST_F(FuseServerLimits, FullTablesAnswerEnfileAndEmfile) {
  for (const char* n : {"a", "b", "c"}) write_file(dir / n, "x");
  FuseServerOptions o;
  o.max_inodes = 3;  // the root and two more
  o.max_handles = 2;
  FuseServer s(dir.path(), o);
  fuse_init_in init{7, 38, 0, 0, 0, {}};
  ASSERT_EQ(call(s, FUSE_INIT, 0, FuseArgs().obj(init)).error(), 0);
  const uint64_t a = call(s, FUSE_LOOKUP, 1, FuseArgs().str("a")).as<fuse_entry_out>().nodeid;
  ASSERT_GT(a, 1u);
  ASSERT_EQ(call(s, FUSE_LOOKUP, 1, FuseArgs().str("b")).error(), 0);
  EXPECT_EQ(call(s, FUSE_LOOKUP, 1, FuseArgs().str("c")).error(), -ENFILE);
  EXPECT_EQ(call(s, FUSE_LOOKUP, 1, FuseArgs().str("a")).error(), 0);  // held: no new entry
  EXPECT_EQ(s.inode_count(), 3u);
  call(s, FUSE_FORGET, a, FuseArgs().obj(fuse_forget_in{2}));
  EXPECT_EQ(s.inode_count(), 2u);
  EXPECT_EQ(call(s, FUSE_LOOKUP, 1, FuseArgs().str("c")).error(), 0);

  const uint64_t c = call(s, FUSE_LOOKUP, 1, FuseArgs().str("c")).as<fuse_entry_out>().nodeid;
  fuse_open_in op{O_RDONLY, 0};
  const uint64_t fh = call(s, FUSE_OPEN, c, FuseArgs().obj(op)).as<fuse_open_out>().fh;
  ASSERT_NE(fh, 0u);
  ASSERT_EQ(call(s, FUSE_OPEN, c, FuseArgs().obj(op)).error(), 0);
  EXPECT_EQ(call(s, FUSE_OPEN, c, FuseArgs().obj(op)).error(), -EMFILE);
  EXPECT_EQ(call(s, FUSE_OPENDIR, 1, FuseArgs().obj(op)).error(), -EMFILE);
  fuse_release_in rel{};
  rel.fh = fh;
  EXPECT_EQ(call(s, FUSE_RELEASE, c, FuseArgs().obj(rel)).error(), 0);
  EXPECT_EQ(s.handle_count(), 1u);
  EXPECT_EQ(call(s, FUSE_OPEN, c, FuseArgs().obj(op)).error(), 0);

  // READDIRPLUS with the inode table full: every entry is listed, the new ones with nodeid 0.
  for (uint64_t fh_left = 1; fh_left < 10; ++fh_left) {
    fuse_release_in any{};
    any.fh = fh_left;
    call(s, FUSE_RELEASE, c, FuseArgs().obj(any));
  }
  const uint64_t dfh = call(s, FUSE_OPENDIR, 1, FuseArgs().obj(op)).as<fuse_open_out>().fh;
  ASSERT_NE(dfh, 0u);
  fuse_read_in rd{};
  rd.fh = dfh;
  rd.size = 4000;
  const FuseReply plus = call(s, FUSE_READDIRPLUS, 1, FuseArgs().obj(rd));
  ASSERT_EQ(plus.error(), 0);
  size_t entries = 0, with_id = 0;
  for (size_t pos = 0; pos < plus.data.size();) {
    fuse_direntplus dp{};
    std::memcpy(&dp, plus.data.data() + pos, sizeof(dp));
    ++entries;
    with_id += dp.entry_out.nodeid != 0;
    pos += FUSE_DIRENT_ALIGN(sizeof(dp) + dp.dirent.namelen);
  }
  EXPECT_EQ(entries, 5u);  // . .. a b c
  EXPECT_EQ(with_id, 2u);  // b and c, already held; a has no room
  EXPECT_EQ(s.inode_count(), 3u);
}

// Snapshots: the FUSE session's inodes and open files, by path under the share, opened again
// in a fresh device over the same directory.
using fs::kRootNodeId;

class FsSnapshotTest : public FsTest {
 protected:
  std::vector<uint8_t> save() { return *fs->device().save_state(); }
  // A second device over the same share, the state restored into it.
  std::unique_ptr<FuseDriver> restored(const std::vector<uint8_t>& state) {
    FsOptions o;
    o.tag = "share";
    o.path = dir.path();
    auto other = std::make_unique<FuseDriver>(o);
    other->device().restore_state(state, {});
    return other;
  }
  std::string refusal(const std::vector<uint8_t>& state) {
    try {
      restored(state);
    } catch (const Error& e) {
      return e.what();
    }
    return "accepted";
  }
};

TEST_F(FsSnapshotTest, InodesAndOpenFilesGoOnInANewDevice) {
  const auto [file, fh] = create(kRootNodeId, "held.txt");
  const std::string text = "written before the snapshot";
  ASSERT_EQ(
      fs->write(file, fh, 0, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()))
          .error(),
      0);
  ASSERT_EQ(
      fs->call(FUSE_MKDIR, kRootNodeId, FuseArgs().obj(fuse_mkdir_in{0755, 0}).str("sub")).error(),
      0);
  const uint64_t sub = lookup_id(kRootNodeId, "sub");
  const auto [inner, inner_fh] = create(sub, "inner");
  const uint64_t dir_fh = open_fh(sub, O_RDONLY | O_DIRECTORY, true);
  const std::vector<uint8_t> state = save();

  auto b = restored(state);
  EXPECT_EQ(b->getattr(file).error(), 0);
  EXPECT_EQ(b->getattr(inner).error(), 0);
  const FuseReply r = b->read(file, fh, 0, 64);
  ASSERT_EQ(r.error(), 0);
  EXPECT_EQ(r.text(), text);
  const std::string more = "!";
  EXPECT_EQ(
      b->write(inner, inner_fh, 0, std::span(reinterpret_cast<const uint8_t*>(more.data()), 1))
          .error(),
      0);
  EXPECT_EQ(read_file(dir / "sub/inner").size(), 1u);
  EXPECT_EQ(
      b->call(FUSE_READDIR, sub, FuseArgs().obj(fuse_read_in{dir_fh, 0, 4096, 0, 0, 0, 0}), 4096)
          .error(),
      0);
  // New inodes and handles get ids the guest has not seen.
  const auto [fresh, fresh_fh] = [&] {
    const FuseReply c = b->create(kRootNodeId, "after", O_RDWR, 0644);
    struct Out {
      fuse_entry_out e;
      fuse_open_out o;
    };
    const auto out = c.as<Out>();
    return std::pair{out.e.nodeid, out.o.fh};
  }();
  EXPECT_GT(fresh, inner);
  EXPECT_GT(fresh_fh, dir_fh);
  // The restored session is initialized: no second INIT needed, and a save of it restores too.
  EXPECT_NO_THROW(restored(*b->device().save_state()));
}

TEST_F(FsSnapshotTest, AHeldFileDeletedOnTheHostRefusesTheSnapshot) {
  const auto [file, fh] = create(kRootNodeId, "doomed");
  (void)fh;
  ASSERT_EQ(::unlink((dir / "doomed").c_str()), 0);
  try {
    save();
    ADD_FAILURE() << "saved";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("deleted"), std::string::npos) << e.what();
  }
  // Once the guest lets it go, the snapshot can be taken.
  fs->release(file, fh);
  fs->forget(file, 1);
  EXPECT_NO_THROW(save());
}

TEST_F(FsSnapshotTest, PathsThatChangedOnTheHostAreRefusedNotFollowed) {
  create(kRootNodeId, "f");
  ASSERT_EQ(
      fs->call(FUSE_MKDIR, kRootNodeId, FuseArgs().obj(fuse_mkdir_in{0755, 0}).str("d")).error(),
      0);
  const uint64_t d = lookup_id(kRootNodeId, "d");
  create(d, "g");
  const std::vector<uint8_t> state = save();
  TempDir outside;
  write_file(outside / "g", "outside the share");
  // f became a symlink (another type: refused); d a symlink to a directory outside the share
  // (refused, never walked through).
  ASSERT_EQ(::rename((dir / "f").c_str(), (dir / "f.old").c_str()), 0);
  ASSERT_EQ(::symlink((outside / "g").c_str(), (dir / "f").c_str()), 0);
  EXPECT_NE(refusal(state).find("another type"), std::string::npos) << refusal(state);
  ASSERT_EQ(::unlink((dir / "f").c_str()), 0);
  ASSERT_EQ(::rename((dir / "f.old").c_str(), (dir / "f").c_str()), 0);
  EXPECT_EQ(refusal(state), "accepted");
  ASSERT_EQ(::rename((dir / "d").c_str(), (dir / "d.old").c_str()), 0);
  ASSERT_EQ(::symlink(outside.path().c_str(), (dir / "d").c_str()), 0);
  EXPECT_NE(refusal(state), "accepted");
  // Truncated states are refused too.
  for (size_t n = 0; n < state.size(); n += 5)
    EXPECT_NE(refusal({state.begin(), state.begin() + static_cast<std::ptrdiff_t>(n)}), "accepted")
        << n;
}

}  // namespace
}  // namespace kiln::virtio
