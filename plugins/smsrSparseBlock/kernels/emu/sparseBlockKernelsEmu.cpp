// Host-compiler build of the CUDA kernel library under the CPU SIMT execution layer (SMSR_SIMT_EMULATION).
// Deliberately no code of its own: the tests run exactly the .cu/.cuh sources that nvcc compiles for the GPU.
#include "../sparseBlockKernels.cu"
