#include "image/digest.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"

namespace kiln::image {

bool is_sha256_hex(std::string_view hex) {
  if (hex.size() != 64) return false;
  for (char c : hex)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::optional<Digest> try_parse_digest(std::string_view text) {
  constexpr std::string_view kPrefix = "sha256:";
  if (!text.starts_with(kPrefix) || !is_sha256_hex(text.substr(kPrefix.size())))
    return std::nullopt;
  return Digest{std::string(text.substr(kPrefix.size()))};
}

Digest parse_digest(std::string_view text, std::string_view what) {
  if (auto d = try_parse_digest(text)) return *d;
  throw UsageError(std::string(what) + ": '" + std::string(text.substr(0, 80)) +
                   "' is not a digest of the form sha256:<64 lowercase hex digits>");
}

struct Sha256::Ctx {
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> md{EVP_MD_CTX_new()};
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {
  if (!ctx_->md || EVP_DigestInit_ex(ctx_->md.get(), EVP_sha256(), nullptr) != 1)
    throw Error("sha256: OpenSSL could not set up a digest context");
}
Sha256::~Sha256() = default;

void Sha256::update(const void* data, size_t size) {
  if (size && EVP_DigestUpdate(ctx_->md.get(), data, size) != 1)
    throw Error("sha256: OpenSSL digest update failed");
}

Digest Sha256::finish() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_->md.get(), out, &len) != 1 || len != 32)
    throw Error("sha256: OpenSSL digest final failed");
  static constexpr char kHex[] = "0123456789abcdef";
  Digest d;
  d.hex.reserve(64);
  for (unsigned i = 0; i < len; ++i) {
    d.hex.push_back(kHex[out[i] >> 4]);
    d.hex.push_back(kHex[out[i] & 15]);
  }
  return d;
}

Digest sha256_of(std::string_view data) {
  Sha256 h;
  h.update(data.data(), data.size());
  return h.finish();
}

FileDigest sha256_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) throw UsageError(errno_message("cannot open " + path));
  Sha256 h;
  std::vector<char> buf(1 << 20);
  FileDigest out;
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw UsageError(errno_message("cannot read " + path));
    }
    if (n == 0) break;
    h.update(buf.data(), static_cast<size_t>(n));
    out.size += static_cast<uint64_t>(n);
  }
  out.digest = h.finish();
  return out;
}

void verify_file(const std::string& path, const Digest& digest, std::optional<uint64_t> size,
                 const std::string& what) {
  FileDigest got;
  try {
    got = sha256_file(path);
  } catch (const Error& e) {
    throw UsageError(what + ": blob missing or unreadable (" + e.what() + ")");
  }
  if (size && got.size != *size)
    throw UsageError(what + ": size is " + std::to_string(got.size) + " bytes, the manifest says " +
                     std::to_string(*size) + " (" + path + ")");
  if (got.digest != digest)
    throw UsageError(what + ": content does not match its digest: expected " + digest.str() +
                     ", got " + got.digest.str() + " (" + path + ")");
}

}  // namespace kiln::image
