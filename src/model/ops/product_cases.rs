//! The cases both matrix-product kernels (`sgemm_avx2`, `sgemm_bf16`) are
//! tested on: every layout of A and B, both write modes, serial and
//! parallel, a result matrix wider than the product; and the check that no
//! element outside the product is touched.

use super::sgemm_avx2::Product;

/// Deterministic values in [-1, 1).
pub(super) fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut h = seed.wrapping_mul(6364136223846793005) | 1;
    (0..len)
        .map(|_| {
            h = h.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((h >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

/// One product's operands and result buffer, as a kernel receives them.
pub(super) struct Case {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: Vec<f32>,
    pub a_strides: (usize, usize),
    pub b: Vec<f32>,
    pub b_strides: (usize, usize),
    /// The result, rows `ldc` wide (5 more than n), and its contents before.
    pub c: Vec<f32>,
    pub before: Vec<f32>,
    pub ldc: usize,
    pub accumulate: bool,
    pub parallel: bool,
    /// For messages: the layouts and modes.
    pub label: String,
}

impl Case {
    /// Every layout (A and B row-major or transposed, with wider strides
    /// for A), write mode and serial/parallel, for each (m, n, k).
    pub fn all(shapes: &[(usize, usize, usize)]) -> Vec<Case> {
        let mut cases = Vec::new();
        for &(m, n, k) in shapes {
            for (b_transposed, a_transposed) in [(false, false), (true, false), (false, true), (true, true)] {
                for accumulate in [false, true] {
                    for parallel in [false, true] {
                        let ldc = n + 5;
                        let a_strides = if a_transposed { (1, m + 3) } else { (k + 3, 1) };
                        let a = values(if a_transposed { k * (m + 3) } else { m * (k + 3) }, 1);
                        let b_strides = if b_transposed { (1, k) } else { (n, 1) };
                        let c = values(m * ldc, 3);
                        cases.push(Case {
                            m,
                            n,
                            k,
                            a,
                            a_strides,
                            b: values(k * n, 2),
                            b_strides,
                            before: c.clone(),
                            c,
                            ldc,
                            accumulate,
                            parallel,
                            label: format!(
                                "({m},{n},{k}) a^T {a_transposed} b^T {b_transposed} accumulate {accumulate} parallel {parallel}"
                            ),
                        });
                    }
                }
            }
        }
        cases
    }

    /// The product as the kernels take it (into `c`).
    pub fn product(&mut self) -> Product {
        Product {
            m: self.m,
            n: self.n,
            k: self.k,
            a: self.a.as_ptr(),
            a_rs: self.a_strides.0,
            a_cs: self.a_strides.1,
            b: self.b.as_ptr(),
            b_rs: self.b_strides.0,
            b_cs: self.b_strides.1,
            dst: self.c.as_mut_ptr(),
            ldc: self.ldc,
            accumulate: self.accumulate,
            parallel: self.parallel,
        }
    }

    pub fn a_at(&self, i: usize, p: usize) -> f32 {
        self.a[i * self.a_strides.0 + p * self.a_strides.1]
    }

    pub fn b_at(&self, p: usize, j: usize) -> f32 {
        self.b[p * self.b_strides.0 + j * self.b_strides.1]
    }

    /// Asserts that columns past n kept their values and hands every
    /// element of the product — (i, j, what the kernel wrote, what c held
    /// before) — to `check`.
    pub fn check(&self, mut check: impl FnMut(usize, usize, f32, f32)) {
        for i in 0..self.m {
            for j in 0..self.ldc {
                let (got, before) = (self.c[i * self.ldc + j], self.before[i * self.ldc + j]);
                if j >= self.n {
                    assert_eq!(got, before, "{}: column {j} past n was written", self.label);
                } else {
                    check(i, j, got, before);
                }
            }
        }
    }
}
