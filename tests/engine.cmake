# Engine tests (kernels/, model/ engine, kv cache, sampling, optimizer, smelt generate).
smelt_c_test(test_kernels ${CMAKE_CURRENT_SOURCE_DIR}/test_kernels.c)
smelt_c_test(test_model_grad ${CMAKE_CURRENT_SOURCE_DIR}/test_model_grad.c)
smelt_c_test(test_kvcache ${CMAKE_CURRENT_SOURCE_DIR}/test_kvcache.c)
smelt_c_test(test_sample ${CMAKE_CURRENT_SOURCE_DIR}/test_sample.c)
smelt_c_test(test_engine_fixtures ${CMAKE_CURRENT_SOURCE_DIR}/test_engine_fixtures.c)
set_tests_properties(test_engine_fixtures PROPERTIES SKIP_RETURN_CODE 77)
smelt_sh_test(test_generate engine_generate.sh)
set_tests_properties(test_generate PROPERTIES SKIP_RETURN_CODE 77)
