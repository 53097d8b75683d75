# Quantized weights: FP8 conversions (qweight), quantized linear kernels, models with quantized
# linears, quantized checkpoint formats (compressed-tensors, GPTQ, GGUF) and the one model loader.
smelt_c_test(test_qweight ${CMAKE_CURRENT_SOURCE_DIR}/test_qweight.c)
smelt_c_test(test_qlinear ${CMAKE_CURRENT_SOURCE_DIR}/test_qlinear.c)
set(ckpt_util ${CMAKE_CURRENT_SOURCE_DIR}/ckpt_testutil.c)
smelt_c_test(test_qcheckpoint ${CMAKE_CURRENT_SOURCE_DIR}/test_qcheckpoint.c ${ckpt_util})
# The writer of the quantized export cases for tools/check_qexport.py; not a test.
add_executable(qexport_helper ${CMAKE_CURRENT_SOURCE_DIR}/qexport_helper.c)
target_link_libraries(qexport_helper PRIVATE smelt_pipeline smelt_stages smelt_model smelt_store smelt_common)
smelt_c_test(test_qexport ${CMAKE_CURRENT_SOURCE_DIR}/test_qexport.c ${ckpt_util})
smelt_c_test(test_qgguf ${CMAKE_CURRENT_SOURCE_DIR}/test_qgguf.c ${ckpt_util})
smelt_sh_test(quantized_cli cli/quantized_cli.sh)
set_property(TEST quantized_cli APPEND PROPERTY ENVIRONMENT
  "SMELT_DATA_HELPER=$<TARGET_FILE:data_helper>;SMELT_QEXPORT_HELPER=$<TARGET_FILE:qexport_helper>")
