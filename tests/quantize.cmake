# Tests of the quantize stage (issue 12): the algorithms against brute-force references and identities.
smelt_c_test(test_quant ${CMAKE_CURRENT_SOURCE_DIR}/test_quant.c)
smelt_sh_test(quantize_stage quantize/stage.sh)
smelt_c_test(test_quant_model ${CMAKE_CURRENT_SOURCE_DIR}/test_quant_model.c)
smelt_sh_test(quantize_mpi quantize/mpi.sh)
smelt_c_test(test_quant_smollm2 ${CMAKE_CURRENT_SOURCE_DIR}/test_quant_smollm2.c)
set_tests_properties(test_quant_smollm2 PROPERTIES SKIP_RETURN_CODE 77)
