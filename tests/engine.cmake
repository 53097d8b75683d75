# Engine tests (kernels/, model/ engine, kv cache, sampling, optimizer, smelt generate).
smelt_c_test(test_kernels ${CMAKE_CURRENT_SOURCE_DIR}/test_kernels.c)
