# Tests of the quantize stage (issue 12): the algorithms against brute-force references and identities.
smelt_c_test(test_quant ${CMAKE_CURRENT_SOURCE_DIR}/test_quant.c)
smelt_sh_test(quantize_stage quantize/stage.sh)
smelt_c_test(test_quant_model ${CMAKE_CURRENT_SOURCE_DIR}/test_quant_model.c)
smelt_sh_test(quantize_mpi quantize/mpi.sh)
smelt_c_test(test_quant_smollm2 ${CMAKE_CURRENT_SOURCE_DIR}/test_quant_smollm2.c)
set_tests_properties(test_quant_smollm2 PROPERTIES SKIP_RETURN_CODE 77)
# bench/quant_pass_compare.sh without the llmcompressor venv: one line saying so, exit 0, nothing run.
add_test(NAME quant_pass_compare_skip COMMAND bash -c
    "out=$(LLMC_VENV=/nonexistent-venv bash ${CMAKE_SOURCE_DIR}/bench/quant_pass_compare.sh $<TARGET_FILE_DIR:smelt>) || \
     { echo \"exit status $? (want 0): $out\" >&2; exit 1; }; \
     [ \"$(wc -l <<<\"$out\")\" = 1 ] && grep -q '^quant_pass_compare.sh: skipped: no llmcompressor in /nonexistent-venv' <<<\"$out\" || \
     { echo \"want one skip line, got: $out\" >&2; exit 1; }; echo \"ok: $out\"")
