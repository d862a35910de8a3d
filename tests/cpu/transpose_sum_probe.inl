// The ISA's Vec::transpose_sum behind a plain signature, included inside
// each ISA namespace of test_vec_transpose_sum.cpp after its vec_<isa>.inl.
constexpr int kWidth = Vec::kWidth;
// in: kWidth vectors of kWidth floats, row after row; out: kWidth floats.
void transpose_sum(const float* in, float* out) {
  Vec::Reg v[Vec::kWidth];
  for (int i = 0; i < Vec::kWidth; ++i) v[i] = Vec::load(in + i * Vec::kWidth);
  Vec::store(out, Vec::transpose_sum(v));
}
