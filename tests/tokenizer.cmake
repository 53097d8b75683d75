# Tokenizer tests (model/tokenizer*.c, `smelt tokenize`). Those reading ../shared skip with 77.
smelt_c_test(test_tokenizer ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer.c)
set_tests_properties(test_tokenizer PROPERTIES SKIP_RETURN_CODE 77)
smelt_c_test(test_tokenizer_files ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer_files.c)
smelt_c_test(test_tokenizer_bos ${CMAKE_CURRENT_SOURCE_DIR}/test_tokenizer_bos.c)
smelt_sh_test(tokenizer_cli tokenizer_cli.sh)
