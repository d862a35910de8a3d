// tanh on a vector (the softcap hook), for every ISA's Vec.
// Included inside namespace flashattn::cpu::<isa> after struct Vec.
//
// Cephes tanhf: an odd polynomial below |x| = 0.625 (no cancellation near 0),
// 1 - 2 / (e^2|x| + 1) above it; about 2 ulp. exp clamps its argument, so
// large |x| gives exactly +-1.
// The scalar path calls std::tanh.
template <class V = Vec>
inline typename V::Reg vector_tanh(typename V::Reg x) {
  if constexpr (V::kWidth == 1) {
    return std::tanh(x);
  } else {
    const typename V::Reg z = V::abs(x);
    const typename V::Reg one = V::set1(1.0f);
    const typename V::Reg big = V::sub(one, V::div(V::set1(2.0f), V::add(V::exp(V::add(z, z)), one)));
    const typename V::Reg x2 = V::mul(x, x);
    typename V::Reg poly = V::set1(-5.70498872745e-3f);
    poly = V::fmadd(poly, x2, V::set1(2.06390887954e-2f));
    poly = V::fmadd(poly, x2, V::set1(-5.37397155531e-2f));
    poly = V::fmadd(poly, x2, V::set1(1.33314422036e-1f));
    poly = V::fmadd(poly, x2, V::set1(-3.33332819422e-1f));
    const typename V::Reg small = V::fmadd(V::mul(poly, x2), x, x);
    return V::select_small(z, V::set1(0.625f), small, V::copysign(big, x));
  }
}
