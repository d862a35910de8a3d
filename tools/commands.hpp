// The subcommands of the `flashattn` command line. Each takes the arguments
// after its name, prints to stdout and returns the exit status; bad input
// throws cli::CliError or flashattn::Error (main prints it, exit status 2).
#pragma once

#include <span>
#include <string_view>

namespace flashattn::tools {

// `flashattn bench ...`: 0 when every oracle verdict is ok, 1 otherwise.
int run_bench(std::span<const std::string_view> args);

// `flashattn info`: version, ISAs, backend, threads.
int run_info(std::span<const std::string_view> args);

}  // namespace flashattn::tools
