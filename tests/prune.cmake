# Tests of the prune stage (issue 11): float64 kernels, OSSCAR on single layers (H = I, exhaustive
# search, re-fit), OSSCAR vs the baselines on SmolLM2's first layers, the model-level pass on
# fixtures, and the stage through the CLI.
smelt_c_test(test_dense64 ${CMAKE_CURRENT_SOURCE_DIR}/test_dense64.c)
smelt_c_test(test_osscar ${CMAKE_CURRENT_SOURCE_DIR}/test_osscar.c)
smelt_c_test(test_prune_model ${CMAKE_CURRENT_SOURCE_DIR}/test_prune_model.c)
# OSSCAR vs the baselines on the first two layers of the real SmolLM2-135M (../shared; 77 = skipped)
smelt_c_test(test_prune_smollm2 ${CMAKE_CURRENT_SOURCE_DIR}/test_prune_smollm2.c)
set_tests_properties(test_prune_smollm2 PROPERTIES SKIP_RETURN_CODE 77)
foreach(t cli resume_kill mpi)
  smelt_sh_test(prune_${t} prune/${t}.sh)
endforeach()
