// The six forms of the flash-attn entry points (fixed or varlen; q, k, v
// separate, kv packed or qkv packed) and the names their callers give the
// arguments, for tests that run one table over every entry point.
// Header-only (the support library's source list is fixed).
#pragma once

#include <string>

namespace flashattn::testing {

enum class Form { fixed, kvpacked, qkvpacked, varlen, varlen_kvpacked, varlen_qkvpacked };

inline bool is_varlen(Form f) { return f == Form::varlen || f == Form::varlen_kvpacked || f == Form::varlen_qkvpacked; }
inline bool packs_kv(Form f) { return f == Form::kvpacked || f == Form::varlen_kvpacked; }
inline bool packs_qkv(Form f) { return f == Form::qkvpacked || f == Form::varlen_qkvpacked; }

// The name the caller knows an argument by: packed forms hand views of kv /
// qkv (and of the gradients dkv / dqkv) to the checks, varlen_qkvpacked
// takes one cu_seqlens and one max_seqlen.
inline std::string arg_name(Form f, const std::string& arg) {
  if (packs_qkv(f) && (arg == "q" || arg == "k" || arg == "v")) return "qkv";
  if (packs_qkv(f) && (arg == "dq" || arg == "dk" || arg == "dv")) return "dqkv";
  if (packs_kv(f) && (arg == "k" || arg == "v")) return "kv";
  if (packs_kv(f) && (arg == "dk" || arg == "dv")) return "dkv";
  if (f == Form::varlen_qkvpacked && arg.starts_with("cu_seqlens")) return "cu_seqlens";
  if (f == Form::varlen_qkvpacked && arg.starts_with("max_seqlen")) return "max_seqlen";
  return arg;
}

}  // namespace flashattn::testing
