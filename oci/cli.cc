#include "oci/cli.h"

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "base/error.h"
#include "oci/log.h"
#include "oci/runtime.h"

namespace kiln::oci {

namespace {

// Commands an engine may call that kiln-oci does not have yet: a clear refusal.
void not_yet(CLI::App& app, const char* name, const char* what) {
  CLI::App* c = app.add_subcommand(name, what);
  c->allow_extras();
  c->callback(
      [name] { throw kiln::Error(std::string(name) + " is not supported by kiln-oci yet"); });
}

}  // namespace

int oci_main(int argc, char** argv) {
  CLI::App app{
      "kiln-oci: an OCI runtime (runc's command line) running each container in a "
      "Kiln microVM",
      "kiln-oci"};
  app.require_subcommand(0, 1);
  Globals g;
  g.root = default_root();
  std::string log_file, log_format = "text";
  bool debug = false, systemd_cgroup = false, version = false;
  app.add_option("--root", g.root, "the state directory")->capture_default_str();
  app.add_option("--log", log_file, "also write messages to this file");
  app.add_option("--log-format", log_format, "text or json")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_flag("--debug", debug, "debug messages");
  app.add_flag("--systemd-cgroup", systemd_cgroup,
               "place the container in a systemd cgroup (not supported: refused)");
  app.add_flag("-v,--version", version, "print the version");

  CreateOptions co;
  bool no_new_keyring = false;
  CLI::App* create_c = app.add_subcommand("create", "Create a container (boot its microVM)");
  create_c->add_option("-b,--bundle", co.bundle, "the bundle directory (default: .)");
  create_c->add_option("--pid-file", co.pid_file, "write the container's host pid here");
  create_c->add_option("--console-socket", co.console_socket,
                       "a Unix socket to send the terminal's master to");
  // No session keyring is made on the host: the container runs in a VM.
  create_c->add_flag("--no-pivot", co.no_pivot,
                     "make the host process's view of the root with MS_MOVE and chroot, not "
                     "pivot_root (a root on a ramfs)");
  create_c->add_flag("--no-new-keyring", no_new_keyring,
                     "accepted (no keyring is made on the host)");
  create_c->add_option("--preserve-fds", co.preserve_fds, "extra fds to pass (only 0)");
  create_c->add_option("ID", co.id, "the container's ID")->required();

  std::string id, signal = "SIGTERM", format = "table";
  bool force = false, all = false, quiet = false;
  CLI::App* start_c = app.add_subcommand("start", "Start a created container's process");
  start_c->add_option("ID", id)->required();
  CLI::App* pause_c = app.add_subcommand("pause", "Pause a container's microVM");
  pause_c->add_option("ID", id)->required();
  CLI::App* resume_c = app.add_subcommand("resume", "Resume a paused container's microVM");
  resume_c->add_option("ID", id)->required();
  CLI::App* state_c = app.add_subcommand("state", "Print a container's state as JSON");
  state_c->add_option("ID", id)->required();
  CLI::App* kill_c = app.add_subcommand("kill", "Signal a container's process");
  kill_c->add_flag("-a,--all", all, "every process of the container (as its main process)");
  kill_c->add_option("ID", id)->required();
  kill_c->add_option("SIGNAL", signal, "a name or number (default SIGTERM)");
  CLI::App* delete_c = app.add_subcommand("delete", "Delete a container and its resources");
  delete_c->add_flag("-f,--force", force, "kill it first if it runs");
  delete_c->add_option("ID", id)->required();
  CLI::App* list_c = app.add_subcommand("list", "List containers");
  list_c->add_option("-f,--format", format, "table or json")
      ->check(CLI::IsMember({"table", "json"}));
  list_c->add_flag("-q,--quiet", quiet, "IDs only");
  CLI::App* features_c = app.add_subcommand("features", "What kiln-oci supports, as JSON");
  ExecOptions eo;
  unsigned exec_preserve = 0;
  CLI::App* exec_c = app.add_subcommand("exec", "Run another process in a container");
  exec_c->add_option("-p,--process", eo.process_file, "the process as JSON (the spec's process)");
  exec_c->add_flag("-d,--detach", eo.detach, "return once it started (its stand-in keeps running)");
  exec_c->add_option("--pid-file", eo.pid_file, "write its stand-in's host pid here");
  exec_c->add_option("--console-socket", eo.console_socket, "send its terminal's master here");
  exec_c->add_flag("-t,--tty", eo.tty, "a terminal (with the command line form)");
  exec_c->add_option("--cwd", eo.cwd, "working directory (command line form)");
  exec_c->add_option("-e,--env", eo.env, "K=V (command line form)")->allow_extra_args(false);
  exec_c->add_option("-u,--user", eo.user, "UID[:GID] (command line form)");
  exec_c->add_option("--preserve-fds", exec_preserve, "extra fds to pass (only 0)");
  exec_c->add_option("ID", eo.id)->required();
  // runc exec ID CMD ARG...: everything after the ID is the command, options included.
  exec_c->prefix_command();
  std::string ps_format = "table";
  CLI::App* ps_c = app.add_subcommand("ps", "List the host processes of a container");
  ps_c->add_option("-f,--format", ps_format, "table or json")
      ->check(CLI::IsMember({"table", "json"}));
  ps_c->add_option("ID", id)->required();
  ps_c->prefix_command();  // runc ps ID [ps options]
  std::string resources;
  CLI::App* update_c = app.add_subcommand("update", "Change a container's resources");
  update_c->add_option("-r,--resources", resources, "the linux.resources JSON (FILE or -)")
      ->required();
  update_c->add_option("ID", id)->required();
  for (auto [name, what] : {std::pair{"checkpoint", "Checkpoint a container"},
                            {"restore", "Restore a container"},
                            {"run", "Create and start a container"},
                            {"spec", "Write a default config.json"}})
    not_yet(app, name, what);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    install_log(log_file, log_format == "json" ? "json" : "text", false);
    spdlog::error(e.what());
    return 2;
  } catch (const std::exception& e) {
    install_log(log_file, log_format == "json" ? "json" : "text", false);
    spdlog::error(e.what());
    return 1;
  }
  install_log(log_file, log_format, debug);
  if (version) {
    std::printf("kiln-oci version %s\ncommit: kiln %s\nspec: 1.0.2\n", KILN_VERSION, KILN_VERSION);
    return 0;
  }
  try {
    if (systemd_cgroup)
      throw UsageError("--systemd-cgroup: kiln-oci does not manage cgroups (use cgroupfs)");
    if (app.got_subcommand(create_c)) return create(g, co);
    if (app.got_subcommand(start_c)) return start(g, id);
    if (app.got_subcommand(exec_c)) {
      if (exec_preserve > 0)
        throw UsageError("--preserve-fds: file descriptors cannot be passed into a microVM");
      eo.command = exec_c->remaining();
      return exec(g, eo);
    }
    if (app.got_subcommand(state_c)) return state(g, id);
    if (app.got_subcommand(pause_c)) return pause(g, id);
    if (app.got_subcommand(resume_c)) return resume(g, id);
    if (app.got_subcommand(kill_c)) return kill(g, id, signal);
    if (app.got_subcommand(delete_c)) return remove(g, id, force);
    if (app.got_subcommand(list_c)) return list(g, format, quiet);
    if (app.got_subcommand(update_c)) return update(g, id, resources);
    if (app.got_subcommand(ps_c)) return ps(g, id, ps_format, ps_c->remaining());
    if (app.got_subcommand(features_c)) return features();
    std::printf("%s", app.help().c_str());
    return 2;
  } catch (const UsageError& e) {
    spdlog::error(e.what());
    return 2;
  } catch (const std::exception& e) {
    spdlog::error(e.what());
    return 1;
  }
}

}  // namespace kiln::oci
