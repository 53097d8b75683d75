# CUDA twin tests (kernels/cuda against the CPU reference; docs/cuda.md). Each source builds twice:
# *_emu runs the kernels through the host emulation (always: their logic is checked on every
# machine); the other runs them on a GPU (SMELT_CUDA=ON only; "skipped: no CUDA device" and ctest's
# skip code 77 without one, a failure instead when SMELT_REQUIRE_GPU=1).
#   test_cuda      every op x shapes x dtypes against the CPU kernels' references
#   test_cuda_step a whole training step, AdamW step, prefill and decode of bench/cuda_llama
#                  against the CPU engine (model/)
#   test_ops_table the op table (kernels/ops.h): the CPU table gives the kernels' bits, the CUDA
#                  table the same calls on the device (test_ops_table: emulated; _gpu: a GPU)
set(smelt_cuda_twin_srcs ${CMAKE_SOURCE_DIR}/tests/test_cuda_ops.c ${CMAKE_SOURCE_DIR}/tests/cuda_twin_attn.c
    ${CMAKE_SOURCE_DIR}/tests/cuda_twin_distill.c)
set(smelt_ops_table_srcs ${CMAKE_SOURCE_DIR}/tests/test_ops_table.c)
set(smelt_cuda_step_srcs ${CMAKE_SOURCE_DIR}/tests/test_cuda_step.c ${CMAKE_SOURCE_DIR}/bench/cuda_llama.c)
function(smelt_cuda_test name backend)
  add_executable(${name} ${ARGN})
  target_link_libraries(${name} PRIVATE ${backend} smelt_model smelt_kernels smelt_common)
  target_compile_options(${name} PRIVATE $<$<CONFIG:Debug>:-O1>) # their error bounds are O(n^2 d) loops
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
endfunction()
smelt_cuda_test(test_cuda_emu smelt_cuda_emu ${smelt_cuda_twin_srcs})
smelt_cuda_test(test_cuda_step_emu smelt_cuda_emu ${smelt_cuda_step_srcs})
smelt_cuda_test(test_ops_table smelt_cuda_emu ${smelt_ops_table_srcs})
if(SMELT_CUDA)
  smelt_cuda_test(test_cuda smelt_cuda ${smelt_cuda_twin_srcs})
  smelt_cuda_test(test_cuda_step smelt_cuda ${smelt_cuda_step_srcs})
  smelt_cuda_test(test_ops_table_gpu smelt_cuda ${smelt_ops_table_srcs})
endif()
# the benchmark's smoke run on the emulation (tiny shapes; it asserts no time, only that it runs)
add_test(NAME bench_cuda_smoke COMMAND bench_cuda_emu --quick)
set_tests_properties(bench_cuda_smoke PROPERTIES TIMEOUT 600)
