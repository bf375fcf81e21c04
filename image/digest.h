// Content digests of image blobs: "sha256:<64 lowercase hex>", computed with OpenSSL's EVP
// interface. Every blob an image names is checked against its digest (and size) before use.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace kiln::image {

struct Digest {
  std::string hex;  // 64 lowercase hex digits of a sha256

  std::string str() const { return "sha256:" + hex; }
  bool operator==(const Digest&) const = default;
};

// Parses "sha256:<64 hex>"; anything else (another algorithm, upper case, a wrong length) is a
// UsageError naming `what` (the field the digest came from).
Digest parse_digest(std::string_view text, std::string_view what);
// As parse_digest, or nullopt when `text` is not such a digest.
std::optional<Digest> try_parse_digest(std::string_view text);
bool is_sha256_hex(std::string_view hex);

// Incremental sha256.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, size_t size);
  Digest finish();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

Digest sha256_of(std::string_view data);

// Hashes the file at `path` (not following a final symlink), and its size.
struct FileDigest {
  Digest digest;
  uint64_t size = 0;
};
FileDigest sha256_file(const std::string& path);

// Checks the file at `path` against `digest` and, when given, `size`; a mismatch or an
// unreadable file is a UsageError naming `what` (e.g. "layer 2 (sha256:...)").
void verify_file(const std::string& path, const Digest& digest, std::optional<uint64_t> size,
                 const std::string& what);

}  // namespace kiln::image
