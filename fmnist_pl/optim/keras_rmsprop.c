/* Keras RMSprop's update of one float32 tensor, in one pass over memory.
 *
 * Built by fmnist_pl/optim/keras_rmsprop.py with -ffp-contract=off and without -ffast-math, so
 * every operation is one IEEE float32 operation rounded on its own, in the order written - the
 * order of _exact_update's torch ops there (tests/optim/test_keras_rmsprop.py checks them equal
 * bit for bit). sqrtf and the division are correctly rounded in scalar and vector form alike, so
 * the compiler may vectorize the loop freely. -fno-math-errno only lets it skip errno for sqrtf
 * of a negative, which s + eps never is.
 */
#include <math.h>
#include <stddef.h>

void fmnist_keras_rmsprop(float *restrict p, const float *restrict g, float *restrict s, size_t n,
                          float lr, float rho, float one_minus_rho, float eps) {
    for (size_t i = 0; i < n; i++) {
        const float square = s[i] * rho + (g[i] * g[i]) * one_minus_rho;
        s[i] = square;
        p[i] = p[i] - (g[i] * lr) / sqrtf(square + eps);
    }
}
