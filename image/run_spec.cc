#include "image/run_spec.h"

#include "base/error.h"

namespace kiln::image {
namespace {

void set_env(std::vector<std::string>& env, const std::string& kv) {
  const std::string key = kv.substr(0, kv.find('=') + 1);  // "KEY="
  for (auto& e : env)
    if (e.starts_with(key)) {
      e = kv;
      return;
    }
  env.push_back(kv);
}

bool has_env(const std::vector<std::string>& env, const std::string& key) {
  for (const auto& e : env)
    if (e.starts_with(key + "=")) return true;
  return false;
}

}  // namespace

RunSpec make_run_spec(const ImageConfig& image, const RunOverrides& o, const std::string& rootfs) {
  RunSpec s;
  s.argv = o.entrypoint ? *o.entrypoint : image.entrypoint.value_or(std::vector<std::string>{});
  if (!o.command.empty())
    s.argv.insert(s.argv.end(), o.command.begin(), o.command.end());
  else if (!o.entrypoint && image.cmd)
    s.argv.insert(s.argv.end(), image.cmd->begin(), image.cmd->end());
  if (s.argv.empty())
    throw UsageError("no command: the image has no Entrypoint or Cmd; give one after --");

  for (const auto& e : image.env) set_env(s.env, e);
  for (const auto& e : o.env) {
    const auto eq = e.find('=');
    if (eq == std::string::npos || eq == 0)
      throw UsageError("-e '" + e + "': KEY=VALUE was expected");
    set_env(s.env, e);
  }

  // WorkingDir relative (never written so by Docker) counts from the root.
  const std::string& dir = o.working_dir ? *o.working_dir : image.working_dir;
  if (o.working_dir && (dir.empty() || dir.front() != '/'))
    throw UsageError("-w '" + dir + "': an absolute path was expected");
  s.cwd.push_back('/');
  s.cwd.append(dir, !dir.empty() && dir.front() == '/' ? 1 : 0);

  s.user = o.user ? resolve_user(rootfs, *o.user, "-u")
                  : resolve_user(rootfs, image.user, "image config User");
  if (!has_env(s.env, "PATH")) s.env.insert(s.env.begin(), kDefaultPath);
  if (!has_env(s.env, "HOME")) s.env.push_back("HOME=" + s.user.home);
  return s;
}

}  // namespace kiln::image
