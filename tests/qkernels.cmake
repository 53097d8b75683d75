# Quantized weights: FP8 conversions (qweight), quantized linear kernels, models with quantized
# linears, quantized checkpoint formats (compressed-tensors, GPTQ) and the one model loader.
smelt_c_test(test_qweight ${CMAKE_CURRENT_SOURCE_DIR}/test_qweight.c)
smelt_c_test(test_qlinear ${CMAKE_CURRENT_SOURCE_DIR}/test_qlinear.c)
set(ckpt_util ${CMAKE_CURRENT_SOURCE_DIR}/ckpt_testutil.c)
smelt_c_test(test_qcheckpoint ${CMAKE_CURRENT_SOURCE_DIR}/test_qcheckpoint.c ${ckpt_util})
