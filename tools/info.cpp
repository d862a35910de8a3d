// `flashattn info`: what this build of the library is and what it will use.
#include <iostream>
#include <string>
#include <vector>

#include "cli_args.hpp"
#include "commands.hpp"
#include "flashattn/runtime.hpp"

namespace flashattn::tools {
namespace {

std::string isa_list(const std::vector<Isa>& isas) {
  std::string s;
  for (Isa isa : isas) {
    if (!s.empty()) s += ' ';
    s += isa_name(isa);
  }
  return s;
}

}  // namespace

int run_info(std::span<const std::string_view> args) {
  if (!args.empty()) throw cli::CliError("info: unexpected argument '" + std::string(args[0]) + "'");
  // Query everything first: an invalid FLASHATTN_* variable throws before anything is printed.
  const std::string compiled = isa_list(compiled_isas());
  const std::string supported = isa_list(supported_isas());
  const std::string_view active = isa_name(active_isa());
  const std::string_view backend = backend_name(active_backend());
  const int threads = num_threads();
  std::cout << "flashattn " << version() << '\n'
            << "isa compiled:  " << compiled << '\n'
            << "isa supported: " << supported << '\n'
            << "isa active:    " << active << '\n'
            << "backend:       " << backend << '\n'
            << "threads:       " << threads << '\n';
  return 0;
}

}  // namespace flashattn::tools
