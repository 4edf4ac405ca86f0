# FAISS compile flags of the SIMD builds (FAISS's own FAISS_OPT_LEVEL=avx2 / avx512 flags). The
# Makefile passes them to cmake as CXXFLAGS; src/simd.rs reports them in vekter_debug(). This
# file is their only source.
AVX2_CXXFLAGS := -mavx2 -mfma -mf16c -mpopcnt
AVX512_CXXFLAGS := -mavx2 -mfma -mf16c -mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw -mpopcnt
