# GGUF: reader, writer, (de)quantization against the `gguf` package's fixtures, the real SmolLM2 file.
smelt_c_test(test_gguf ${CMAKE_CURRENT_SOURCE_DIR}/test_gguf.c ${CMAKE_CURRENT_SOURCE_DIR}/ckpt_testutil.c)
# The real SmolLM2 GGUF: tokenizer, chat templates, logits and greedy decoding against transformers.
smelt_c_test(test_smollm2 ${CMAKE_CURRENT_SOURCE_DIR}/test_smollm2.c ${CMAKE_CURRENT_SOURCE_DIR}/ckpt_testutil.c)
set_tests_properties(test_smollm2 PROPERTIES SKIP_RETURN_CODE 77)
# Models and tokenizers written as GGUF and read back (fixture models, SmolLM2, stories260K, Llama 3/Qwen2 vocabularies).
smelt_c_test(test_gguf_convert ${CMAKE_CURRENT_SOURCE_DIR}/test_gguf_convert.c ${CMAKE_CURRENT_SOURCE_DIR}/ckpt_testutil.c)
# The CLI on GGUF files: generate --chat (the acceptance answer), inspect, tokenize, convert round trips, bad files.
smelt_sh_test(gguf_cli gguf_cli.sh)
