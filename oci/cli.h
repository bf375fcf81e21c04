// kiln-oci: Kiln as a runc-compatible OCI runtime (`kiln-oci` is a link to kiln; vmm/main.cc
// dispatches on the name). runc's command line: global flags, then the command.
#pragma once

namespace kiln::oci {

int oci_main(int argc, char** argv);

}  // namespace kiln::oci
