# bench_cuda: the CUDA backend's benchmark on a GPU (SMELT_CUDA=ON); bench_cuda_emu: the same program
# on the host emulation, whose --quick run is a smoke test in ctest (tests/cuda.cmake).
set(smelt_bench_cuda_srcs ${CMAKE_SOURCE_DIR}/bench/bench_cuda.c ${CMAKE_SOURCE_DIR}/bench/cuda_llama.c)
add_executable(bench_cuda_emu ${smelt_bench_cuda_srcs})
target_link_libraries(bench_cuda_emu PRIVATE smelt_cuda_emu smelt_model smelt_kernels smelt_common)
if(SMELT_CUDA)
  add_executable(bench_cuda ${smelt_bench_cuda_srcs})
  target_link_libraries(bench_cuda PRIVATE smelt_cuda smelt_model smelt_kernels smelt_common)
endif()
