/* Noiseless scalar layer map, fused: the compiled path behind theory.simulate.
 *
 * Built at first use by theory/_ckernel.py (plain C99, no Python or torch headers) and
 * called through ctypes, which releases the GIL, so worker threads run in parallel.
 * It computes the same map as theory/_fast.py (the pure-torch path, which stays the
 * fallback and the reference in the tests):
 *
 *     a'_i = a_i + beta g_i,   g_i = sum_j e_ij a_j / sum_j e_ij,
 *     e_ij = exp(s_i a_j - s_i c_i),  s_i = kappa a_i,
 *
 * with c_i the row's largest logit key (max a if s_i >= 0, else min a), over the keys
 * whose logit is at least row max - lim (the rest weigh < e^-lim each). On sorted keys
 * these are a suffix (s_i > 0) or a prefix (s_i < 0), and the cut moves monotonically
 * with |s_i|, so one pointer per side finds every query's range in O(T) per layer.
 * The inner loop is one pass (logit, exp, two sums) that the compiler vectorises, with
 * exp inlined as a polynomial (exp_poly). Logits are clamped at -floor (terms below
 * e^-floor only), so exp_poly never meets overflow or subnormal results. Equal tokens
 * get equal key ranges and so exactly equal updates.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* exp(x) for x in [-700, 700], to ~1 ulp, written so the compiler can vectorise the
 * loop that calls it (libm's exp is an opaque scalar call): x = k ln2 + r with
 * |r| <= ln2 / 2 (Cody-Waite, ln2 split so k ln2_hi is exact), exp(r) by its Taylor
 * polynomial of degree 13 (truncation < 5e-18 relative), 2^k built in the exponent
 * bits. The caller clamps logits to [-floor, 0], so no overflow or subnormal case. */
static inline double exp_poly(double x) {
    const double shifter = 6755399441055744.0; /* 1.5 * 2^52: rounds to an integer */
    const double log2e = 1.4426950408889634074;
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    double t = fma(x, log2e, shifter);
    double k = t - shifter;
    double r = fma(-k, ln2_lo, fma(-k, ln2_hi, x));
    double p = 1.0 / 6227020800.0;
    p = fma(p, r, 1.0 / 479001600.0);
    p = fma(p, r, 1.0 / 39916800.0);
    p = fma(p, r, 1.0 / 3628800.0);
    p = fma(p, r, 1.0 / 362880.0);
    p = fma(p, r, 1.0 / 40320.0);
    p = fma(p, r, 1.0 / 5040.0);
    p = fma(p, r, 1.0 / 720.0);
    p = fma(p, r, 1.0 / 120.0);
    p = fma(p, r, 1.0 / 24.0);
    p = fma(p, r, 1.0 / 6.0);
    p = fma(p, r, 0.5);
    p = fma(p, r, 1.0);
    p = fma(p, r, 1.0);
    int64_t bits, base;
    memcpy(&bits, &t, sizeof bits);
    memcpy(&base, &shifter, sizeof base);
    int64_t e = (bits - base + 1023) << 52; /* 2^k */
    double scale;
    memcpy(&scale, &e, sizeof scale);
    return p * scale;
}

/* g for the keys a[j0..j1) of one query: s the query, m its row max logit. Eight
 * independent partial sums (one vector register wide) let the compiler vectorise the
 * loop without reassociation flags; the tail runs the same code one key at a time. */
static double row_g(const double *a, int64_t j0, int64_t j1, double s, double m, double floor_) {
    if (j1 - j0 == 1) return a[j0];
    double num[8] = {0}, den[8] = {0};
    int64_t j = j0;
    for (; j + 8 <= j1; j += 8) {
        for (int u = 0; u < 8; u++) {
            double x = s * a[j + u] - m;
            x = x > -floor_ ? x : -floor_;
            double e = exp_poly(x);
            num[u] = fma(e, a[j + u], num[u]);
            den[u] += e;
        }
    }
    for (int u = 0; u < (int)(j1 - j); u++) {
        double x = s * a[j + u] - m;
        x = x > -floor_ ? x : -floor_;
        double e = exp_poly(x);
        num[u] = fma(e, a[j + u], num[u]);
        den[u] += e;
    }
    double n = ((num[0] + num[1]) + (num[2] + num[3])) + ((num[4] + num[5]) + (num[6] + num[7]));
    double d = ((den[0] + den[1]) + (den[2] + den[3])) + ((den[4] + den[5]) + (den[6] + den[7]));
    return n / d;
}

/* g for every query of one sorted sequence a[0..T). Queries are taken in order of
 * increasing |s| within each sign group (a >= 0 ascending, a < 0 descending), so the
 * suffix start only moves right and the prefix end only moves left. */
static void layer_g(const double *a, int64_t T, double kappa, double lim, double floor_,
                    double *g) {
    const double lo = a[0], hi = a[T - 1];
    int64_t z = 0; /* first index with a >= 0 */
    while (z < T && a[z] < 0) z++;
    int64_t j0 = 0, j1 = T;
    for (int group = 0; group < 2; group++) {
        int64_t start = group == 0 ? z : z - 1, stop = group == 0 ? T : -1;
        int64_t step = group == 0 ? 1 : -1;
        /* s >= 0 takes a suffix of keys ending at hi; s <= 0 a prefix starting at lo */
        int suffix = group == 0 ? kappa >= 0 : kappa < 0;
        for (int64_t i = start; i != stop; i += step) {
            double s = kappa * a[i];
            double abs_s = s < 0 ? -s : (s > 0 ? s : 0.0); /* +0 for s = -0 too */
            if (suffix) {
                double cut = hi - lim / abs_s; /* -inf (all keys) when s == 0 */
                while (j0 < T - 1 && a[j0] < cut) j0++;
                g[i] = row_g(a, j0, T, s, s * hi, floor_);
            } else {
                double cut = lo + lim / abs_s;
                while (j1 > 1 && a[j1 - 1] > cut) j1--;
                g[i] = row_g(a, 0, j1, s, s * lo, floor_);
            }
        }
    }
}

/* exp_poly over x[0..n) into y, for the accuracy test against libm / torch. */
void superact_exp(const double *x, double *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = exp_poly(x[i]);
}

/* Trajectories of B sequences of T tokens over L layers.
 * a: [B, T] keys sorted ascending per row (overwritten: the final layer, sorted);
 * perm: [B, T] original position of each sorted token (updated in place);
 * beta, kappa: [B]; out: [B, L + 1, T] in original token order (layer 0 included).
 * Returns 0, or -1 if the scratch buffer cannot be allocated. */
int superact_trajectory(double *a, int64_t *perm, int64_t B, int64_t T, const double *beta,
                        const double *kappa, int64_t L, double lim, double floor_,
                        double *out) {
    double *g = malloc((size_t)T * sizeof(double));
    if (g == NULL) return -1;
    for (int64_t b = 0; b < B; b++) {
        double *x = a + b * T, *o = out + b * (L + 1) * T;
        int64_t *p = perm + b * T;
        for (int64_t t = 0; t < T; t++) o[p[t]] = x[t];
        for (int64_t l = 1; l <= L; l++) {
            layer_g(x, T, kappa[b], lim, floor_, g);
            for (int64_t t = 0; t < T; t++) x[t] += beta[b] * g[t];
            double *ol = o + l * T;
            for (int64_t t = 0; t < T; t++) ol[p[t]] = x[t];
            /* the map keeps the order for beta kappa >= 0; re-sort (stable insertion
               sort, carrying the positions) when a layer broke it */
            for (int64_t t = 1; t < T; t++) {
                if (x[t] < x[t - 1]) {
                    for (int64_t u = 1; u < T; u++) {
                        double v = x[u];
                        int64_t pv = p[u], w = u;
                        while (w > 0 && x[w - 1] > v) {
                            x[w] = x[w - 1];
                            p[w] = p[w - 1];
                            w--;
                        }
                        x[w] = v;
                        p[w] = pv;
                    }
                    break;
                }
            }
        }
    }
    free(g);
    return 0;
}
