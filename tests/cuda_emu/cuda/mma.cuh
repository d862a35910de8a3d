// Host emulation of src/cuda/mma.cuh (same names and signatures), found
// first on the emulator build's include path. Written from the PTX ISA
// (sections named below), not from src/cuda/mma.cuh's comments, so that the
// kernel's index math is checked against an independent reading.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "emu_runtime.hpp"

namespace emu::detail {

// cp.async state of a thread: copies issued since the last commit, then the
// committed groups, oldest first.
struct AsyncCopy {
  void* dst;
  const void* src;
  int src_bytes;
};
struct AsyncCopies {
  std::vector<AsyncCopy> uncommitted;
  std::deque<std::vector<AsyncCopy>> groups;
};
inline thread_local AsyncCopies async_copies;

// Only a launch's threads, which start with none pending, issue copies.
inline AsyncCopies& this_thread_copies() {
  current();
  return async_copies;
}

template <class Elem>
constexpr std::string_view mma_name() {
  static_assert(std::is_same_v<Elem, __half> || std::is_same_v<Elem, __nv_bfloat16>);
  return std::is_same_v<Elem, __half> ? "mma.m16n8k16.row.col.f32.f16.f16.f32"
                                      : "mma.m16n8k16.row.col.f32.bf16.bf16.f32";
}

// Element `half` (0: bits 0-15, 1: bits 16-31) of a register of two 16-bit
// elements, as a float (exact).
template <class Elem>
float element(std::uint32_t reg, int half) {
  const auto bits = static_cast<std::uint16_t>(reg >> (16 * half));
  if constexpr (std::is_same_v<Elem, __half>)
    return __half2float(std::bit_cast<__half>(bits));
  else
    return __bfloat162float(std::bit_cast<__nv_bfloat16>(bits));
}

// ldmatrix.sync.aligned.m8n8.x4{.trans}.shared.b16 ("Warp-level matrix load
// instruction: ldmatrix"): lanes 8i..8i+7 give the addresses of rows 0..7 of
// matrix i (16 bytes each, 16-byte aligned). Register i of each lane holds
// a fragment of matrix i by Figure "ldmatrix fragment layout for one 8x8
// matrix with 16-bit elements": a group of four lanes holds a row, lane l
// elements (l / 4, 2 (l % 4)) and (l / 4, 2 (l % 4) + 1), low then high
// half. .trans loads the matrix column-major: the same layout over the
// transpose of the rows in memory.
template <bool kTrans>
void ldmatrix_x4(std::uint32_t (&r)[4], const void* row) {
  constexpr std::string_view op = kTrans ? "ldmatrix.m8n8.x4.trans.b16" : "ldmatrix.m8n8.x4.b16";
  check_shared(row, 16, 16, op);
  const auto rows = warp_exchange(op, row);
  const int lane = current().lane;
  for (int i = 0; i < 4; ++i) {
    r[i] = 0;
    for (int half = 0; half < 2; ++half) {
      const int frag_row = lane / 4, frag_col = 2 * (lane % 4) + half;
      const int mem_row = kTrans ? frag_col : frag_row, mem_col = kTrans ? frag_row : frag_col;
      std::uint16_t bits;
      std::memcpy(&bits, static_cast<const unsigned char*>(rows[8 * i + mem_row]) + 2 * mem_col, 2);
      r[i] |= std::uint32_t{bits} << (16 * half);
    }
  }
}

}  // namespace emu::detail

namespace flashattn::cuda {

// cp.async.cg.shared.global [smem], [gmem], 16, src_bytes ("Data Movement and
// Conversion Instructions: cp.async"): src_bytes (0..16) bytes from gmem,
// the rest of the 16 zero. Asynchronous: queued until a cp_async_wait
// completes its group; groups complete in issue order (PTX leaves the order
// of unsynchronised copies open). The source is read then, not at issue (a
// kernel must not change it in between either way). Both addresses must be
// 16-byte aligned ("Addresses as Operands"), even when nothing is read.
inline void cp_async_16(void* smem, const void* gmem, int src_bytes) {
  auto& copies = emu::detail::this_thread_copies();
  emu::detail::check_shared(smem, 16, 16, "cp.async.cg 16");
  if (reinterpret_cast<std::uintptr_t>(gmem) % 16 != 0)
    emu::detail::fault("cp.async.cg 16: global address not 16-byte aligned");
  if (src_bytes < 0 || src_bytes > 16) emu::detail::fault("cp.async.cg 16: src-size outside 0..16");
  copies.uncommitted.push_back({smem, gmem, src_bytes});
}

// cp.async.commit_group: the copies issued since the last commit become a
// group (possibly empty).
inline void cp_async_commit() {
  auto& copies = emu::detail::this_thread_copies();
  copies.groups.push_back(std::move(copies.uncommitted));
  copies.uncommitted.clear();
}

// cp.async.wait_group N: completes every committed group but the newest N,
// copies in issue order; uncommitted copies stay pending.
template <int N>
void cp_async_wait() {
  static_assert(N >= 0);
  auto& groups = emu::detail::this_thread_copies().groups;
  while (groups.size() > static_cast<std::size_t>(N)) {
    for (const emu::detail::AsyncCopy& c : groups.front()) {
      auto* dst = static_cast<unsigned char*>(c.dst);
      std::memcpy(dst, c.src, static_cast<std::size_t>(c.src_bytes));
      std::memset(dst + c.src_bytes, 0, static_cast<std::size_t>(16 - c.src_bytes));
    }
    groups.pop_front();
  }
}

inline void ldmatrix_x4(std::uint32_t (&r)[4], const void* smem) { emu::detail::ldmatrix_x4<false>(r, smem); }
inline void ldmatrix_x4_trans(std::uint32_t (&r)[4], const void* smem) { emu::detail::ldmatrix_x4<true>(r, smem); }

// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32, d = a b + d:
// A 16x16, B 16x8, C = D 16x8, distributed by "Matrix Fragments for
// mma.m16n8k16 with floating point type", with groupID = lane >> 2 and
// threadID_in_group = lane % 4, elements low to high within a register
// (a0 a1 in a[0], ..., b0 b1 in b0, b2 b3 in b1):
//   a_i: row groupID for i < 2 or 4 <= i < 6, else groupID + 8;
//        col threadID_in_group * 2 + (i & 1), + 8 for i >= 4
//   b_i: row (k) threadID_in_group * 2 + (i & 1), + 8 for i >= 2; col (n) groupID
//   c_i: row groupID, + 8 for i >= 2; col threadID_in_group * 2 + (i & 1)
// Products of 16-bit values are exact in fp32; sums run in k order in fp32
// (the hardware's order and internal precision are unspecified).
template <class Elem>
void mma_16816(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  struct Fragments {
    std::uint32_t a[4], b[2];
    float c[4];
  };
  const auto lanes = emu::detail::warp_exchange(
      emu::detail::mma_name<Elem>(), Fragments{{a[0], a[1], a[2], a[3]}, {b0, b1}, {d[0], d[1], d[2], d[3]}});
  // NaN everywhere first, so that an element the layout missed shows in D.
  constexpr float kHole = std::numeric_limits<float>::quiet_NaN();
  float mat_a[16][16], mat_b[16][8], mat_c[16][8];
  std::fill(&mat_a[0][0], &mat_a[0][0] + 16 * 16, kHole);
  std::fill(&mat_b[0][0], &mat_b[0][0] + 16 * 8, kHole);
  std::fill(&mat_c[0][0], &mat_c[0][0] + 16 * 8, kHole);
  for (int lane = 0; lane < 32; ++lane) {
    const int group = lane >> 2, in_group = lane % 4;
    const Fragments& f = lanes[lane];
    for (int i = 0; i < 8; ++i) {
      const int row = (i < 2 || (i >= 4 && i < 6)) ? group : group + 8;
      const int col = in_group * 2 + (i & 1) + (i >= 4 ? 8 : 0);
      mat_a[row][col] = emu::detail::element<Elem>(f.a[i / 2], i % 2);
    }
    for (int i = 0; i < 4; ++i) {
      const int row = in_group * 2 + (i & 1) + (i >= 2 ? 8 : 0);
      mat_b[row][group] = emu::detail::element<Elem>(f.b[i / 2], i % 2);
    }
    for (int i = 0; i < 4; ++i) mat_c[group + (i >= 2 ? 8 : 0)][in_group * 2 + (i & 1)] = f.c[i];
  }
  const int lane = emu::detail::current().lane, group = lane >> 2, in_group = lane % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = group + (i >= 2 ? 8 : 0), col = in_group * 2 + (i & 1);
    float sum = mat_c[row][col];
    for (int k = 0; k < 16; ++k) sum += mat_a[row][k] * mat_b[k][col];
    d[i] = sum;
  }
}

// ex2.approx.ftz.f32: 2^x (the host's exact one; the device's is within 2 ulp).
inline float exp2_approx(float x) { return std::exp2(x); }

// Two floats as one register of two Elem, each rounded to nearest even,
// x in bits 0-15.
template <class Elem>
std::uint32_t pack2(float x, float y) {
  const auto bits = [](float v) -> std::uint32_t {
    if constexpr (std::is_same_v<Elem, __half>)
      return std::bit_cast<std::uint16_t>(__float2half_rn(v));
    else
      return std::bit_cast<std::uint16_t>(__float2bfloat16_rn(v));
  };
  return bits(x) | bits(y) << 16;
}

}  // namespace flashattn::cuda
