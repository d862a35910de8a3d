// Philox4x32-10 on Vec::kWidth counters at once: the dropout mask of a whole
// lane vector (core/dropout.hpp defines it and keeps the scalar version).
// Included inside namespace flashattn::cpu::<isa> after struct Vec.
inline void philox_lanes(Vec::IReg (&ctr)[4], std::uint32_t key0, std::uint32_t key1) {
  for (int round = 0; round < core::kPhiloxRounds; ++round) {
    Vec::IReg hi0, lo0, hi1, lo1;
    Vec::mulhilo(ctr[0], core::kPhiloxMul0, hi0, lo0);
    Vec::mulhilo(ctr[2], core::kPhiloxMul1, hi1, lo1);
    ctr[0] = Vec::ixor(Vec::ixor(hi1, ctr[1]), Vec::iset1(key0));
    ctr[1] = lo1;
    ctr[2] = Vec::ixor(Vec::ixor(hi0, ctr[3]), Vec::iset1(key1));
    ctr[3] = lo0;
    key0 += core::kPhiloxWeyl0;
    key1 += core::kPhiloxWeyl1;
  }
}
