# CUDA twin tests (kernels/cuda against the CPU reference; docs/cuda.md). One source, two builds:
# test_cuda_emu runs the kernels through the host emulation (always: their logic is checked on every
# machine); test_cuda runs them on a GPU (SMELT_CUDA=ON only; "skipped: no CUDA device" and ctest's
# skip code 77 without one, a failure instead when SMELT_REQUIRE_GPU=1).
set(smelt_cuda_twin_srcs ${CMAKE_CURRENT_SOURCE_DIR}/test_cuda_ops.c ${CMAKE_CURRENT_SOURCE_DIR}/cuda_twin_attn.c
    ${CMAKE_CURRENT_SOURCE_DIR}/cuda_twin_distill.c)
add_executable(test_cuda_emu ${smelt_cuda_twin_srcs})
target_link_libraries(test_cuda_emu PRIVATE smelt_cuda_emu smelt_kernels smelt_common)
add_test(NAME test_cuda_emu COMMAND test_cuda_emu)
set_tests_properties(test_cuda_emu PROPERTIES TIMEOUT 600)
if(SMELT_CUDA)
  add_executable(test_cuda ${smelt_cuda_twin_srcs})
  target_link_libraries(test_cuda PRIVATE smelt_cuda smelt_kernels smelt_common)
  add_test(NAME test_cuda COMMAND test_cuda)
  set_tests_properties(test_cuda PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
endif()
