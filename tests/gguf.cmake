# GGUF: reader, writer, (de)quantization against the `gguf` package's fixtures, the real SmolLM2 file.
smelt_c_test(test_gguf ${CMAKE_CURRENT_SOURCE_DIR}/test_gguf.c ${CMAKE_CURRENT_SOURCE_DIR}/ckpt_testutil.c)
