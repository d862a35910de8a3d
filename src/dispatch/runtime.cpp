// Process-wide settings: read from the environment once, overridable.
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <string>

#include "dispatch/cpu_features.hpp"
#include "flashattn/error.hpp"
#include "flashattn/runtime.hpp"

namespace flashattn {
namespace {

struct Settings {
  std::vector<Isa> supported;
  std::atomic<Isa> isa{Isa::scalar};
  std::atomic<Backend> backend{Backend::cpu};
  std::atomic<int> threads{0};  // 0 = OpenMP's default
};

void check_supported(const Settings& s, Isa isa, const std::string& who) {
  if (std::find(s.supported.begin(), s.supported.end(), isa) == s.supported.end()) {
    throw Error(who + ": ISA '" + std::string(isa_name(isa)) + "' is not supported by this CPU (best is '" +
                std::string(isa_name(s.supported.back())) + "')");
  }
}

int parse_threads(const char* text) {
  char* end = nullptr;
  const long n = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || n < 1 || n > 4096) {
    throw Error(std::string("FLASHATTN_NUM_THREADS: expected an integer in [1, 4096], got '") + text + "'");
  }
  return static_cast<int>(n);
}

// Built on first use; an invalid environment variable throws Error from
// that first use (and again on later uses).
Settings& settings() {
  static Settings* instance = [] {
    auto* s = new Settings;
    s->supported = dispatch::detect_supported_isas();
    s->isa = s->supported.back();
    return s;
  }();
  static std::once_flag env_read;
  static std::string env_error;
  std::call_once(env_read, [] {
    try {
      if (const char* isa = std::getenv("FLASHATTN_ISA"); isa && *isa) {
        const Isa wanted = parse_isa(isa);
        check_supported(*instance, wanted, "FLASHATTN_ISA");
        instance->isa = wanted;
      }
      if (const char* backend = std::getenv("FLASHATTN_BACKEND"); backend && *backend) {
        instance->backend = parse_backend(backend);
      }
      if (const char* threads = std::getenv("FLASHATTN_NUM_THREADS"); threads && *threads) {
        instance->threads = parse_threads(threads);
      }
    } catch (const Error& e) {
      env_error = e.what();
    }
  });
  if (!env_error.empty()) throw Error(env_error);
  return *instance;
}

}  // namespace

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    case Isa::avx512_bf16: return "avx512_bf16";
  }
  return "?";
}

std::string_view backend_name(Backend backend) { return backend == Backend::cpu ? "cpu" : "reference"; }

Isa parse_isa(std::string_view name) {
  for (Isa isa : compiled_isas())
    if (isa_name(isa) == name) return isa;
  throw Error("isa: expected one of scalar, avx2, avx512, avx512_bf16, got '" + std::string(name) + "'");
}

Backend parse_backend(std::string_view name) {
  if (name == "cpu") return Backend::cpu;
  if (name == "reference") return Backend::reference;
  throw Error("backend: expected cpu or reference, got '" + std::string(name) + "'");
}

std::vector<Isa> compiled_isas() { return {Isa::scalar, Isa::avx2, Isa::avx512, Isa::avx512_bf16}; }
std::vector<Isa> supported_isas() { return settings().supported; }
Isa active_isa() { return settings().isa; }

void set_isa(Isa isa) {
  Settings& s = settings();
  check_supported(s, isa, "set_isa");
  s.isa = isa;
}

Backend active_backend() { return settings().backend; }
void set_backend(Backend backend) { settings().backend = backend; }

int num_threads() {
  const int n = settings().threads;
  return n > 0 ? n : omp_get_max_threads();
}

void set_num_threads(int n) {
  if (n < 0) throw Error("set_num_threads: expected n >= 0 (0 = default), got " + std::to_string(n));
  settings().threads = n;
}

std::string version() { return FLASHATTN_VERSION; }

}  // namespace flashattn
