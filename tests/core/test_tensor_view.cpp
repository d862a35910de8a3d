// TensorView: the factories, numel, shape_string, present, and their errors.
#include <gtest/gtest.h>

#include <string>

#include "flashattn/error.hpp"
#include "flashattn/tensor.hpp"

namespace flashattn {
namespace {

TEST(TensorView, ContiguousIsRowMajor) {
  float data[2 * 3 * 4];
  const TensorView t = TensorView::contiguous(data, DType::f32, {2, 3, 4});
  EXPECT_EQ(t.data, data);
  EXPECT_EQ(t.rank, 3);
  EXPECT_EQ(t.stride[0], 12);
  EXPECT_EQ(t.stride[1], 4);
  EXPECT_EQ(t.stride[2], 1);
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.device, Device{});
}

TEST(TensorView, StridedKeepsTheGivenStrides) {
  float data[64];
  const TensorView t = TensorView::strided(data, DType::bf16, {2, 3}, {10, 1}, Device{DeviceType::cuda, 1});
  EXPECT_EQ(t.stride[0], 10);
  EXPECT_EQ(t.stride[1], 1);
  EXPECT_EQ(t.dtype, DType::bf16);
  EXPECT_EQ(t.device, (Device{DeviceType::cuda, 1}));
  EXPECT_EQ(t.numel(), 6);
}

TEST(TensorView, ShapeStringWritesOneDimensionWithAComma) {
  float data[8];
  EXPECT_EQ(TensorView::contiguous(data, DType::f32, {8}).shape_string(), "(8,)");
  EXPECT_EQ(TensorView::contiguous(data, DType::f32, {2, 1, 4}).shape_string(), "(2, 1, 4)");
  EXPECT_EQ(TensorView::contiguous(data, DType::f32, {}).shape_string(), "()");
}

TEST(TensorView, DefaultIsAbsent) {
  float data[1];
  EXPECT_FALSE(TensorView{}.present());
  EXPECT_TRUE(TensorView::contiguous(data, DType::f32, {1}).present());
  EXPECT_TRUE(TensorView::contiguous(nullptr, DType::f32, {1}).present());  // given, though null: an error later
  EXPECT_EQ(TensorView{}.numel(), 1);                                       // rank 0: a scalar
}

TEST(TensorView, EmptyDimensionGivesNoElements) {
  float data[1];
  EXPECT_EQ(TensorView::contiguous(data, DType::f32, {3, 0, 5}).numel(), 0);
}

TEST(TensorView, RankAboveFiveIsRejected) {
  float data[1];
  try {
    TensorView::contiguous(data, DType::f32, {1, 1, 1, 1, 1, 1});
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 6"), std::string::npos) << e.what();
  }
}

TEST(TensorView, StrideCountMustMatchTheShape) {
  float data[4];
  try {
    TensorView::strided(data, DType::f32, {2, 2}, {2});
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1 strides given for 2 dimensions"), std::string::npos) << e.what();
  }
}

TEST(TensorView, DtypeSizesAndNames) {
  EXPECT_EQ(dtype_size(DType::f32), 4);
  EXPECT_EQ(dtype_size(DType::f16), 2);
  EXPECT_EQ(dtype_size(DType::bf16), 2);
  EXPECT_EQ(dtype_size(DType::f64), 8);
  EXPECT_EQ(dtype_size(DType::i32), 4);
  EXPECT_EQ(dtype_name(DType::bf16), "bf16");
  EXPECT_EQ(dtype_name(DType::i32), "i32");
}

}  // namespace
}  // namespace flashattn
