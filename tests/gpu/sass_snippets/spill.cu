// Many live accumulators under a tight register cap (__launch_bounds__ min blocks) force ptxas to spill.
__global__ void __launch_bounds__(1024, 2) spillLoop(float const* x, float* y, int n)
{
    float acc[96];
#pragma unroll
    for (int j = 0; j < 96; ++j) acc[j] = x[j * 1024 + threadIdx.x];
    for (int i = 0; i < n; ++i) {
#pragma unroll
        for (int j = 0; j < 96; ++j) acc[j] = fmaf(acc[j], x[i], acc[(j * 7 + 3) % 96]);
    }
    float s = 0.f;
#pragma unroll
    for (int j = 0; j < 96; ++j) s += acc[j];
    y[threadIdx.x] = s;
}
