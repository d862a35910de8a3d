# The CUDA backend (src/cuda/), by FLASHATTN_CUDA: AUTO builds it when nvcc
# is found, ON requires it, OFF leaves it out. Kernels are built for sm_80
# and sm_90 (SASS) plus compute_90 PTX, which newer GPUs JIT-compile.
# Included from the top-level CMakeLists.txt after the flashattn target.
set(FLASHATTN_WITH_CUDA OFF)
if(NOT FLASHATTN_CUDA STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)  # the toolkit's default home, when not on PATH
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(FLASHATTN_WITH_CUDA ON)
  elseif(FLASHATTN_CUDA STREQUAL "ON")
    message(FATAL_ERROR "FLASHATTN_CUDA=ON but no CUDA compiler (nvcc) was found")
  endif()
endif()
message(STATUS "flashattn: CUDA backend ${FLASHATTN_WITH_CUDA}")

if(FLASHATTN_WITH_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80-real 90-real 90-virtual)
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  target_sources(flashattn PRIVATE src/cuda/forward.cu)
  # CMake 3.25 does not know nvcc 13's C++20 flag; the CUDA sources follow CMAKE_CXX_STANDARD.
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION -std=c++20)
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION -std=c++20)
  set_source_files_properties(src/cuda/forward.cu PROPERTIES COMPILE_OPTIONS
    "--expt-relaxed-constexpr;-Xcompiler=-Wall")
  set_target_properties(flashattn PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
  target_compile_definitions(flashattn PUBLIC FLASHATTN_WITH_CUDA=1)
  target_link_libraries(flashattn PUBLIC CUDA::cudart_static)
endif()
